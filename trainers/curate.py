"""Curation: teacher-guided acceptance sampling of strategies (the first stage of ExecTune).

For each problem (a *state* s):

1. The *teacher* (any core spec) sees the problem and its reference solution and writes M
   strategies (``teacher_draws``, distinct samples) in the guide's output format,
   ``<think>…</think><strategy>…</strategy>``.
2. The *target core* runs each strategy K times (distinct samples, concurrently) exactly as the
   environment would; q̂_K is the fraction of runs the task's validator passes; a strategy is
   accepted iff q̂_K ≥ τ. The first accepted draw is the problem's strategy.
3. When no draw is accepted, the teacher gets the core's failing answer for its best draw (and
   the validator's details, e.g. the failing test) and refines, for up to N more rounds.

Guarantee (Hoeffding; the paper's Sec. 3.4 / App. A.6), per state. A strategy whose true success
rate is below τ − η passes the K-run test with probability at most δ = exp(−2Kη²). Â_s, the
share of the M teacher draws accepted at state s, estimates the teacher's acceptance
probability A_s, and A_s ≥ Â_s − ε with probability 1 − α, ε = sqrt(ln(1/α) / 2M). So among the
teacher's accepted strategies at s, the share that is that bad is at most δ / (Â_s − ε), which
says something only when δ ≤ Â_s − ε. The report gives the share of states that satisfy it.
Refined proposals are not draws from the teacher's distribution (they were conditioned on the
core's failures), so they are counted separately and are not covered by the guarantee.

Multi-turn SFT (issue 20): a refinement chain is also the record of a multi-turn episode in which
the teacher played the guide. Each round record that a refinement followed keeps the teacher's reply
(``guide_output``), one failing answer of the core (``core_output``, bounded as the env bounds it)
and the *env's* feedback on it (``feedback``: :mod:`gcop_env.step.feedback`, which never holds the
gold or a reward test; the teacher's own refinement prompt, which shows the checker's details and
the reference solution, is not what the guide will see). ``gcop sft`` turns a row accepted after
refinement into a revision example: the guide's turns up to the accepted strategy, in the env's
observations (:func:`gcop_env.trainers.sft.revision_example`).

Resumable: a row is appended and fsynced as each problem finishes; a re-run with the same
``--out`` skips finished problems, and the response cache makes the calls already made for an
unfinished problem free. An infrastructure failure (API down after retries) is not a rejection:
the problem is left unfinished and reported, and a re-run retries it.

Interruptible: on the first Ctrl-C / SIGTERM (:mod:`gcop_env.utils.interrupt`) no new problem is
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

from gcop_env.cores.budget import Budget, BudgetExceeded, StopOrBudget
from gcop_env.cores import Core, CoreError, FatalCoreError, make_core, sampling_report
from gcop_env.cores.base import CallInterrupted
from gcop_env.cores.base import CoreRequest, Message, SamplingParams
from gcop_env.cores.options import core_from_options
from gcop_env.utils.interrupt import StopRequest, completed_until_stopped
from gcop_env.problem import Problem
from gcop_env.step.episode import DEFAULT_MAX_ANSWER_CHARS, bounded
from gcop_env.step.feedback import FeedbackUnavailable, feedback_source_for, structure_feedback
from gcop_env.step.prompts import teacher_prompt, teacher_refine_prompt
from gcop_env.step.reward import RewardConfig
from gcop_env.step.scoring import GuideScorer
from gcop_env.step.strategy import parse_guide_output
from gcop_env.envs.tasks import get_task
from gcop_env.trainers.config import CurateConfig, write_config
from gcop_env.utils.files import JsonlAppender, exclusive_use, read_jsonl_rows, write_json

log = logging.getLogger(__name__)

# Settings that change what a finished row means: resuming with different ones is refused.
_RESUME_KEYS = ("task", "split", "data_files", "teacher", "core", "k", "tau", "max_rounds", "teacher_draws",
                "success_threshold",
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
    acceptance_rate: float | None  # share of finished problems with an accepted strategy (draws or refinement)
    accepted_from_draws: int  # accepted with one of the M teacher draws (covered by the guarantee)
    accepted_after_refinement: int  # accepted only after refinement (not teacher draws: not covered)
    teacher_draws: int  # M
    delta: float  # δ = exp(−2Kη²)
    epsilon: float  # ε = sqrt(ln(1/α) / 2M), per state (or as set)
    states_checked: int  # finished problems whose row records its M draws
    states_guaranteed: int  # states with δ ≤ Â_s − ε
    guaranteed_share: float | None  # states_guaranteed / states_checked
    mean_draw_acceptance: float | None  # mean of Â_s over the checked states
    guarantee_attainable: bool  # δ + ε ≤ 1: some state can satisfy the check at all
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
    budget_exhausted: bool = False  # stopped by --max-usd / --max-total-tokens: re-run with a larger budget
    budget: dict | None = None  # the budget's caps, spend and what is left (None: no budget)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        rate = "n/a" if self.acceptance_rate is None else f"{self.acceptance_rate:.3f}"
        share = "n/a" if self.guaranteed_share is None else f"{self.guaranteed_share:.1%}"
        mean_a = "n/a" if self.mean_draw_acceptance is None else f"{self.mean_draw_acceptance:.3f}"
        out = [f"curated {self.finished} problems ({self.skipped_finished} from earlier runs): {self.accepted} "
               f"accepted (rate {rate}): {self.accepted_from_draws} from the teacher's {self.teacher_draws} draws, "
               f"{self.accepted_after_refinement} only after refinement (not covered by the guarantee)",
               f"per-state guarantee: δ = {self.delta:.3g} ≤ Â_s − ε (ε = {self.epsilon:.3g}) holds for "
               f"{self.states_guaranteed} of {self.states_checked} states ({share}); mean Â_s = {mean_a}",
               f"cost ${self.cost_usd:.4f} nominal, ${self.spent_usd:.4f} paid this run "
               f"({self.teacher_calls} teacher + {self.core_calls} core requests) in {self.elapsed_s:.1f}s",
               f"rows: {self.out}"]
        failed = [u for u in self.unfinished if u["stage"] not in ("interrupted", "budget")]  # the rest were stopped
        if failed:
            out.append(f"{len(failed)} problem(s) unfinished (infrastructure errors); re-run the same "
                       f"command to retry them: " + ", ".join(u["problem_id"] for u in failed[:10]))
        out.extend(f"WARNING: {w}" for w in self.warnings)
        if self.interrupted:
            out.append(f"INTERRUPTED: {self.finished} finished rows are saved in {self.out}; re-run the same "
                       f"command to resume (finished problems are skipped, answered calls come from the cache).")
        return out


@dataclass(frozen=True)
class StateGuarantee:
    """The Hoeffding check at one state s, from its M teacher draws (before refinement)."""

    accepted_draws: int
    draws: int  # M
    delta: float  # δ = exp(−2Kη²)
    epsilon: float  # ε = sqrt(ln(1/α) / 2M)

    @property
    def a_hat(self) -> float:
        """Â_s: the share of the teacher's draws accepted at this state."""
        return self.accepted_draws / self.draws

    @property
    def holds(self) -> bool:
        """δ ≤ Â_s − ε: the bound on bad accepted strategies says something at this state."""
        return self.delta <= self.a_hat - self.epsilon

    @property
    def bad_share_bound(self) -> float | None:
        """δ / (Â_s − ε): at most this share of the teacher's accepted strategies here have true rate < τ − η."""
        margin = self.a_hat - self.epsilon
        return min(1.0, self.delta / margin) if margin > 0 else None


