"""The run loop of ``gcop eval``: one condition over a task split into a run dir of records and a summary.

    problems ─▶ condition (core-only | ICL | guided | strategies) ─▶ GuideScorer ─▶ records.jsonl
                                                                                 ─▶ summary.json

Every condition is a small object with one job: turn problems into jobs, one per row (a problem
and a sample). The core's answer becomes a number only through
:class:`~gcop_env.step.scoring.GuideScorer` (the scorer the env and the trainer use), with the judge
and the unguided baseline off: guided rows go through ``score`` with the guide's text, core-only and
ICL rows through ``score_unguided``.

``--workers`` jobs are in flight at any time, and the next starts as soon as one finishes (no
batch waits for its slowest call), so ``--workers`` calls are in flight whatever the latencies. A
guide that generates in batches on this machine does so in a background thread, one batch ahead,
while the core calls go on.

The run dir is the checkpoint: a problem's rows are appended (written through at once, fsynced
within a second) as soon as its last sample is scored, so a killed run re-run with the same command skips the finished problems;
problems whose rows hold an infrastructure error are retried. When the run completes, the records
are put back in problem order (they were appended as problems finished). Core and guide calls go
through the response cache, so re-running a finished condition makes 0 API calls and rewrites the
same ``summary.json`` byte for byte (it holds no clock time and no per-run counters).
"""

from __future__ import annotations

import inspect
import json
import math
import queue
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from gcop_env.cores import make_core
from gcop_env.cores.base import SamplingParams
from gcop_env.cores.budget import Budget
from gcop_env.envs.tasks import get_task
from gcop_env.cores.hf_core import local_model_problem
from gcop_env.evaluation.conditions import Condition, Job, build_condition, guide_recipe, strategies_file_problem
from gcop_env.evaluation.config import EvalConfig, EvalInputError
from gcop_env.evaluation.records import RECORDS, ROLES, RUN_CONFIG, SUMMARY
from gcop_env.evaluation.summary import build_summary
from gcop_env.step.reward import RewardConfig
from gcop_env.step.scoring import GuideScorer
from gcop_env.utils.files import DataError, InUse, JsonlAppender, exclusive_use, read_jsonl_rows, write_text_atomic


@dataclass
class EvalResult:
    """What one ``gcop eval`` invocation did. ``interrupted``: stopped early, resumable."""

    out: Path
    summary: dict[str, Any]
    n_problems: int
    n_run: int  # problems run by this invocation
    n_skipped: int  # problems already finished in the run dir
    n_retried: int  # problems re-run because their rows held an infrastructure error
    calls: dict[str, tuple[int, int]]  # role -> (live, cached) calls of this invocation
    interrupted: bool = False
    budget_exhausted: bool = False  # stopped because the spend cap was reached (resumable, like interrupted)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.summary["metrics"]

    def lines(self) -> list[str]:
        m = self.metrics
        acc = "n/a" if m["accuracy"] is None else f"{m['accuracy']:.3f}"
        ci = "" if m["accuracy_ci95"] is None else f" [{m['accuracy_ci95'][0]:.3f}, {m['accuracy_ci95'][1]:.3f}]"
        c = self.summary["condition"]
        lines = [f"{c['name']} ({c['kind']}) on {self.summary['task']} {self.summary['split']}: "
                 f"{m['n_problems']} problems ({self.n_run} run now, {self.n_skipped} already done"
                 + (f", {self.n_retried} retried after infra errors" if self.n_retried else "") + ")",
                 f"  accuracy (Pass@1) {acc}{ci} over {m['n_scored']} scored problems"]
        if m["executability"] is not None:
            lines.append(f"  executability α̂ {m['executability']:.3f}   structure_ok rate "
                         + ("n/a" if m["structure_ok_rate"] is None else f"{m['structure_ok_rate']:.3f}"))
        cost = m["cost_per_problem"]
        lines.append("  per problem: " + ", ".join(f"{role} {cost[role]['tokens']:.0f} tok ${cost[role]['usd']:.6f}"
                                                  for role in ("guide", "core", "judge", "total"))
                     + f", latency {m['latency_per_problem_s']:.2f}s")
        if m["net_utility"] is not None:
            lines.append(f"  net utility V − λ·T = {m['net_utility']:.4f} (λ = {m['lam']:g})")
        lines.append("  calls this run: " + ", ".join(f"{role} {live} live / {cached} cached"
                                                     for role, (live, cached) in self.calls.items()))
        for note in self.summary["notes"]:
            lines.append(f"  note: {note}")
        lines.append(f"  run dir: {self.out} ({RECORDS}, {SUMMARY})")
        return lines


