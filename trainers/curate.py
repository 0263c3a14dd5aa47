"""Curation: teacher-guided acceptance sampling of strategies (the first stage of ExecTune).

For each problem:

1. The *teacher* (any core spec) sees the problem and its reference solution and writes a
   strategy in the guide's output format, ``<think>…</think><strategy>…</strategy>``.
2. The *target core* runs the strategy K times (distinct samples, concurrently) exactly as the
   environment would; q̂_K is the fraction of runs the task's validator passes.
3. Accept iff q̂_K ≥ τ. Otherwise the teacher gets the core's failing answer (and the
   validator's details, e.g. the failing test) and refines, for up to N more rounds.

Guarantee (Hoeffding). A strategy whose true success rate is below τ − η passes the test with
probability at most δ = exp(−2Kη²). Over n problems the acceptance rate A is at least
Â − ε with probability 1 − α, ε = sqrt(ln(1/α) / 2n). So the share of accepted strategies that
are that bad is at most δ / (Â − ε): when δ is not below Â − ε that bound says nothing, and the
run warns.

Resumable: a row is appended and fsynced as each problem finishes; a re-run with the same
``--out`` skips finished problems, and the response cache makes the calls already made for an
unfinished problem free. An infrastructure failure (API down after retries) is not a rejection:
the problem is left unfinished and reported, and a re-run retries it.

Interruptible: on the first Ctrl-C / SIGTERM (:mod:`gcop_env.interrupt`) no new problem is
started and problems in flight stop at their next round; what finishes within the grace period is
saved, the rest is reported unfinished, and ``gcop curate`` exits 130 with the resume command.
"""

from __future__ import annotations

import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gcop_env.cores import Core, CoreError, FatalCoreError, sampling_report
from gcop_env.cores.base import CoreRequest, Message, SamplingParams
from gcop_env.interrupt import StopRequest, completed_until_stopped
from gcop_env.problem import Problem
from gcop_env.prompts import teacher_prompt, teacher_refine_prompt
from gcop_env.reward import RewardConfig
from gcop_env.scoring import GuideScorer
from gcop_env.strategy import parse_guide_output
from gcop_env.tasks import get_task
from gcop_env.trainers.common import JsonlAppender, core_from_options, read_jsonl_rows, write_json
from gcop_env.trainers.config import CurateConfig, write_config

log = logging.getLogger(__name__)

# Settings that change what a finished row means: resuming with different ones is refused.
_RESUME_KEYS = ("task", "split", "data_files", "teacher", "core", "k", "tau", "max_rounds", "success_threshold",
                "core_temperature", "core_top_p", "core_max_tokens", "teacher_temperature", "teacher_max_tokens")


class ResumeMismatch(ValueError):
    """The output file was written with settings that change what its rows mean."""