def hoeffding_delta(k: int, eta: float) -> float:
    """δ = exp(−2Kη²): the chance that a strategy with true success rate below τ − η passes K runs."""
    return math.exp(-2.0 * k * eta * eta)


def hoeffding_epsilon(draws: int, alpha: float) -> float:
    """ε = sqrt(ln(1/α) / 2M): A_s ≥ Â_s − ε with probability 1 − α over M draws."""
    return math.sqrt(math.log(1.0 / alpha) / (2.0 * draws))


def state_guarantee(accepted_draws: int, draws: int, k: int, eta: float, alpha: float,
                    epsilon: float | None = None) -> StateGuarantee:
    eps = epsilon if epsilon is not None else hoeffding_epsilon(draws, alpha)
    return StateGuarantee(accepted_draws, draws, hoeffding_delta(k, eta), eps)


def acceptance_statistics(rows: list[dict], k: int, eta: float, alpha: float, draws: int,
                          epsilon: float | None = None) -> dict[str, Any]:
    """The report's numbers over finished rows: acceptance split by draws vs refinement, and the
    share of states where δ ≤ Â_s − ε (rows without recorded draws are not checked)."""
    delta = hoeffding_delta(k, eta)
    eps = epsilon if epsilon is not None else hoeffding_epsilon(draws, alpha)
    accepted = [r for r in rows if r.get("accepted")]
    from_draws = sum(1 for r in accepted if r.get("accepted_from") == "teacher_draw")
    checks = [state_guarantee(r["accepted_draws"], r["draws"], k, eta, alpha, epsilon)
              for r in rows if r.get("draws")]
    return {"acceptance_rate": len(accepted) / len(rows) if rows else None,
            "accepted_from_draws": from_draws, "accepted_after_refinement": len(accepted) - from_draws,
            "teacher_draws": draws, "delta": delta, "epsilon": eps, "states_checked": len(checks),
            "states_guaranteed": sum(c.holds for c in checks),
            "guaranteed_share": sum(c.holds for c in checks) / len(checks) if checks else None,
            "mean_draw_acceptance": sum(c.a_hat for c in checks) / len(checks) if checks else None,
            "guarantee_attainable": delta + eps <= 1.0}