def _check_identity(out: Path, config: EvalConfig) -> None:
    path = out / RUN_CONFIG
    ident = json.loads(json.dumps(config.identity(), sort_keys=True))
    records = out / RECORDS
    has_rows = records.exists() and records.stat().st_size > 0
    if path.exists() and has_rows:  # a dir without rows holds nothing to protect: it takes the new identity
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:  # not UTF-8 or not JSON
            raise EvalInputError(f"{path} is not valid JSON; delete the run dir or choose another --out") from None
        old = saved.get("identity") if isinstance(saved, dict) else None
        if not isinstance(old, dict):
            raise EvalInputError(f"{path} holds no run identity (it was edited or damaged); delete the run dir or "
                                 f"choose another --out")
        if old != ident:
            diff = sorted(k for k in set(old) | set(ident) if old.get(k) != ident.get(k))
            detail = "; ".join(f"{k}: {old.get(k)!r} there, {ident.get(k)!r} now" for k in diff[:4])
            raise EvalInputError(f"{out} holds a different condition ({detail}); choose another --out or delete it")
    elif has_rows and not path.exists():
        raise EvalInputError(f"{out} has {RECORDS} but no {RUN_CONFIG}; it is not a gcop eval run dir of this "
                             f"version: choose another --out")
    write_text_atomic(path, json.dumps({"identity": ident}, indent=2, sort_keys=True) + "\n")


_STATUSES = frozenset({"pass", "fail", "timeout", "error", "tampered", "infra", "malformed"})
_COST_FIELDS = ("calls", "cached_calls", "input_tokens", "output_tokens", "usd", "latency_s")


def _row_problem(row: Any) -> str | None:
    """Why a saved row cannot be resumed from (a hand edit, a damaged file), or None when it can."""
    if not isinstance(row, dict):
        return "not a JSON object"
    task_id, sample = row.get("task_id"), row.get("sample")
    if isinstance(task_id, bool) or not isinstance(task_id, (str, int)):
        return f"task_id is {task_id!r}"
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
        return f"sample is {sample!r}, not an integer >= 0"
    if row.get("status") not in _STATUSES:
        return f"status is {row.get('status')!r}, not one of {sorted(_STATUSES)}"
    if row.get("success") not in (True, False, None):
        return f"success is {row.get('success')!r}"
    cost = row.get("cost")
    if not isinstance(cost, dict):
        return f"cost is {cost!r}, not an object"
    for role in ROLES:
        spent = cost.get(role)
        if not isinstance(spent, dict):
            return f"cost.{role} is {spent!r}, not an object"
        for name in _COST_FIELDS:
            value = spent.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                return f"cost.{role}.{name} is {value!r}, not a finite number >= 0"
    return None


def _saved_rows(records_path: Path) -> list[dict]:
    """The rows a resumed run keeps; any row it could not use is one clear error, nothing is rewritten."""
    try:
        rows = read_jsonl_rows(records_path, repair=True)
    except DataError as exc:  # a bad line (not UTF-8, not JSON, not an object)
        raise EvalInputError(f"{exc}; or choose another --out") from None
    for number, row in enumerate(rows, start=1):
        problem = _row_problem(row)
        if problem:
            raise EvalInputError(f"{records_path} row {number}: {problem}; the run dir was edited or damaged: fix or "
                                 f"delete that row, or choose another --out")
    return rows


def _changed_problems(kept: dict[str, list[dict]], wanted: dict[str, Any]) -> list[str]:
    """Task ids whose saved rows answered another problem than the data now holds under that id (a data
    file edited in place: ids are positional). Rows from before fingerprints were recorded are not checked."""
    changed = []
    for task_id, rows in kept.items():
        problem = wanted.get(task_id)
        if problem is None:
            continue
        recorded = {r.get("problem_sha256") for r in rows if isinstance(r.get("problem_sha256"), str)}
        if recorded and recorded != {problem.fingerprint()}:
            changed.append(task_id)
    return changed


