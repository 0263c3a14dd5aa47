"""The conditions of an evaluation: a way of asking the core, one small class each.

A condition turns problems into *jobs*: one :class:`Job` per row (per problem and sample), each
run in a worker thread, making its calls one after another (guide, core, judge) and returning its
row (:func:`~gcop_env.evaluation.records.make_row`). The run loop keeps ``--workers`` jobs in
flight and starts the next as soon as one finishes, so ``--workers`` calls are in flight whatever
the latencies. The core's answer becomes a number only through
:class:`~gcop_env.step.scoring.GuideScorer`. To add one: subclass :class:`Condition` (``kind``,
``jobs``, and what differs: ``select``, ``samples``, ``default_name``, ``guide_price``), then
build it in :func:`build_condition`.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from gcop_env.cores.base import CoreError, CoreResponse, SamplingParams
from gcop_env.cores.retry import RetryPolicy
from gcop_env.envs.tasks import TaskSpec
from gcop_env.evaluation.config import EvalConfig, EvalInputError
from gcop_env.evaluation.guides import Guide, guide_request, make_guide, parse_guide_spec
from gcop_env.evaluation.records import GuidePrice, make_row, resolve_guide_price
from gcop_env.problem import Problem
from gcop_env.step.scoring import GuideScorer, StepOutcome
from gcop_env.utils.files import JsonlError, parse_jsonl_line


@dataclass(frozen=True)
class Job:
    """One row's work: ``run()`` makes its calls in order and returns the row (never raises for an
    API failure: that is an ``infra`` row; a fatal error, e.g. a bad key, does raise)."""

    problem: Problem
    sample: int
    run: Callable[[], dict[str, Any]]


class Condition(ABC):
    """A way of asking the core; turns problems into one :class:`Job` per row."""

    kind: str = ""
    #: the jobs come from a batched local model (a guide generating on this machine): the run loop
    #: draws them from a background thread, so the core calls go on while the next batch generates
    batched: bool = False

    def __init__(self, config: EvalConfig, task: TaskSpec, scorer: GuideScorer):
        self.config = config
        self.task = task
        self.scorer = scorer

    def select(self, problems: list[Problem]) -> list[Problem]:
        """The problems this condition runs on (before ``--limit``)."""
        return problems

    def samples(self, problem: Problem) -> int:
        """How many rows a finished problem has."""
        return 1

    @property
    def guide_spec(self) -> str | None:
        return None

    @property
    def recipe(self) -> str | None:
        return None

    def guide_price(self) -> GuidePrice:
        return GuidePrice(0.0, 0.0, "local-default")

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {"name": c.name or self.default_name(), "kind": self.kind, "core": self.scorer.core.spec,
                "guide": self.guide_spec, "recipe": self.recipe, "icl_k": c.icl_k if self.kind == "icl" else None,
                "guide_samples": c.guide_samples if self.kind == "guided" else None,
                "guide_temperature": c.guide_temperature if self.kind == "guided" else None,
                "guide_top_p": c.guide_top_p if self.kind == "guided" else None, "judge": c.judge}

    def default_name(self) -> str:
        return self.kind

    def calls(self) -> dict[str, tuple[int, int]]:
        """(live, cached) calls per role made by this process so far."""
        core = self.scorer.core
        return {"core": (getattr(core, "calls", 0), getattr(core, "cache_hits", 0))}

    @property
    def name(self) -> str:
        """The condition's label in every row (worked out once: a guide's recipe is read from its dir)."""
        if getattr(self, "_name", None) is None:
            self._name = self.describe()["name"]
        return self._name

    def _row(self, problem: Problem, sample: int, outcome: StepOutcome | None, **kwargs: Any) -> dict[str, Any]:
        return make_row(self.task.name, self.config.split, self.name, problem, sample, outcome, **kwargs)

    @abstractmethod
    def jobs(self, problems: list[Problem]) -> Iterator[Job]:
        """The jobs of ``problems``, problem by problem, samples in order (drawn lazily)."""

    def close(self) -> None:
        pass


class CoreOnly(Condition):
    """The core alone, on its unguided prompt."""

    kind = "core-only"

    def jobs(self, problems):
        for p in problems:
            yield Job(p, 0, lambda p=p: self._row(p, 0, self.scorer.score_unguided(p)))


class ICL(Condition):
    """The core alone with the K nearest training (problem, solution) pairs in its prompt."""

    kind = "icl"

    def __init__(self, config, task, scorer, problems: list[Problem] | None = None):
        super().__init__(config, task, scorer)
        try:
            from gcop_env.evaluation.icl import ICLRetriever, icl_prompt
        except ImportError as exc:  # the ICL module ships with gcop report (the evalreport branch)
            raise EvalInputError(f"--icl needs gcop_env.evaluation.icl, which is missing ({exc})") from None
        self._icl_prompt = icl_prompt
        try:
            train = task.load(split="train", data_files=config.data_files)
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise EvalInputError(f"--icl retrieves from the {task.name} train split, which could not be loaded: {exc}") \
                from None
        _check_training_source(config, task, train, problems or [])
        pairs = sum(1 for p in train if p.solution is not None and str(p.solution).strip())
        if pairs and config.icl_k > pairs:  # (no pairs at all: ICLRetriever.build says so)
            raise EvalInputError(f"--icl {config.icl_k}: the {task.name} train split has only {pairs} (problem, "
                                 f"solution) pairs to draw from; give --icl {pairs} or less")
        try:
            self.retriever = ICLRetriever.build(train, config.embedder)
        except ValueError as exc:
            raise EvalInputError(str(exc)) from None
        except RuntimeError as exc:  # a missing embedding model is an EmbeddingModelError (RuntimeError)
            raise EvalInputError(f"--icl: {exc}") from None

    def default_name(self) -> str:
        return f"icl-{self.config.icl_k}"

    def _one(self, p: Problem) -> dict[str, Any]:
        examples = self.retriever.nearest(p.question, self.config.icl_k)
        prompt = self._icl_prompt(p.question, examples, self.scorer.validator.answer_format)
        extra = {"icl_examples": [{"task_id": e.task_id, "cosine": round(float(s), 6)} for e, s in examples]}
        return self._row(p, 0, self.scorer.score_unguided(p, prompt), extra=extra)

    def jobs(self, problems):
        for p in problems:
            yield Job(p, 0, lambda p=p: self._one(p))


def _check_training_source(config: EvalConfig, task: TaskSpec, train: list[Problem], evaluated: list[Problem]) -> None:
    """The ICL examples must come from problems other than the evaluated ones: with one ``--data-files``
    file both splits are that file, and the "training" examples would be the test problems themselves."""
    from gcop_env.evaluation.icl import _normalize_question

    pool = {_normalize_question(p.question) for p in train}
    shared = [p.task_id for p in evaluated if _normalize_question(p.question) in pool]
    if shared:
        raise EvalInputError(
            f"--icl needs a distinct training source: {len(shared)} of the {len(evaluated)} evaluated {task.name} "
            f"problems are in the train split it draws examples from (e.g. {shared[0]})"
            + (f"; --data-files {config.data_files} gives both splits the same problems: pass a directory with "
               f"train and {config.split} files" if config.data_files else ""))


class Guided(Condition):
    """The guide writes N strategies per problem; the core executes each (GuideScorer.score)."""

    kind = "guided"

    def __init__(self, config, task, scorer, guide: Guide):
        super().__init__(config, task, scorer)
        self.guide = guide
        self.batched = not guide.per_request
        self.sampling = SamplingParams(temperature=config.guide_temperature, top_p=config.guide_top_p,
                                       max_tokens=config.guide_max_tokens)
        self._price = resolve_guide_price(config)

    @property
    def guide_spec(self) -> str:
        return self.guide.spec

    @property
    def recipe(self) -> str | None:
        if self.config.recipe:
            return self.config.recipe
        return guide_recipe(self.config.guide)

    def guide_price(self) -> GuidePrice:
        return self._price

    def samples(self, problem):
        return self.config.guide_samples

    def default_name(self) -> str:
        recipe = self.recipe
        return f"guided-{recipe}" if recipe and recipe not in ("None", "external") else "guided"

    def calls(self):
        calls = super().calls()
        calls["guide"] = (self.guide.live_calls, self.guide.cached_calls)
        return calls

    def _scored(self, p: Problem, s: int, response: CoreResponse | CoreError) -> dict[str, Any]:
        if isinstance(response, CoreError):
            return self._row(p, s, None, guide_error=response)
        outcome = self.scorer.score(p, response.text, sample_index=s)
        return self._row(p, s, outcome, guide_output=response.text, guide_response=response, guide_price=self._price)

    def jobs(self, problems):
        n = self.config.guide_samples
        pairs = [(p, s) for p in problems for s in range(n)]
        if self.guide.per_request:  # an API guide: each job asks the guide, then the core
            for p, s in pairs:
                request = guide_request(p.question, self.sampling, s)
                yield Job(p, s, lambda p=p, s=s, request=request: self._scored(p, s, self.guide.generate_one(request)))
            return
        # a local guide generates a batch at a time (in the run loop's background thread); each
        # output becomes a job for the core as soon as its batch is done
        size = max(1, self.config.guide_batch_size)
        for start in range(0, len(pairs), size):
            batch = pairs[start:start + size]
            responses = self.guide.generate([guide_request(p.question, self.sampling, s) for p, s in batch])
            for (p, s), response in zip(batch, responses):
                yield Job(p, s, lambda p=p, s=s, response=response: self._scored(p, s, response))

    def close(self):
        self.guide.close()


class Strategies(Condition):
    """Pre-written guide outputs from a JSONL file (rows ``task_id``, ``guide_output``), scored as guided."""

    kind = "strategies"

    def __init__(self, config, task, scorer, problems: list[Problem]):
        super().__init__(config, task, scorer)
        self.by_task = load_strategies(Path(config.strategies), problems, task.name, config.split)

    @property
    def recipe(self) -> str | None:
        return self.config.recipe or "external"

    @property
    def guide_spec(self) -> str:
        return f"file:{self.config.strategies}"

    def guide_price(self) -> GuidePrice:
        return GuidePrice(0.0, 0.0, "external")

    def select(self, problems):
        return [p for p in problems if p.task_id in self.by_task]

    def samples(self, problem):
        return len(self.by_task[problem.task_id])

    def default_name(self) -> str:
        return f"strategies-{Path(self.config.strategies).stem}"

    def jobs(self, problems):
        for p in problems:
            for s, text in enumerate(self.by_task[p.task_id]):
                yield Job(p, s, lambda p=p, s=s, text=text: self._row(p, s, self.scorer.score(p, text, sample_index=s),
                                                                      guide_output=text))


def load_strategies(path: Path, problems: list[Problem], task: str, split: str) -> dict[str, list[str]]:
    """``task_id -> [guide_output, …]`` (sample order: the rows' ``sample`` field, else file order).

    Every row is checked before anything is spent: an unknown task id or a row without a string
    ``guide_output`` is one clear error naming the line.
    """
    problem = strategies_file_problem(path)
    if problem:
        raise EvalInputError(problem)
    known = {p.task_id for p in problems}
    collected: dict[str, list[tuple[int, int, str]]] = {}
    for number, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:  # UTF-8, JSON, an object, and no lone surrogate: a row is refused here, never after a paid call
            row = parse_jsonl_line(raw.rstrip(b"\r"), path, number)
        except JsonlError as exc:
            raise EvalInputError(f"--strategies {exc}") from None
        if row is None:
            continue
        if "task_id" not in row or not isinstance(row.get("guide_output"), str):
            raise EvalInputError(f"{path} line {number}: each row needs \"task_id\" and a string \"guide_output\"")
        task_id = str(row["task_id"])
        if task_id not in known:
            close = difflib.get_close_matches(task_id, sorted(known), n=1)
            raise EvalInputError(f"{path} line {number}: unknown task_id {task_id!r} for {task} split {split!r}"
                                 + (f" (did you mean {close[0]!r}?)" if close else "")
                                 + "; fix the file or pass the matching --task/--split/--data-files")
        sample = row.get("sample")
        order = int(sample) if isinstance(sample, int) else number
        collected.setdefault(task_id, []).append((order, number, row["guide_output"]))
    if not collected:
        raise EvalInputError(f"--strategies file {path} has no rows")
    return {tid: [text for _, _, text in sorted(rows)] for tid, rows in collected.items()}


def strategies_file_problem(path: Path) -> str | None:
    """Why ``--strategies PATH`` cannot be read as a file of rows, or None."""
    if path.is_dir():
        return f"--strategies {path} is a directory; give the JSONL file of guide outputs"
    if not path.is_file():
        return f"--strategies file {path} does not exist"
    return None


def guide_recipe(spec: str | None) -> str | None:
    """The guide's training recipe as recorded in its dir by ``gcop sft`` / ``gcop grpo`` (else ``None``).

    A guide behind a server is ``external`` (its training is not known here).
    """
    if not spec:
        return None
    backend, model, _ = parse_guide_spec(spec)
    if backend == "openai":
        return "external"
    try:
        from gcop_env.recipe import read_recipe
    except ImportError:  # a package without recipe records: every local guide is a plain model
        return "None"
    try:
        return str(read_recipe(model))
    except ValueError as exc:  # a damaged record (RecipeError)
        raise EvalInputError(str(exc)) from None



def build_condition(config: EvalConfig, task: TaskSpec, problems: list[Problem], scorer: GuideScorer,
                    retry: RetryPolicy, cache: Any) -> Condition:
    if config.kind == "core-only":
        return CoreOnly(config, task, scorer)
    if config.kind == "icl":
        return ICL(config, task, scorer, problems)
    if config.kind == "strategies":
        return Strategies(config, task, scorer, problems)
    try:
        guide = make_guide(config.guide, cache=cache, retry=retry, timeout_s=config.timeout_s, workers=config.workers,
                           batch_size=config.guide_batch_size, prefill=config.guide_prefill, stop=config.guide_stop)
    except (ImportError, ValueError) as exc:
        raise EvalInputError(str(exc)) from None
    if config.max_turns > 1:  # the guide revises after a failed turn (gcop_env.evaluation.multiturn)
        from gcop_env.evaluation.multiturn import MultiTurnGuided
        return MultiTurnGuided(config, task, scorer, guide)
    return Guided(config, task, scorer, guide)