class Curator:
    """Runs acceptance sampling for one task. ``teacher``/``core`` may be given ready-made."""

    def __init__(self, config: CurateConfig, teacher: Core | None = None, core: Core | None = None,
                 stop: StopRequest | None = None):
        self.config = config
        self.stop = stop or StopRequest()
        self.task = get_task(config.task)
        self.validator = self.task.make_validator(config.validator_options)
        # One budget for the teacher and the core (ready-made cores are rewrapped to pay from it).
        self.budget = Budget.from_limits(config.max_usd, config.max_total_tokens)
        self.teacher = make_core(teacher, budget=self.budget) if teacher and self.budget else \
            teacher or core_from_options(config.teacher, config, self.budget)
        self.core = make_core(core, budget=self.budget) if core and self.budget else \
            core or core_from_options(config.core, config, self.budget)
        if self.budget is not None:
            self.budget.check_priced([self.teacher, self.core])
        self.halt = StopOrBudget(self.stop, self.budget)
        # R only: no bonus, judge or baseline. The core sees exactly the prompt the env would send.
        self.scorer = GuideScorer(
            self.validator, self.core, reward=RewardConfig(beta=0.0, gamma=0.0, kappa=0.0),
            sampling=SamplingParams(config.core_temperature, config.core_top_p, config.core_max_tokens),
            max_strategy_chars=config.max_strategy_chars)
        self.teacher_sampling = SamplingParams(config.teacher_temperature, 1.0, config.teacher_max_tokens)
        self.feedback = feedback_source_for(self.validator)  # what a guide would be told (multi-turn SFT)

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
        except BudgetExceeded as exc:
            raise Unfinished("budget", str(exc)) from exc
        except CallInterrupted as exc:  # the user's stop ended its wait: nothing was sent
            raise Unfinished("interrupted", str(exc)) from exc
        except CoreError as exc:
            raise Unfinished("teacher", str(exc)) from exc

    def _propose(self, problem: Problem, prompt: str, sample_index: int, solution: str,
                 round_index: int = 0) -> dict[str, Any]:
        """One teacher proposal tested K times: its round record, the candidate (None unless well
        formed and leak-free), the refinement prompt to use if it is not accepted, and its cost."""
        cfg = self.config
        if self.halt.requested:  # no new paid proposal once the user asked to stop (or the budget ran out)
            raise Unfinished(self.halt.stage, f"stopped before round {round_index} (draw {sample_index})")
        reply = self._ask_teacher(prompt, sample_index)
        cost_usd, spent_usd = reply.cost_usd, reply.spent_usd
        parsed = parse_guide_output(reply.text, cfg.max_strategy_chars)
        record: dict[str, Any] = {"round": round_index, "q_hat": None, "successes": 0, "reason": None}
        if round_index == 0:
            record["draw"] = sample_index
        candidate = None
        failing = None  # one failing core run, for the env's feedback on this round (multi-turn SFT)
        if not parsed.structure_ok:
            record["reason"] = f"malformed: {parsed.message}"
            feedback = (f"Your reply was not in the required format ({parsed.message}). Reply with one "
                        "<think>…</think> block followed by exactly one non-empty <strategy>…</strategy> block.")
            previous = reply.text.strip()[:cfg.feedback_chars] or "(empty)"
            record["guide_output"] = reply.text
            record["feedback"] = structure_feedback(parsed).text
        elif self.validator.leaks(problem, parsed.strategy):
            record["reason"] = "leak: the strategy states the answer"
            feedback = "Your strategy gives away the final answer. Describe how to get there, not the result."
            previous = parsed.strategy
        else:
            if self.halt.requested:
                raise Unfinished(self.halt.stage, f"stopped before the core runs of round {round_index}")
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
            feedback = previous = ""
            if q_hat < cfg.tau:
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
                record["guide_output"] = guide_output
                record["core_output"] = bounded(failing.core_output or "", DEFAULT_MAX_ANSWER_CHARS)
        accepted = candidate is not None and candidate["q_hat"] >= cfg.tau
        return {"record": record, "candidate": candidate, "accepted": accepted, "cost_usd": cost_usd,
                "spent_usd": spent_usd, "failing": failing,
                "refine_prompt": None if accepted else teacher_refine_prompt(problem.question, solution, previous,
                                                                             feedback)}

    def curate_problem(self, problem: Problem) -> dict[str, Any]:
        """The finished row for ``problem``. Raises :class:`Unfinished` on infrastructure failure.

        First M teacher draws (sample indices 0..M−1 of the same prompt, made at once), each tested
        K times at once: the share accepted is Â_s. The first accepted draw is the row's strategy; when none is, the
        best draw (highest q̂) goes back to the teacher for up to N refinement rounds.
        """
        cfg = self.config
        solution = problem.solution if problem.solution is not None else str(problem.reference)
        prompt = teacher_prompt(problem.question, solution)
        # the M draws are independent (all are tested, the first accepted one is kept): they run at once
        if cfg.teacher_draws > 1:
            with ThreadPoolExecutor(max_workers=cfg.teacher_draws, thread_name_prefix="gcop-curate-draw") as pool:
                draws = list(pool.map(lambda j: self._propose(problem, prompt, j, solution), range(cfg.teacher_draws)))
        else:
            draws = [self._propose(problem, prompt, 0, solution)]
        cost_usd = sum(d["cost_usd"] for d in draws)
        spent_usd = sum(d["spent_usd"] for d in draws)
        draw_stats = {"draws": cfg.teacher_draws, "accepted_draws": sum(d["accepted"] for d in draws),
                      "teacher_draw_records": [d["record"] for d in draws]}
        scored = [d for d in draws if d["candidate"] is not None]
        best = max(scored, key=lambda d: d["candidate"]["q_hat"]) if scored else draws[0]
        first_accepted = next((d for d in draws if d["accepted"]), None)
        rounds = [(first_accepted or best)["record"]]
        if first_accepted is not None:
            return self._row(problem, first_accepted["candidate"], True, rounds, cost_usd, spent_usd,
                             accepted_from="teacher_draw", **draw_stats)
        best_candidate = best["candidate"]
        prompt = best["refine_prompt"]
        if cfg.max_rounds:
            self._env_feedback(problem, best)
        for round_index in range(1, 1 + cfg.max_rounds):
            result = self._propose(problem, prompt, round_index, solution, round_index)
            cost_usd += result["cost_usd"]
            spent_usd += result["spent_usd"]
            rounds.append(result["record"])
            candidate = result["candidate"]
            if candidate is not None and (best_candidate is None or candidate["q_hat"] > best_candidate["q_hat"]):
                best_candidate = candidate
            if result["accepted"]:
                return self._row(problem, candidate, True, rounds, cost_usd, spent_usd,
                                 accepted_from="refinement", **draw_stats)
            if round_index < cfg.max_rounds:
                self._env_feedback(problem, result)
            prompt = result["refine_prompt"]
        return self._row(problem, best_candidate, False, rounds, cost_usd, spent_usd, accepted_from=None,
                         **draw_stats)

    def _env_feedback(self, problem: Problem, proposal: dict[str, Any]) -> None:
        """Record the env's feedback on the proposal's failing core answer (what a guide would see).

        Nothing is recorded when the feedback cannot be written (the sandbox failed on the feedback
        tests): the row then makes no revision example, and curation goes on.
        """
        failing, record = proposal.get("failing"), proposal["record"]
        if failing is None or failing.validation is None or "core_output" not in record:
            return
        try:
            text = self.feedback.feedback(self.feedback.prepare(problem), failing.core_output or "",
                                          failing.validation).text
        except FeedbackUnavailable as exc:
            log.warning("problem %s: no multi-turn feedback for round %s (%s)", problem.task_id, record["round"], exc)
            return
        record["feedback"] = text

    def _row(self, problem: Problem, best: dict[str, Any] | None, accepted: bool, rounds: list[dict],
             cost_usd: float, spent_usd: float, **extra: Any) -> dict[str, Any]:
        best = best or {"strategy": None, "guide_output": None, "q_hat": 0.0, "successes": 0, "round": None}
        return {"problem_id": problem.task_id, "task": self.task.name, "question": problem.question,
                "accepted": accepted, "strategy": best["strategy"], "guide_output": best["guide_output"],
                "q_hat": best["q_hat"], "successes": best["successes"], "trials": self.config.k,
                "round": best["round"], "rounds": rounds, "tau": self.config.tau,
                "teacher": self.teacher.spec, "core": self.core.spec,
                "cost_usd": cost_usd, "spent_usd": spent_usd, **extra}

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
            from gcop_env.cores.preflight import preflight_curate  # a finished run makes no call at all
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
            for problem, future in completed_until_stopped(pool, self.curate_problem, todo, self.halt, cfg.workers):
                finished_ids.add(problem.task_id)
                try:
                    row = future.result()
                except FatalCoreError:
                    pool.shutdown(wait=True, cancel_futures=True)  # queued problems would fail the same way
                    bar.close()
                    raise
                except Unfinished as exc:
                    unfinished.append({"problem_id": problem.task_id, "stage": exc.stage, "error": str(exc)})
                    if exc.stage not in ("interrupted", "budget"):
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
        if self.halt.requested:
            unfinished.extend({"problem_id": p.task_id, "stage": self.halt.stage, "error": "not finished before the stop"}
                              for p in todo if p.task_id not in finished_ids)
        rows = read_jsonl_rows(out)
        n_accepted = sum(1 for r in rows if r.get("accepted"))
        stats = acceptance_statistics(rows, cfg.k, cfg.eta, cfg.alpha, cfg.teacher_draws, cfg.epsilon)
        summary = CurationSummary(
            out=str(out), finished=len(rows), accepted=n_accepted, unfinished=unfinished,
            skipped_finished=len(problems) - len(todo), cost_usd=sum(r.get("cost_usd", 0.0) for r in rows),
            spent_usd=_spent(self.teacher) + _spent(self.core) - spent0,
            teacher_calls=_calls(self.teacher) - teacher_calls0, core_calls=_calls(self.core) - core_calls0,
            elapsed_s=time.monotonic() - started, interrupted=self.stop.requested,
            budget_exhausted=self.budget is not None and self.budget.exhausted,
            budget=self.budget.status().as_dict() if self.budget is not None else None,
            sampling={"core": sampling_report(self.core, self.scorer.sampling),
                      "teacher": sampling_report(self.teacher, self.teacher_sampling)}, **stats)
        if rows and not summary.guarantee_attainable:
            summary.warnings.append(
                f"δ + ε = {summary.delta:.3g} + {summary.epsilon:.3g} > 1 (K={cfg.k}, η={cfg.eta}, "
                f"M={cfg.teacher_draws}, α={cfg.alpha}): no state can satisfy δ ≤ Â_s − ε, so the per-state "
                "guarantee is vacuous by construction. Raise --teacher-draws, --k or --eta.")
            log.warning(summary.warnings[-1])
        elif rows and summary.states_checked and not summary.states_guaranteed:
            summary.warnings.append(
                f"no state satisfies δ = {summary.delta:.3g} ≤ Â_s − ε (ε = {summary.epsilon:.3g}): the accepted "
                "strategies carry no Hoeffding guarantee in this run.")
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

    ``stop``: set it (e.g. from :func:`gcop_env.utils.interrupt.stop_on_signal`) to end the run early;
    finished rows are kept and ``summary.interrupted`` is True. Raises
    :class:`~gcop_env.utils.files.InUse` when another run holds ``config.out``.
    """
    curator = Curator(config, teacher=teacher, core=core, stop=stop)
    try:
        # one run per output file: a second one would pay for every problem again and append its rows too
        with exclusive_use(config.out, "gcop curate"):
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