def _check_local_inputs(config: EvalConfig) -> None:
    """The files the run reads, checked before anything is written or paid for: the strategies file, and
    a local model's path (``hf:/no/such/dir`` is one line here, not an infrastructure row per problem)."""
    if config.strategies:
        problem = strategies_file_problem(Path(config.strategies))
        if problem:
            raise EvalInputError(problem)
    specs = [("--core", config.core), ("--judge", config.judge)]
    if config.kind == "guided":
        specs.append(("--guide", config.guide))
    for flag, spec in specs:
        backend, _, rest = str(spec or "").partition(":")
        if backend.strip().lower() == "hf" and rest:  # (vllm: a missing vLLM is said first, by the guide)
            problem = local_model_problem(rest.split("?", 1)[0].strip())
            if problem:
                raise EvalInputError(f"{flag} {spec}: {problem}")


def _load_local_models(condition: Condition, cores: list) -> None:
    """Local models load before the first batch (they load then anyway): a directory that is not a model is
    one line, before anything is paid, instead of an infrastructure error on every problem."""
    loaders: list[tuple[str, Callable[[], None]]] = []
    guide = getattr(condition, "guide", None)
    if guide is not None:
        loaders.append((guide.spec, guide.load))
    for core in cores:
        inner = getattr(core, "inner", core)
        if core is not None and callable(getattr(inner, "load", None)):
            loaders.append((core.spec, inner.load))
    for spec, load in loaders:
        try:
            load()
        except Exception as exc:  # noqa: BLE001 - whatever a loader raises, the model is not usable
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the loader said
            raise EvalInputError(f"{spec} cannot be loaded ({detail[:500]})") from None