class Unfinished(Exception):
    """A problem could not be finished for infrastructure reasons; a re-run retries it."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


@dataclass
class CurationSummary:
    """What a curation run produced, over every finished row in the output file."""

    out: str
    finished: int
    accepted: int
    acceptance_rate: float | None  # Â
    epsilon: float | None  # ε (Hoeffding slack unless set)
    acceptance_lcb: float | None  # Â − ε, clipped at 0: holds with probability 1 − alpha
    delta: float  # δ = exp(−2Kη²)
    bad_acceptance_bound: float | None  # δ / (Â − ε): share of accepted strategies with true rate < τ − η
    guarantee_vacuous: bool
    unfinished: list[dict] = field(default_factory=list)  # {problem_id, stage, error} for this run
    skipped_finished: int = 0  # rows already in the file when this run started
    cost_usd: float = 0.0  # nominal price of all finished rows (cached or not)
    spent_usd: float = 0.0  # what this run actually paid
    teacher_calls: int = 0  # paid teacher requests this run
    core_calls: int = 0  # paid core requests this run
    elapsed_s: float = 0.0
    warnings: list[str] = field(default_factory=list)
    sampling: dict = field(default_factory=dict)  # per role: requested, really sent, deterministic
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM: re-run the same command to resume

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        rate = "n/a" if self.acceptance_rate is None else f"{self.acceptance_rate:.3f}"
        lcb = "n/a" if self.acceptance_lcb is None else f"{self.acceptance_lcb:.3f}"
        out = [f"curated {self.finished} problems ({self.skipped_finished} from earlier runs): "
               f"{self.accepted} accepted, Â = {rate}, lower bound Â − ε = {lcb}, δ = {self.delta:.3g}",
               f"cost ${self.cost_usd:.4f} nominal, ${self.spent_usd:.4f} paid this run "
               f"({self.teacher_calls} teacher + {self.core_calls} core requests) in {self.elapsed_s:.1f}s",
               f"rows: {self.out}"]
        failed = [u for u in self.unfinished if u["stage"] != "interrupted"]  # the rest were stopped by the user
        if failed:
            out.append(f"{len(failed)} problem(s) unfinished (infrastructure errors); re-run the same "
                       f"command to retry them: " + ", ".join(u["problem_id"] for u in failed[:10]))
        out.extend(f"WARNING: {w}" for w in self.warnings)
        if self.interrupted:
            out.append(f"INTERRUPTED: {self.finished} finished rows are saved in {self.out}; re-run the same "
                       f"command to resume (finished problems are skipped, answered calls come from the cache).")
        return out


def acceptance_statistics(accepted: int, finished: int, k: int, eta: float, alpha: float,
                          epsilon: float | None = None) -> dict[str, Any]:
    """Â, ε, the lower bound Â − ε, δ = exp(−2Kη²), and whether δ < Â − ε fails (vacuous)."""
    delta = math.exp(-2.0 * k * eta * eta)
    if finished == 0:
        return {"acceptance_rate": None, "epsilon": epsilon, "acceptance_lcb": None, "delta": delta,
                "bad_acceptance_bound": None, "guarantee_vacuous": True}
    rate = accepted / finished
    eps = epsilon if epsilon is not None else math.sqrt(math.log(1.0 / alpha) / (2.0 * finished))
    margin = rate - eps
    return {"acceptance_rate": rate, "epsilon": eps, "acceptance_lcb": max(0.0, margin), "delta": delta,
            "bad_acceptance_bound": (delta / margin) if margin > 0 else None,
            "guarantee_vacuous": not delta < margin}


class Curator:
    """Runs acceptance sampling for one task. ``teacher``/``core`` may be given ready-made."""

    def __init__(self, config: CurateConfig, teacher: Core | None = None, core: Core | None = None,
                 stop: StopRequest | None = None):
        self.config = config
        self.stop = stop or StopRequest()
        self.task = get_task(config.task)
        self.validator = self.task.validator(**config.validator_options)
        self.teacher = teacher or core_from_options(config.teacher, config)
        self.core = core or core_from_options(config.core, config)
        # R only: no bonus, judge or baseline. The core sees exactly the prompt the env would send.
        self.scorer = GuideScorer(
            self.validator, self.core, reward=RewardConfig(beta=0.0, gamma=0.0, kappa=0.0),
            sampling=SamplingParams(config.core_temperature, config.core_top_p, config.core_max_tokens),
            max_strategy_chars=config.max_strategy_chars)
        self.teacher_sampling = SamplingParams(config.teacher_temperature, 1.0, config.teacher_max_tokens)

    # -- one problem ---------------------------------------------------------------------------
    def _ask_teacher(self, prompt: str, round_index: int) -> Any:
        # A distinct sample per round: a refinement prompt can repeat word for word (same strategy,
        # same feedback), and the cache must not hand back the same reply. A strategy that repeats
        # is, on the other hand, scored from the cache: the same K core samples, the same q̂.
        request = CoreRequest(messages=(Message("user", prompt),), sampling=self.teacher_sampling,
                              sample_index=round_index)
        try:
            return self.teacher.complete(request)
        except FatalCoreError:
            raise  # a dead model or bad key ends the run, not one problem
        except CoreError as exc:
            raise Unfinished("teacher", str(exc)) from exc

    def curate_problem(self, problem: Problem) -> dict[str, Any]:
        """The finished row for ``problem``. Raises :class:`Unfinished` on infrastructure failure."""
        cfg = self.config
        solution = problem.solution if problem.solution is not None else str(problem.reference)
        prompt = teacher_prompt(problem.question, solution)
        rounds: list[dict[str, Any]] = []
        cost_usd = spent_usd = 0.0
        best: dict[str, Any] | None = None
        for round_index in range(1 + cfg.max_rounds):
            if self.stop.requested:  # no new paid round once the user asked to stop
                raise Unfinished("interrupted", f"stopped before round {round_index}")
            reply = self._ask_teacher(prompt, round_index)
            cost_usd += reply.cost_usd
            spent_usd += reply.spent_usd
            parsed = parse_guide_output(reply.text, cfg.max_strategy_chars)
            record: dict[str, Any] = {"round": round_index, "q_hat": None, "successes": 0, "reason": None}
            if not parsed.structure_ok:
                record["reason"] = f"malformed: {parsed.message}"
                feedback = (f"Your reply was not in the required format ({parsed.message}). Reply with one "
                            "<think>…</think> block followed by exactly one non-empty <strategy>…</strategy> block.")
                previous = reply.text.strip()[:cfg.feedback_chars] or "(empty)"
            elif self.validator.leaks(problem, parsed.strategy):
                record["reason"] = "leak: the strategy states the answer"
                feedback = "Your strategy gives away the final answer. Describe how to get there, not the result."
                previous = parsed.strategy
            else:
                if self.stop.requested:
                    raise Unfinished("interrupted", f"stopped before the core runs of round {round_index}")
                guide_output = (f"<think>{parsed.think}</think>\n" if parsed.think else "") + \
                               f"<strategy>{parsed.strategy}</strategy>"
                outcomes = self.scorer.score_many([(problem, guide_output)] * cfg.k, max_workers=cfg.k,
                                                  sample_indices=range(cfg.k))
                failed = next((o for o in outcomes if o.error), None)
                if failed is not None:
                    raise Unfinished(failed.error_stage or "core", failed.error or "infrastructure error")
                for o in outcomes:
                    cost_usd += o.cost.core.usd
                    spent_usd += o.cost.core.spent_usd
                passes = [o.validation is not None and o.validation.reward >= cfg.success_threshold for o in outcomes]
                successes = sum(passes)
                q_hat = successes / cfg.k
                record.update(q_hat=q_hat, successes=successes)
                candidate = {"strategy": parsed.strategy, "guide_output": guide_output, "q_hat": q_hat,
                             "successes": successes, "round": round_index}
                if best is None or q_hat > best["q_hat"]:
                    best = candidate
                if q_hat >= cfg.tau:
                    rounds.append(record)
                    return self._row(problem, candidate, True, rounds, cost_usd, spent_usd)
                record["reason"] = f"q_hat {q_hat:.2f} < tau {cfg.tau:.2f}"
                failing = outcomes[passes.index(False)]
                needed = math.ceil(cfg.tau * cfg.k - 1e-9)
                details = failing.validation.details if failing.validation is not None else {}
                answer = (failing.core_output or "").strip()
                feedback = (f"The solver followed it {cfg.k} times and succeeded {successes} times; at least "
                            f"{needed} are needed. One failing attempt ended like this:\n"
                            f"{answer[-cfg.feedback_chars:]}\n"
                            f"The checker reported: {_short(details, cfg.feedback_chars)}")
                previous = parsed.strategy
            rounds.append(record)
            prompt = teacher_refine_prompt(problem.question, solution, previous, feedback)
        return self._row(problem, best, False, rounds, cost_usd, spent_usd)

    def _row(self, problem: Problem, best: dict[str, Any] | None, accepted: bool, rounds: list[dict],
             cost_usd: float, spent_usd: float) -> dict[str, Any]:
        best = best or {"strategy": None, "guide_output": None, "q_hat": 0.0, "successes": 0, "round": None}
        return {"problem_id": problem.task_id, "task": self.task.name, "question": problem.question,
                "accepted": accepted, "strategy": best["strategy"], "guide_output": best["guide_output"],
                "q_hat": best["q_hat"], "successes": best["successes"], "trials": self.config.k,
                "round": best["round"], "rounds": rounds, "tau": self.config.tau,
                "teacher": self.teacher.spec, "core": self.core.spec,
                "cost_usd": cost_usd, "spent_usd": spent_usd}

    # -- the run -------------------------------------------------------------------------------
    def run(self, problems: list[Problem] | None = None, progress: bool = True) -> CurationSummary:
        cfg = self.config
        started = time.monotonic()
        out = Path(cfg.out)
        self._check_resume(out)
        # Local inputs first (data, the output to resume), so a bad file is reported without a call.
        if problems is None:
            problems = self.task.load(split=cfg.split, data_files=cfg.data_files)
            problems = problems[:cfg.limit] if cfg.limit else problems
        earlier = read_jsonl_rows(out, repair=True)
        done = {row["problem_id"] for row in earlier}
        todo = [p for p in problems if p.task_id not in done]
        if cfg.preflight and todo:  # one tiny call per model before anything is spent (gcop check);
            from gcop_env.check import preflight_curate  # a finished run makes no call at all
            preflight_curate(cfg, self.teacher, self.core)
        write_config(cfg, config_path(out))
        writer = JsonlAppender(out)
        unfinished: list[dict] = []
        teacher_calls0, core_calls0 = _calls(self.teacher), _calls(self.core)
        spent0 = _spent(self.teacher) + _spent(self.core)
        bar = _progress(len(todo), progress)
        accepted_now = 0
        finished_ids: set[str] = set()
        pool = ThreadPoolExecutor(max_workers=cfg.workers)
        try:
            # Submitted a few at a time, so that a stop leaves at most `workers` problems running.
            for problem, future in completed_until_stopped(pool, self.curate_problem, todo, self.stop, cfg.workers):
                finished_ids.add(problem.task_id)
                try:
                    row = future.result()
                except FatalCoreError:
                    pool.shutdown(wait=True, cancel_futures=True)  # queued problems would fail the same way
                    bar.close()
                    raise
                except Unfinished as exc:
                    unfinished.append({"problem_id": problem.task_id, "stage": exc.stage, "error": str(exc)})
                    if exc.stage != "interrupted":
                        log.warning("problem %s unfinished (%s): %s", problem.task_id, exc.stage, exc)
                else:
                    writer.append(row)
                    accepted_now += int(row["accepted"])
                bar.update(1)
                bar.set_postfix(accepted=accepted_now, unfinished=len(unfinished),
                                paid=f"${_spent(self.teacher) + _spent(self.core) - spent0:.4f}")
        finally:
            # After a stop, calls still running past the grace period are abandoned, not awaited.
            pool.shutdown(wait=not self.stop.requested, cancel_futures=True)
        bar.close()
        if self.stop.requested:
            unfinished.extend({"problem_id": p.task_id, "stage": "interrupted", "error": "not finished before the stop"}
                              for p in todo if p.task_id not in finished_ids)
        rows = read_jsonl_rows(out)
        n_accepted = sum(1 for r in rows if r.get("accepted"))
        stats = acceptance_statistics(n_accepted, len(rows), cfg.k, cfg.eta, cfg.alpha, cfg.epsilon)
        summary = CurationSummary(
            out=str(out), finished=len(rows), accepted=n_accepted, unfinished=unfinished,
            skipped_finished=len(problems) - len(todo), cost_usd=sum(r.get("cost_usd", 0.0) for r in rows),
            spent_usd=_spent(self.teacher) + _spent(self.core) - spent0,
            teacher_calls=_calls(self.teacher) - teacher_calls0, core_calls=_calls(self.core) - core_calls0,
            elapsed_s=time.monotonic() - started, interrupted=self.stop.requested,
            sampling={"core": sampling_report(self.core, self.scorer.sampling),
                      "teacher": sampling_report(self.teacher, self.teacher_sampling)}, **stats)
        if rows and summary.guarantee_vacuous:
            margin = (summary.acceptance_rate or 0.0) - (summary.epsilon or 0.0)
            summary.warnings.append(
                f"δ = exp(−2Kη²) = {summary.delta:.3g} (K={cfg.k}, η={cfg.eta}) is not below Â − ε = {margin:.3g}: "
                "the acceptance guarantee is vacuous (the accepted set may be dominated by strategies whose true "
                "success rate is under τ − η). Raise --k, raise --eta, or curate more problems.")
            log.warning(summary.warnings[-1])
        write_json(summary_path(out), summary.as_dict())
        return summary

    def _check_resume(self, out: Path) -> None:
        previous = config_path(out)
        if not out.exists() or not previous.exists():
            return
        old = json.loads(previous.read_text(encoding="utf-8"))
        new = asdict(self.config)
        changed = [k for k in _RESUME_KEYS if k in old and old[k] != new[k]]
        if changed:
            raise ResumeMismatch(f"{out} was curated with different settings ({', '.join(f'{k}: {old[k]!r} -> {new[k]!r}' for k in changed)}); "
                             "use another --out, or delete the file to start over")

    def close(self) -> None:
        self.scorer.close()


def config_path(out: Path) -> Path:
    return out.with_name(out.stem + ".config.json")


def summary_path(out: Path) -> Path:
    return out.with_name(out.stem + ".summary.json")


def curate(config: CurateConfig, teacher: Core | None = None, core: Core | None = None,
           progress: bool = True, stop: StopRequest | None = None) -> CurationSummary:
    """Run curation as configured; returns the summary (also written next to ``config.out``).

    ``stop``: set it (e.g. from :func:`gcop_env.interrupt.stop_on_signal`) to end the run early;
    finished rows are kept and ``summary.interrupted`` is True.
    """
    curator = Curator(config, teacher=teacher, core=core, stop=stop)
    try:
        return curator.run(progress=progress)
    finally:
        curator.close()


def _short(details: dict, limit: int) -> str:
    text = json.dumps(details, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def _calls(core: Core) -> int:
    return int(getattr(core, "calls", 0))


def _spent(core: Core) -> float:
    return float(getattr(core, "spent_usd", 0.0))


class _NoBar:
    def update(self, n: int = 1) -> None: ...
    def set_postfix(self, **kwargs: Any) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="curate", unit="problem")