def _rewrite_records(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def _preflight(config: EvalConfig) -> None:
    """One tiny uncached call per API model of the run (``gcop check``), before anything is spent.

    Raises :class:`~gcop_env.cores.preflight.PreflightFailed` (a retired model, a bad key, a refused sampling
    parameter, an unreachable server). Local ``hf:``/``vllm:`` models are checked by loading them.
    """
    from gcop_env.cores.preflight import require_ready

    items: list = [(config.core, SamplingParams(config.core_temperature, config.core_top_p))]
    if config.kind == "guided":
        items.append((config.guide, SamplingParams(config.guide_temperature, config.guide_top_p)))
    if config.judge:
        items.append((config.judge, SamplingParams(0.0, 1.0)))
    api = [(spec, sampling) for spec, sampling in items if str(spec).split(":", 1)[0] in ("anthropic", "openai")]
    if api:
        require_ready(api, timeout_s=config.timeout_s)


def run_eval(config: EvalConfig, *, progress: bool = True, preflight: bool = True,
             stop: Callable[[], bool] | None = None, budget: Budget | None = None) -> EvalResult:
    """Run (or resume) one condition; write ``records.jsonl`` and ``summary.json`` under ``config.out``.

    One run at a time per run dir: the run holds a lock on it (:func:`~gcop_env.utils.files.exclusive_use`),
    and a second ``run_eval`` into it raises :class:`EvalInputError` before it reads or pays anything.
    See :func:`_run_eval` for the rest.
    """
    out, made = _run_dir(config)
    try:
        with exclusive_use(out, "gcop eval"):
            return _run_eval(config, out, progress=progress, preflight=preflight, stop=stop, budget=budget)
    except InUse as exc:
        raise EvalInputError(str(exc).replace("choose another output", "choose another --out")) from None
    except BaseException:
        if made and not any(out.iterdir()):  # refused before anything was written: leave no empty run dir
            out.rmdir()
        raise


def _run_dir(config: EvalConfig) -> tuple[Path, bool]:
    """``--out`` as a directory, made if missing (and whether it was); a file or an empty name is refused."""
    if not str(config.out).strip():
        raise EvalInputError("--out is empty; give the run dir (e.g. --out runs/core-only)")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise EvalInputError(f"--out {out} is a file, not a run dir; choose a directory (a new one, or a run dir "
                             f"to resume)")
    made = not out.exists()
    if not made and not (out / RUN_CONFIG).exists():
        # a directory of other files (the data's own, say) is not a run dir: never write a run among them
        others = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        if others:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise EvalInputError(f"--out {out} holds other files ({shown}) and is not a gcop eval run dir; choose a "
                                 f"new or empty directory, or a run dir to resume")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvalInputError(f"--out {out} cannot be made ({exc.strerror or exc})") from None
    return out, made


def _run_eval(config: EvalConfig, out: Path, *, progress: bool, preflight: bool,
              stop: Callable[[], bool] | None, budget: Budget | None) -> EvalResult:
    """Run (or resume) one condition into the run dir ``out``, which this process holds.

    ``stop``: polled before each job starts; when it returns True no new job starts, the jobs in
    flight finish and their rows are saved, and the run returns ``interrupted=True`` (with the
    summary of what is done, not written). ``budget``: the spend cap of the core, judge and API
    guide calls. Once it refuses a call no new job starts: the jobs in flight finish, finished
    problems are saved, problems with a refused call are left for the re-run (their paid calls are
    cached), no ``summary.json`` is written, and ``budget_exhausted`` is True.
    """
    _check_local_inputs(config)
    try:
        task = get_task(config.task)
    except KeyError as exc:
        raise EvalInputError(exc.args[0]) from None
    try:
        all_problems = task.load(split=config.split, data_files=config.data_files)
    except Exception as exc:  # noqa: BLE001 - nothing is spent yet: any loading failure is one clear line
        raise EvalInputError(f"cannot load {task.name} split {config.split!r} "
                             f"({type(exc).__name__}: {exc}); check --split / --data-files") from None
    if not all_problems:
        raise EvalInputError(f"{task.name} split {config.split!r} has no problems")
    _check_identity(out, config)

    cache = config.cache_setting()
    retry = config.retry_policy()
    core = make_core(config.core, cache=cache, retry=retry, timeout_s=config.timeout_s, budget=budget)
    try:
        validator = task.make_validator(config.validator_options)
    except ValueError as exc:  # ValidatorOptionsError: nothing is spent yet
        raise EvalInputError(f"--validator-options: {exc}") from None
    scorer_options: dict[str, Any] = {}
    recipe = (config.recipe or guide_recipe(config.guide)) if config.kind == "guided" else config.recipe
    if recipe == "Advisor":
        # An advisor guide is trained without the structure requirement: its whole output is the advice.
        if "structure_required" not in inspect.signature(GuideScorer).parameters:
            raise EvalInputError("an Advisor guide needs GuideScorer(structure_required=False), missing in this version")
        scorer_options["structure_required"] = False
    judge_core = None
    if config.judge:
        judge_core = make_core(config.judge, cache=cache, retry=retry, timeout_s=config.timeout_s, budget=budget)
        scorer_options["judge_core"] = judge_core
        scorer_options["judge_sampling"] = SamplingParams(temperature=0.0, max_tokens=config.judge_max_tokens)
    # Only the task reward R is recorded; γ > 0 merely switches the judge on (its verdict is recorded apart).
    reward = RewardConfig(beta=0.0, gamma=1.0 if config.judge else 0.0, kappa=0.0, lam=0.0)
    scorer = GuideScorer(validator, core, reward=reward,
                         **scorer_options,
                         sampling=SamplingParams(temperature=config.core_temperature, top_p=config.core_top_p,
                                                 max_tokens=config.core_max_tokens),
                         max_strategy_chars=config.max_strategy_chars)
    condition = None
    try:
        condition = build_condition(config, task, all_problems, scorer, retry, cache)
        if budget is not None:
            _put_under_budget(condition, config, budget, [core, judge_core])
        selected = condition.select(all_problems)
        if config.limit:
            selected = selected[:config.limit]
        records_path = out / RECORDS
        kept: dict[str, list[dict]] = {}
        existing = _saved_rows(records_path)
        for row in existing:
            kept.setdefault(str(row["task_id"]), []).append(row)
        wanted = {p.task_id: p for p in selected}
        changed = _changed_problems(kept, wanted)
        if changed:
            raise EvalInputError(f"{out} holds answers to {len(changed)} problem(s) that changed in the data since they "
                                 f"were run ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}): the data "
                                 f"was edited in place, so the same task ids now name other problems. Choose another "
                                 f"--out for the new data, or restore the data to resume")
        finished: dict[str, list[dict]] = {}
        retried = 0
        for task_id, rows in kept.items():
            p = wanted.get(task_id)
            if p is None:
                continue  # outside this selection (e.g. a smaller --limit): kept on disk, left out of the summary
            samples = sorted(r["sample"] for r in rows)
            if any(r["status"] == "infra" for r in rows):
                retried += 1  # never a wrong answer: run it again
            elif samples == list(range(condition.samples(p))):
                finished[task_id] = sorted(rows, key=lambda r: r["sample"])
        keep = [r for r in existing if str(r["task_id"]) in finished or str(r["task_id"]) not in wanted]
        if len(keep) != len(existing):  # drop the rows to be redone (infra errors, half-written problems)
            _rewrite_records(records_path, keep)
        todo = [p for p in selected if p.task_id not in finished]
        if todo:  # a finished condition re-runs with 0 API calls and loads nothing
            _load_local_models(condition, [core, judge_core])
        if todo and preflight:
            _preflight(config)
        if todo and (out / SUMMARY).exists():
            (out / SUMMARY).unlink()  # it describes an earlier state; the finished run writes the new one
        # rows are written through at once (a killed run loses none) and fsynced once a second: their
        # paid answers are in the response cache too
        appender = JsonlAppender(records_path, fsync_every_s=1.0)
        n_run = 0
        bar = _progress_bar(len(selected), len(selected) - len(todo), progress, condition.describe()["name"])
        tally = _Tally([finished[p.task_id] for p in selected if p.task_id in finished])
        bar.set_postfix_str(tally.postfix(), refresh=False)
        workers = max(1, config.workers)
        failure: list[BaseException] = []  # a job that raised (a fatal API error): no new job starts

        def should_stop() -> bool:
            return bool(failure) or (stop is not None and stop()) or (budget is not None and budget.exhausted)

        source = (_Ahead(condition.jobs(todo), depth=workers + config.guide_batch_size) if condition.batched
                  else _Jobs(condition.jobs(todo)))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gcop-eval")
        partial: dict[str, dict[int, dict]] = {}  # task_id -> sample -> row, until the problem is complete
        keyboard = False
        try:
            for job, future in _fan_out(pool, source, workers, should_stop, failure):
                try:
                    row = future.result()
                except Exception as exc:  # noqa: BLE001 - re-raised below, once the jobs in flight are saved
                    failure.append(exc)
                    continue
                done = partial.setdefault(job.problem.task_id, {})
                done[job.sample] = row
                if len(done) < condition.samples(job.problem):
                    continue
                rows = [done[i] for i in sorted(done)]
                del partial[job.problem.task_id]
                if any(_not_finished(r) for r in rows):
                    continue  # not finished: the re-run does it, its paid calls come from the cache
                for r in rows:
                    appender.append(r)
                finished[job.problem.task_id] = rows
                tally.add(rows)
                n_run += 1
                bar.update(1)
                bar.set_postfix_str(tally.postfix())
        except KeyboardInterrupt:  # a second Ctrl-C: stop at once (what finished is saved)
            keyboard = True
        finally:
            pool.shutdown(wait=not keyboard, cancel_futures=True)
            source.close(wait=not keyboard)
            appender.close()
            bar.close()
        if failure:
            raise failure[0]
        unfinished = any(p.task_id not in finished for p in todo)
        interrupted = keyboard or (unfinished and stop is not None and stop())
        budget_stopped = not interrupted and budget is not None and budget.exhausted
        if not interrupted and not budget_stopped:
            _in_problem_order(records_path, condition.select(all_problems))
        rows_by_problem = [finished[p.task_id] for p in selected if p.task_id in finished]
        summary = build_summary(config, condition, task, rows_by_problem)
        if not interrupted and not budget_stopped:
            write_text_atomic(out / SUMMARY, json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
        return EvalResult(out=out, summary=summary, n_problems=len(selected),
                          n_run=n_run,
                          n_skipped=len(selected) - len(todo), n_retried=retried, calls=condition.calls(),
                          interrupted=interrupted, budget_exhausted=budget_stopped)
    finally:
        if condition is not None:
            condition.close()
        scorer.close()
        core.close()
        if judge_core is not None:
            judge_core.close()


def _fan_out(pool: ThreadPoolExecutor, source: "_Jobs", workers: int, should_stop: Callable[[], bool],
             failure: list[BaseException]) -> Iterator[tuple[Job, Future]]:
    """Run the jobs of ``source`` on ``pool`` and yield ``(job, future)`` as each finishes, keeping
    ``workers`` of them in flight: the next job starts as soon as one finishes. Once
    ``should_stop()`` is true (Ctrl-C, the budget, a fatal error) no new job starts; the ones in
    flight are awaited and yielded, so their paid calls are saved. An error drawing a job (a
    local guide that failed) goes to ``failure`` and stops the drawing the same way."""
    in_flight: dict[Future, Job] = {}
    while True:
        while len(in_flight) < workers and not source.exhausted and not should_stop():
            try:
                job = source.take(timeout=0.0 if in_flight else 0.2)
            except Exception as exc:  # noqa: BLE001 - raised by the run loop once the jobs in flight are saved
                failure.append(exc)
                break
            if job is None:
                break  # a batch is still being generated
            in_flight[pool.submit(job.run)] = job
        if not in_flight:
            if source.exhausted or should_stop():
                return
            continue
        # with a free slot and a batch on its way, look again for new jobs every 0.2 s
        waiting = len(in_flight) < workers and not source.exhausted and not should_stop()
        done, _ = wait(in_flight, timeout=0.2 if waiting else None, return_when=FIRST_COMPLETED)
        for future in done:
            yield in_flight.pop(future), future


class _Jobs:
    """The jobs of a condition, drawn when a worker is free."""

    def __init__(self, jobs: Iterable[Job]):
        self._jobs = iter(jobs)
        self.exhausted = False

    def take(self, timeout: float) -> Job | None:
        """The next job; None when there is none (then ``exhausted``)."""
        job = next(self._jobs, None)
        self.exhausted = job is None
        return job

    def close(self, wait: bool = True) -> None:
        pass


class _Ahead(_Jobs):
    """Jobs drawn in a background thread, up to ``depth`` ahead of the run loop: a local guide
    generates its next batch while the core calls of the last one are in flight. An error raised
    while drawing (the guide failed) is raised by :meth:`take`."""

    _END = object()

    def __init__(self, jobs: Iterable[Job], depth: int):
        super().__init__(())
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._draw, args=(iter(jobs),), name="gcop-eval-guide", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _draw(self, jobs: Iterator[Job]) -> None:
        try:
            for job in jobs:
                if not self._put(job):
                    return
            item: Any = self._END
        except BaseException as exc:  # noqa: BLE001 - handed to the run loop, which raises it
            item = exc
        self._put(item)

    def take(self, timeout: float) -> Job | None:
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if item is self._END:
            self.exhausted = True
            return None
        if isinstance(item, BaseException):
            self.exhausted = True
            raise item
        return item

    def close(self, wait: bool = True) -> None:
        """No more jobs are drawn; ``wait``: until the batch being generated is done (the guide is
        closed next, and must not be closed under its own generation)."""
        self._closed.set()
        if wait:
            self._thread.join()


def _in_problem_order(path: Path, problems: list) -> None:
    """Rewrite ``records.jsonl`` in problem order, samples in order, when the appends (made as
    problems finished) left it otherwise; rows of problems outside ``problems`` keep their order
    at the end. A finished run's records are the same whatever the latencies were."""
    rows = read_jsonl_rows(path)
    order = {p.task_id: i for i, p in enumerate(problems)}
    ranked = sorted(range(len(rows)), key=lambda i: (order.get(str(rows[i]["task_id"]), len(order) + i),
                                                     int(rows[i]["sample"])))
    if ranked != list(range(len(rows))):
        _rewrite_records(path, [rows[i] for i in ranked])


def _put_under_budget(condition: Condition, config: EvalConfig, budget: Budget, cores: list) -> None:
    """An API guide pays from the same budget as the core (at ``--guide-price`` when given); a
    model without a price under ``--max-usd`` is refused before anything is spent."""
    guide_core = getattr(getattr(condition, "guide", None), "core", None)
    if guide_core is not None and hasattr(guide_core, "budget"):
        guide_core.budget = budget
        if config.guide_price is not None:
            guide_core.prices = {guide_core.model: tuple(config.guide_price)}
        cores = [*cores, guide_core]
    try:
        budget.check_priced([c for c in cores if c is not None])
    except ValueError as exc:
        raise EvalInputError(str(exc)) from None


def _not_finished(row: dict[str, Any]) -> bool:
    """A row whose call was never sent: refused by the budget, or ended by the user's stop while it waited."""
    return row.get("status") == "infra" and str(row.get("error") or "").startswith(("budget:", "interrupted:"))


class _Tally:
    """Running accuracy and spend for the progress bar."""

    def __init__(self, done: list[list[dict]]):
        self.scored = self.wins = self.infra = 0
        self.usd = 0.0
        for rows in done:
            self.add(rows)

    def add(self, rows: list[dict]) -> None:
        first = min(rows, key=lambda r: r["sample"])
        if first["status"] == "infra":
            self.infra += 1
        else:
            self.scored += 1
            self.wins += int(bool(first["success"]))
        self.usd += sum(r["cost"][role]["usd"] for r in rows for role in ROLES)

    def postfix(self) -> str:
        acc = f"{self.wins / self.scored:.3f}" if self.scored else "n/a"
        return f"acc={acc} spend=${self.usd:.4f}" + (f" INFRA={self.infra}" if self.infra else "")


def _progress_bar(total: int, initial: int, enabled: bool, label: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=f"eval {label}", unit="problem", disable=not enabled,
                file=sys.stderr, dynamic_ncols=True)
