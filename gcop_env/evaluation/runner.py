"""``gcop eval``: run one condition over a task split into a run dir of records and a summary.

    problems ─▶ condition (core-only | ICL | guided | strategies) ─▶ GuideScorer ─▶ records.jsonl
                                                                                 ─▶ summary.json

Every condition is a small object with one job: turn a batch of problems into rows. The core's
answer becomes a number only through :class:`~gcop_env.scoring.GuideScorer` (the scorer the env
and the trainer use), with the judge and the unguided baseline off: guided rows go through
``score`` with the guide's text, core-only and ICL rows through ``score_unguided``.

The run dir is the checkpoint: a problem's rows are appended (and fsynced) when its last sample
is scored, so a killed run re-run with the same command skips the finished problems; problems
whose rows hold an infrastructure error are retried. Core and guide calls go through the
response cache, so re-running a finished condition makes 0 API calls and rewrites the same
``summary.json`` byte for byte (it holds no clock time and no per-run counters).
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import inspect
import json
import platform
import sys
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from gcop_env.budget import EXIT_BUDGET, Budget, BudgetExceeded, add_budget_arguments, budget_message
from gcop_env.checks import check_int, check_number
from gcop_env.cores import RetryPolicy, make_core, parse_core_spec
from gcop_env.cores.base import CoreError, CoreResponse, SamplingParams
from gcop_env.cores.pricing import lookup_price
from gcop_env.files import write_text_atomic
from gcop_env.problem import Problem
from gcop_env.reward import RewardConfig
from gcop_env.scoring import GuideScorer, StepOutcome
from gcop_env.strategy import DEFAULT_MAX_STRATEGY_CHARS
from gcop_env.tasks import TaskSpec, get_task
from gcop_env.trainers.common import JsonlAppender, read_jsonl_rows
from gcop_env.trainers.config import DEFAULT_CORE

from gcop_env.evaluation.stats import wilson_interval
from gcop_env.evaluation.guides import (DEFAULT_GUIDE_STOP, Guide, guide_identity, guide_request, make_guide,
                                        parse_guide_spec)

SCHEMA = 1
RECORDS = "records.jsonl"
SUMMARY = "summary.json"
RUN_CONFIG = "run_config.json"
ROLES = ("guide", "core", "judge")
KINDS = ("core-only", "icl", "guided", "strategies")

# `--preset paper`: the paper's protocol. Splits: GSM8K test (1,319 problems); KodCode: the
# seeded 1,000-problem sample of KodCode-Light-RL-10K, 80/20, its 200-problem test part (the
# loader's default protocol); HumanEval: all 164. Sampling: the guide at temperature 0.6 / top-p
# 0.95 with up to 2,048 tokens (as in GRPO), the core greedy with up to 1,024 tokens, one
# strategy per problem. Flags given on the command line override the preset.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "split": "test", "limit": None, "guide_samples": 1, "guide_temperature": 0.6, "guide_top_p": 0.95,
        "guide_max_tokens": 2048, "core_temperature": 0.0, "core_top_p": 1.0, "core_max_tokens": 1024,
    },
}


class EvalInputError(ValueError):
    """Bad input found before anything was spent: the message says what and what to do."""


@dataclass
class EvalConfig:
    """One condition's whole configuration (written to ``run_config.json`` and ``summary.json``)."""

    task: str = "GSM8K"
    split: str = "test"
    data_files: str | None = None
    limit: int | None = None
    core: str = DEFAULT_CORE
    out: str = "runs/eval"
    kind: str = "core-only"  # core-only | icl | guided | strategies
    name: str | None = None  # the condition's label in reports (default: derived from kind, guide, recipe)
    icl_k: int | None = None
    embedder: str = "default"
    guide: str | None = None
    strategies: str | None = None
    recipe: str | None = None  # None: read from the guide's output dir (recipe.json), else None/external
    guide_samples: int = 1
    guide_temperature: float = 0.6
    guide_top_p: float = 0.95
    guide_max_tokens: int = 1024
    guide_prefill: str = ""
    guide_stop: str | None = DEFAULT_GUIDE_STOP
    guide_price: tuple[float, float] | None = None  # USD per million (input, output) tokens
    guide_batch_size: int = 8
    core_temperature: float = 0.0
    core_top_p: float = 1.0
    core_max_tokens: int = 1024
    max_strategy_chars: int = DEFAULT_MAX_STRATEGY_CHARS
    judge: str | None = None  # guided/strategies: also rate each strategy with this judge (off by default)
    judge_max_tokens: int = 256
    lam: float = 0.0
    workers: int = 8
    cache: str | None = None
    max_retries: int = 6
    retry_backoff_s: float = 1.0
    timeout_s: float = 120.0
    validator_options: dict = field(default_factory=dict)
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise EvalInputError(f"unknown condition kind {self.kind!r}; expected one of {KINDS}")
        need = {"icl": ("icl_k", self.icl_k), "guided": ("guide", self.guide), "strategies": ("strategies", self.strategies)}
        if self.kind in need and not need[self.kind][1]:
            raise EvalInputError(f"condition {self.kind} needs {need[self.kind][0]}")
        try:
            if self.kind == "icl":
                check_int("--icl K", self.icl_k, 1)
            check_int("--guide-samples", self.guide_samples, 1)
            if self.limit is not None:
                check_int("--limit", self.limit, 1)
            check_number("--lam", self.lam, 0)
            check_number("--guide-temperature", self.guide_temperature, 0)
            check_number("--guide-top-p", self.guide_top_p, 0, 1, lo_open=True)
            check_number("--core-temperature", self.core_temperature, 0)
            check_number("--core-top-p", self.core_top_p, 0, 1, lo_open=True)
            for name in ("guide_max_tokens", "core_max_tokens", "judge_max_tokens", "workers", "guide_batch_size",
                         "max_retries", "max_strategy_chars"):
                check_int("--" + name.replace("_", "-"), getattr(self, name), 1)
            check_number("--timeout-s", self.timeout_s, 0, lo_open=True)
            check_number("--retry-backoff-s", self.retry_backoff_s, 0)
            if self.guide_price is not None:
                price = tuple(self.guide_price)
                if len(price) != 2:
                    raise ValueError(f"--guide-price needs IN,OUT (USD per million tokens), got {self.guide_price}")
                self.guide_price = (check_number("--guide-price IN", price[0], 0),  # type: ignore[assignment]
                                    check_number("--guide-price OUT", price[1], 0))
        except ValueError as exc:
            raise EvalInputError(str(exc)) from None
        if self.judge and self.kind not in ("guided", "strategies"):
            raise EvalInputError(f"--judge rates strategies; the {self.kind} condition has none")
        try:  # a bad spec fails here, before anything is loaded or called
            parse_core_spec(self.core)
            if self.judge:
                parse_core_spec(self.judge)
            if self.kind == "guided":
                parse_guide_spec(self.guide)
        except ValueError as exc:
            raise EvalInputError(str(exc)) from None

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same condition (a run dir resumes only with the same identity).

        Left out: ``limit`` (raising it extends a run), ``lam`` (applied in the summary only),
        ``workers`` / batch size, retries and timeouts, ``name``, ``out``.
        """
        loose = {"limit", "lam", "workers", "guide_batch_size", "max_retries", "retry_backoff_s", "timeout_s",
                 "name", "out", "cache", "preset"}
        ident = {k: v for k, v in dataclasses.asdict(self).items() if k not in loose}
        if self.guide_price is not None:
            ident["guide_price"] = list(self.guide_price)
        if self.kind == "guided" and self.guide:  # vllm: memory options do not change the condition
            ident["guide"] = guide_identity(self.guide)
        if self.strategies:
            ident["strategies_sha256"] = hashlib.sha256(Path(self.strategies).read_bytes()).hexdigest()
        return ident


# ----------------------------------------------------------------------------------- costs


@dataclass
class GuidePrice:
    """How the guide's tokens become dollars, and where the price came from."""

    input_per_mtok: float
    output_per_mtok: float
    source: str  # flag | price-table | local-default | unpriced | external

    @property
    def priced(self) -> bool:
        return self.source in ("flag", "price-table")

    def usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6

    def note(self) -> str:
        return {
            "flag": f"guide priced from --guide-price {self.input_per_mtok:g},{self.output_per_mtok:g} USD/Mtok",
            "price-table": f"guide priced from the price table ({self.input_per_mtok:g},{self.output_per_mtok:g} USD/Mtok)",
            "local-default": "local guide: priced at $0 (pass --guide-price IN,OUT to price its tokens)",
            "unpriced": "guide model not in the price table: priced at $0 (pass --guide-price IN,OUT)",
            "external": "pre-written strategies: the guide's cost is unknown and counted as $0",
        }[self.source]


def resolve_guide_price(config: EvalConfig) -> GuidePrice:
    if config.kind == "strategies":
        return GuidePrice(0.0, 0.0, "external")
    if config.kind != "guided":
        return GuidePrice(0.0, 0.0, "local-default")
    if config.guide_price is not None:
        return GuidePrice(config.guide_price[0], config.guide_price[1], "flag")
    backend, model, _ = parse_guide_spec(config.guide)
    if backend in ("hf", "vllm"):
        return GuidePrice(0.0, 0.0, "local-default")
    price = lookup_price(backend, model)
    return GuidePrice(price[0], price[1], "price-table") if price else GuidePrice(0.0, 0.0, "unpriced")


def _role(calls=0, cached=0, tin=0, tout=0, usd=0.0, latency=0.0) -> dict[str, Any]:
    return {"calls": calls, "cached_calls": cached, "input_tokens": tin, "output_tokens": tout, "usd": usd,
            "latency_s": latency}


def _guide_role(response: CoreResponse | None, price: GuidePrice) -> dict[str, Any]:
    if response is None:
        return _role()
    return _role(1, int(response.cached), response.input_tokens, response.output_tokens,
                 price.usd(response.input_tokens, response.output_tokens),
                 0.0 if response.cached else response.latency_s)


def _scorer_role(role) -> dict[str, Any]:
    return _role(role.calls, role.cached_calls, role.input_tokens, role.output_tokens, role.usd, role.latency_s)


# ------------------------------------------------------------------------------------- rows


def make_row(task: str, split: str, condition: str, problem: Problem, sample: int, outcome: StepOutcome | None, *,
             guide_output: str | None = None, guide_response: CoreResponse | None = None,
             guide_price: GuidePrice | None = None, guide_error: str | Exception | None = None,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One record of the contract (see the module docstring of :mod:`gcop_env.evaluation`)."""
    row: dict[str, Any] = {"task": task, "split": split, "task_id": problem.task_id, "condition": condition,
                           "sample": sample, "guide_output": guide_output, "strategy": None, "structure_ok": None,
                           "core_output": None, "status": None, "reward": None, "success": None, "error": None}
    cost = {"guide": _guide_role(guide_response, guide_price or GuidePrice(0, 0, "local-default")),
            "core": _role(), "judge": _role()}
    if guide_error is not None:  # the guide failed: infrastructure, not a wrong answer
        stage = "budget" if isinstance(guide_error, BudgetExceeded) else "guide"
        row.update(status="infra", error=f"{stage}: {guide_error}")
    else:
        assert outcome is not None
        guided = guide_output is not None
        if guided:
            row["structure_ok"] = outcome.parsed.structure_ok
            row["strategy"] = outcome.parsed.strategy
        row["core_output"] = outcome.core_output
        cost["core"] = _scorer_role(outcome.cost.core)
        cost["judge"] = _scorer_role(outcome.cost.judge)
        if outcome.error:
            row.update(status="infra", error=f"{outcome.error_stage}: {outcome.error}")
        elif guided and not outcome.parsed.structure_ok:
            # The scorer does not call the core for a malformed strategy: R = 0 by the env's rule.
            row.update(status="malformed", reward=0.0, success=False,
                       structure_error=outcome.parsed.error.value if outcome.parsed.error else None,
                       structure_message=outcome.parsed.message)
        else:
            v = outcome.validation
            row.update(status=v.status.value, reward=float(v.reward), success=bool(v.reward >= 1.0),
                       validation=_jsonable(v.details))
            if outcome.verdict is not None:
                row["judge"] = {"score": outcome.verdict.score, "leak": outcome.verdict.leak,
                                "parsed": outcome.verdict.parsed}
    row["cost"] = cost
    if extra:
        row.update(extra)
    return row


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))


# ------------------------------------------------------------------------------- conditions


class Condition(ABC):
    """A way of asking the core; turns a batch of problems into one list of rows per problem."""

    kind: str = ""

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

    def _row(self, problem: Problem, sample: int, outcome: StepOutcome | None, **kwargs: Any) -> dict[str, Any]:
        return make_row(self.task.name, self.config.split, self.describe()["name"], problem, sample, outcome, **kwargs)

    def _map(self, fn: Callable, items: Sequence) -> list:
        if len(items) <= 1 or self.config.workers <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.config.workers, len(items))) as pool:
            return list(pool.map(fn, items))

    @abstractmethod
    def run(self, problems: list[Problem]) -> list[list[dict[str, Any]]]:
        """Rows for each problem, in order."""

    def close(self) -> None:
        pass


class CoreOnly(Condition):
    """The core alone, on its unguided prompt."""

    kind = "core-only"

    def run(self, problems):
        outcomes = self._map(lambda p: self.scorer.score_unguided(p), problems)
        return [[self._row(p, 0, o)] for p, o in zip(problems, outcomes)]


class ICL(Condition):
    """The core alone with the K nearest training (problem, solution) pairs in its prompt."""

    kind = "icl"

    def __init__(self, config, task, scorer):
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
        try:
            self.retriever = ICLRetriever.build(train, config.embedder)
        except ValueError as exc:
            raise EvalInputError(str(exc)) from None
        except RuntimeError as exc:  # a missing embedding model is an EmbeddingModelError (RuntimeError)
            raise EvalInputError(f"--icl: {exc}") from None

    def default_name(self) -> str:
        return f"icl-{self.config.icl_k}"

    def run(self, problems):
        def one(p: Problem):
            examples = self.retriever.nearest(p.question, self.config.icl_k)
            prompt = self._icl_prompt(p.question, examples, self.scorer.validator.answer_format)
            extra = {"icl_examples": [{"task_id": e.task_id, "cosine": round(float(s), 6)} for e, s in examples]}
            return self.scorer.score_unguided(p, prompt), extra

        results = self._map(one, problems)
        return [[self._row(p, 0, o, extra=extra)] for p, (o, extra) in zip(problems, results)]


class Guided(Condition):
    """The guide writes N strategies per problem; the core executes each (GuideScorer.score)."""

    kind = "guided"

    def __init__(self, config, task, scorer, guide: Guide):
        super().__init__(config, task, scorer)
        self.guide = guide
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

    def run(self, problems):
        n = self.config.guide_samples
        pairs = [(p, s) for p in problems for s in range(n)]
        responses = self.guide.generate([guide_request(p.question, self.sampling, s) for p, s in pairs])

        def one(args):
            (p, s), response = args
            if isinstance(response, CoreError):
                return self._row(p, s, None, guide_error=response)
            outcome = self.scorer.score(p, response.text, sample_index=s)
            return self._row(p, s, outcome, guide_output=response.text, guide_response=response,
                             guide_price=self._price)

        rows = self._map(one, list(zip(pairs, responses)))
        return [rows[i * n:(i + 1) * n] for i in range(len(problems))]

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

    def run(self, problems):
        items = [(p, s, text) for p in problems for s, text in enumerate(self.by_task[p.task_id])]
        rows = self._map(lambda it: self._row(it[0], it[1], self.scorer.score(it[0], it[2], sample_index=it[1]),
                                             guide_output=it[2]), items)
        out, i = [], 0
        for p in problems:
            k = len(self.by_task[p.task_id])
            out.append(rows[i:i + k])
            i += k
        return out


def load_strategies(path: Path, problems: list[Problem], task: str, split: str) -> dict[str, list[str]]:
    """``task_id -> [guide_output, …]`` (sample order: the rows' ``sample`` field, else file order).

    Every row is checked before anything is spent: an unknown task id or a row without a string
    ``guide_output`` is one clear error naming the line.
    """
    if not path.is_file():
        raise EvalInputError(f"--strategies file {path} does not exist")
    known = {p.task_id for p in problems}
    collected: dict[str, list[tuple[int, int, str]]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise EvalInputError(f"{path} line {number} is not valid JSON") from None
        if not isinstance(row, dict) or "task_id" not in row or not isinstance(row.get("guide_output"), str):
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


# ----------------------------------------------------------------------------------- metrics


def summarize_rows(rows_by_problem: list[list[dict]], *, kind: str, lam: float) -> dict[str, Any]:
    """The metrics of the contract, from the rows of each problem (in problem order)."""
    records = [r for rows in rows_by_problem for r in rows]
    n_problems = len(rows_by_problem)
    first = [min(rows, key=lambda r: r["sample"]) for rows in rows_by_problem if rows]
    scored_first = [r for r in first if r["status"] != "infra"]
    wins = sum(1 for r in scored_first if r["success"])
    accuracy = wins / len(scored_first) if scored_first else None
    ci = list(wilson_interval(wins, len(scored_first))) if scored_first else None
    executability = None
    if kind in ("guided", "strategies"):
        per_problem = []
        for rows in rows_by_problem:
            scored = [r for r in rows if r["status"] != "infra"]
            if scored:
                per_problem.append(sum(1.0 for r in scored if r["success"]) / len(scored))
        executability = sum(per_problem) / len(per_problem) if per_problem else None
    structure = [r["structure_ok"] for r in records if r.get("structure_ok") is not None]
    status_counts: dict[str, int] = {}
    for r in records:
        status_counts[r["status"]] = status_counts.get(r["status"], 0) + 1
    n = len(records)
    cost: dict[str, dict[str, float]] = {}
    for role in ROLES:
        tokens = sum(r["cost"][role]["input_tokens"] + r["cost"][role]["output_tokens"] for r in records)
        usd = sum(r["cost"][role]["usd"] for r in records)
        cost[role] = {"tokens": tokens / n if n else 0.0, "usd": usd / n if n else 0.0}
    cost["total"] = {k: sum(cost[role][k] for role in ROLES) for k in ("tokens", "usd")}
    latency = sum(r["cost"][role]["latency_s"] for r in records for role in ROLES) / n if n else 0.0
    empty_guide = sum(1 for r in records if r.get("structure_error") == "empty_output")
    metrics = {
        "n_problems": n_problems, "n_records": n, "n_scored": len(scored_first),
        "n_infra": status_counts.get("infra", 0),
        "accuracy": accuracy, "accuracy_ci95": ci,
        "executability": executability,
        "structure_ok_rate": (sum(structure) / len(structure)) if structure else None,
        "status_counts": dict(sorted(status_counts.items())),
        "cost_per_problem": cost,
        "cost_total_usd": sum(r["cost"][role]["usd"] for r in records for role in ROLES),
        "latency_per_problem_s": latency,
        "lam": lam,
        "net_utility": (accuracy - lam * cost["total"]["usd"]) if accuracy is not None else None,
        "guide_empty_outputs": empty_guide if kind in ("guided", "strategies") else None,
    }
    judged = [r["judge"] for r in records if r.get("judge")]
    if judged:
        metrics["judge_score_mean"] = sum(j["score"] for j in judged) / len(judged)
        metrics["judge_leak_rate"] = sum(1 for j in judged if j["leak"]) / len(judged)
    return metrics


def metric_notes(metrics: dict[str, Any], kind: str, guide_samples: int, price: GuidePrice) -> list[str]:
    """What a reader of the numbers must know (written into summary.json and printed)."""
    notes = []
    if kind in ("guided", "strategies"):
        notes.append(price.note())
        if kind == "guided" and guide_samples == 1:
            notes.append("executability α̂ with N = 1 guide sample per problem is the guided accuracy")
        else:
            notes.append("executability α̂: mean over problems of the core's success rate over each problem's strategies")
    notes.append("accuracy is Pass@1 (sample 0 of each problem) over the problems without an infrastructure error; "
                 "95% CI: Wilson score interval")
    notes.append("cost and latency per problem: one attempt (guide + core + judge), averaged over all records; "
                 "latency counts live calls only (cache hits take 0 s)")
    if metrics["n_infra"]:
        notes.append(f"WARNING: {metrics['n_infra']} record(s) hit an infrastructure error; they are left out of "
                     f"accuracy (not counted as wrong). Re-run the same command to retry them.")
    if metrics.get("guide_empty_outputs"):
        notes.append(f"WARNING: the guide emitted nothing for {metrics['guide_empty_outputs']} record(s) "
                     f"(status malformed, R = 0)")
    return notes


# ------------------------------------------------------------------------------------ the run


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


def _versions() -> dict[str, str]:
    import gcop_env

    return {"gcop_env": gcop_env.__version__, "python": platform.python_version()}


def _check_identity(out: Path, config: EvalConfig) -> None:
    path = out / RUN_CONFIG
    ident = json.loads(json.dumps(config.identity(), sort_keys=True))
    records = out / RECORDS
    has_rows = records.exists() and records.stat().st_size > 0
    if path.exists() and has_rows:  # a dir without rows holds nothing to protect: it takes the new identity
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise EvalInputError(f"{path} is not valid JSON; delete the run dir or choose another --out") from None
        old = saved.get("identity", {})
        if old != ident:
            diff = sorted(k for k in set(old) | set(ident) if old.get(k) != ident.get(k))
            detail = "; ".join(f"{k}: {old.get(k)!r} there, {ident.get(k)!r} now" for k in diff[:4])
            raise EvalInputError(f"{out} holds a different condition ({detail}); choose another --out or delete it")
    elif has_rows and not path.exists():
        raise EvalInputError(f"{out} has {RECORDS} but no {RUN_CONFIG}; it is not a gcop eval run dir of this "
                             f"version: choose another --out")
    write_text_atomic(path, json.dumps({"identity": ident}, indent=2, sort_keys=True) + "\n")


def _rewrite_records(path: Path, rows: list[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def build_condition(config: EvalConfig, task: TaskSpec, problems: list[Problem], scorer: GuideScorer,
                    retry: RetryPolicy, cache: Any) -> Condition:
    if config.kind == "core-only":
        return CoreOnly(config, task, scorer)
    if config.kind == "icl":
        return ICL(config, task, scorer)
    if config.kind == "strategies":
        return Strategies(config, task, scorer, problems)
    try:
        guide = make_guide(config.guide, cache=cache, retry=retry, timeout_s=config.timeout_s, workers=config.workers,
                           batch_size=config.guide_batch_size, prefill=config.guide_prefill, stop=config.guide_stop)
    except (ImportError, ValueError) as exc:
        raise EvalInputError(str(exc)) from None
    return Guided(config, task, scorer, guide)


def _cache_arg(config: EvalConfig) -> Any:
    if not config.cache:
        return None
    return False if config.cache.lower() in ("off", "none", "false", "0") else config.cache


def _preflight(config: EvalConfig) -> None:
    """One tiny uncached call per API model of the run (``gcop check``), before anything is spent.

    Raises :class:`~gcop_env.check.PreflightFailed` (a retired model, a bad key, a refused sampling
    parameter, an unreachable server). Local ``hf:``/``vllm:`` models are checked by loading them.
    """
    from gcop_env.check import require_ready

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

    ``stop``: polled between batches; when it returns True the run stops after the batch in flight
    (its rows are saved), writes the summary of what is done and returns ``interrupted=True``.
    ``budget``: the spend cap of the core, judge and API guide calls. Once it refuses a call the
    run stops after the batch in flight: its finished problems are saved, problems with a refused
    call are left for the re-run (their paid calls are cached), no ``summary.json`` is written,
    and ``budget_exhausted`` is True.
    """
    out = Path(config.out)
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

    cache = _cache_arg(config)
    retry = RetryPolicy(max_attempts=config.max_retries, initial_backoff_s=config.retry_backoff_s,
                        max_backoff_s=max(config.retry_backoff_s, 60.0))
    core = make_core(config.core, cache=cache, retry=retry, timeout_s=config.timeout_s, budget=budget)
    validator = task.validator(**config.validator_options)
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
        existing = read_jsonl_rows(records_path, repair=True)
        for row in existing:
            kept.setdefault(str(row["task_id"]), []).append(row)
        wanted = {p.task_id: p for p in selected}
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
        if todo and preflight:  # a finished condition re-runs with 0 API calls: no preflight then
            _preflight(config)
        if todo and (out / SUMMARY).exists():
            (out / SUMMARY).unlink()  # it describes an earlier state; the finished run writes the new one
        appender = JsonlAppender(records_path)
        interrupted, budget_stopped, n_run = False, False, 0
        bar = _progress_bar(len(selected), len(selected) - len(todo), progress, condition.describe()["name"])
        tally = _Tally([finished[p.task_id] for p in selected if p.task_id in finished])
        bar.set_postfix_str(tally.postfix(), refresh=False)
        batch = max(1, config.guide_batch_size if config.kind == "guided" else config.workers)
        try:
            for start in range(0, len(todo), batch):
                if stop is not None and stop():
                    interrupted = True
                    break
                chunk = todo[start:start + batch]
                for p, rows in zip(chunk, condition.run(chunk)):
                    if any(_refused_by_budget(row) for row in rows):
                        continue  # not finished: the re-run does it, its paid calls come from the cache
                    for row in rows:
                        appender.append(row)
                    finished[p.task_id] = rows
                    tally.add(rows)
                    n_run += 1
                bar.update(len(chunk))
                bar.set_postfix_str(tally.postfix())
                if budget is not None and budget.exhausted:
                    budget_stopped = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
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


def _refused_by_budget(row: dict[str, Any]) -> bool:
    return row.get("status") == "infra" and str(row.get("error") or "").startswith("budget:")


def build_summary(config: EvalConfig, condition: Condition, task: TaskSpec,
                  rows_by_problem: list[list[dict]]) -> dict[str, Any]:
    metrics = summarize_rows(rows_by_problem, kind=condition.kind, lam=config.lam)
    price = condition.guide_price()
    metrics["guide_priced"] = price.priced
    metrics["guide_price_usd_per_mtok"] = {"input": price.input_per_mtok, "output": price.output_per_mtok,
                                           "source": price.source}
    resolved = dataclasses.asdict(config)
    if config.guide_price is not None:
        resolved["guide_price"] = list(config.guide_price)
    return {"schema": SCHEMA, "condition": condition.describe(), "task": task.name, "split": config.split,
            "data_files": config.data_files, "limit": config.limit, "config": resolved, "versions": _versions(),
            "metrics": metrics,
            "notes": metric_notes(metrics, condition.kind, config.guide_samples, price)}


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


# ------------------------------------------------------------------------------------ the CLI

EXIT_INFRA = 3  # some rows hit infrastructure errors; EXIT_BUDGET = 4 (gcop_env.budget): the budget ran out


def _price_pair(text: str) -> tuple[float, float]:
    import argparse

    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 2 or min(parts) < 0:
        raise argparse.ArgumentTypeError(f"expected IN,OUT in USD per million tokens (e.g. 0.2,0.6), got {text!r}")
    return parts[0], parts[1]


def build_parser():
    import argparse

    from gcop_env.usage import OneLineErrorParser

    d = EvalConfig()
    p = OneLineErrorParser(
        prog="gcop eval", argument_default=argparse.SUPPRESS,
        description="Run one condition (core-only, ICL, guided, or pre-written strategies) over a task split; "
                    "write DIR/records.jsonl and DIR/summary.json. Re-running the same command resumes.")
    which = p.add_argument_group("condition (exactly one)").add_mutually_exclusive_group(required=True)
    which.add_argument("--core-only", action="store_true", help="the core alone, on its unguided prompt")
    which.add_argument("--icl", type=int, metavar="K", dest="icl_k",
                       help="core-only with the K nearest training (problem, solution) pairs in the prompt")
    which.add_argument("--guide", metavar="SPEC",
                       help="guided generation: hf:PATH[?gguf_file=NAME], openai:MODEL@URL, or vllm:PATH")
    which.add_argument("--strategies", metavar="FILE",
                       help="score pre-written guide outputs: JSONL rows {task_id, guide_output[, sample]}")
    p.add_argument("--out", required=True, metavar="DIR", help="the run dir (re-use it to resume)")
    p.add_argument("--task", help=f"registered task (default {d.task!r})")
    p.add_argument("--split", help=f"split to evaluate (default {d.split!r})")
    p.add_argument("--data-files", help="local data file or dir instead of the hub")
    p.add_argument("--limit", type=int, help="only the first N problems")
    p.add_argument("--core", help=f"core spec (default {d.core!r})")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="'paper': the paper's split and sampling (guide 0.6/0.95, 2048 tokens; core greedy, "
                        "1024 tokens; all problems); flags given here override it")
    p.add_argument("--name", help="the condition's label in reports (default: derived)")
    p.add_argument("--recipe", help="the guide's training recipe for reports (default: recorded in the guide's dir by "
                                    "gcop sft/grpo, else None; external for servers and --strategies)")
    p.add_argument("--embedder", help="--icl: 'default' (offline PyPI model) or a sentence-transformers name/path")
    g = p.add_argument_group("guide")
    g.add_argument("--guide-samples", type=int, help="N strategies per problem (α̂ averages over them; default 1)")
    g.add_argument("--guide-temperature", type=float, help=f"default {d.guide_temperature} (the paper's)")
    g.add_argument("--guide-top-p", type=float, help=f"default {d.guide_top_p} (the paper's)")
    g.add_argument("--guide-max-tokens", type=int, help=f"default {d.guide_max_tokens}")
    g.add_argument("--guide-prefill", help="local guides: text the reply is forced to start with (e.g. '<think>')")
    g.add_argument("--guide-stop", help=f"local guides: stop after this string (default {d.guide_stop!r}; '' for none)")
    g.add_argument("--guide-price", type=_price_pair, metavar="IN,OUT",
                   help="guide price in USD per million input,output tokens (default: the price table for "
                        "API models; 0 for local guides, and the summary says so)")
    g.add_argument("--guide-batch-size", type=int, help=f"local guides: prompts per generate() (default {d.guide_batch_size})")
    c = p.add_argument_group("core")
    c.add_argument("--core-temperature", type=float, help=f"default {d.core_temperature}")
    c.add_argument("--core-top-p", type=float, help=f"default {d.core_top_p}")
    c.add_argument("--core-max-tokens", type=int, help=f"default {d.core_max_tokens}")
    c.add_argument("--max-strategy-chars", type=int, help=f"strategy length budget (default {d.max_strategy_chars})")
    c.add_argument("--judge", metavar="SPEC", help="guided/strategies: also rate each strategy with this judge "
                                                  "(usefulness, leak; its cost is the judge role). Default: off")
    c.add_argument("--judge-max-tokens", type=int, help=f"the judge's reply budget (default {d.judge_max_tokens})")
    c.add_argument("--validator-options", type=json.loads, help="JSON kwargs for the validator, e.g. '{\"sandbox\": \"docker\"}'")
    r = p.add_argument_group("run")
    r.add_argument("--lam", type=float, help="λ of the net utility V − λ·T (T: total USD per problem; default 0)")
    r.add_argument("--workers", type=int, help=f"concurrent core calls (default {d.workers})")
    r.add_argument("--cache", help="response cache: a SQLite path, or 'off' (default: $GCOP_CACHE_DIR/responses.sqlite)")
    r.add_argument("--max-retries", type=int, help=f"attempts per API call (default {d.max_retries})")
    r.add_argument("--retry-backoff-s", type=float, help=f"first backoff (default {d.retry_backoff_s})")
    r.add_argument("--timeout-s", type=float, help=f"per-request timeout (default {d.timeout_s})")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--no-preflight", action="store_true", help="skip the readiness check of the models before the run")
    add_budget_arguments(p)
    return p


def config_from_args(ns: dict[str, Any]) -> EvalConfig:
    ns = dict(ns)
    for flag in ("no_progress", "no_preflight", "max_usd", "max_total_tokens"):
        ns.pop(flag, None)
    values: dict[str, Any] = {}
    preset = ns.get("preset")
    if preset:
        values.update(PRESETS[preset])
    if ns.pop("core_only", False):
        values["kind"] = "core-only"
    elif "icl_k" in ns:
        values["kind"] = "icl"
    elif "guide" in ns:
        values["kind"] = "guided"
    elif "strategies" in ns:
        values["kind"] = "strategies"
    if ns.get("guide_stop") == "":
        ns["guide_stop"] = None
    values.update(ns)
    return EvalConfig(**values)


def eval_cli(argv: list[str] | None = None) -> int:
    """``gcop eval``: 0 when done, 2 on bad input, 3 when some rows hit infrastructure errors, 4 when the
    budget (``--max-usd`` / ``--max-total-tokens``) ran out, 130 when stopped."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    ns = vars(parser.parse_args(argv))
    try:
        budget = Budget.from_limits(ns.get("max_usd"), ns.get("max_total_tokens"))
    except ValueError as exc:
        parser.error(str(exc))
    progress, preflight = not ns.get("no_progress", False), not ns.get("no_preflight", False)
    from gcop_env.interrupt import exit_interrupted, stop_on_signal

    try:
        config = config_from_args(ns)
        # Ctrl-C / SIGTERM: no new batch starts, the one in flight is saved, exit 130 (a second one stops at once)
        with stop_on_signal(what="gcop eval") as stop:
            result = run_eval(config, progress=progress, preflight=preflight, stop=stop.is_set, budget=budget)
    except EvalInputError as exc:
        print(f"gcop eval: error: {exc}", file=sys.stderr)
        return 2
    except CoreError as exc:  # a permanent API error (bad key, unknown model): every call would fail the same way
        print(f"gcop eval: error: {exc} (finished problems are saved in {ns['out']}; fix it and re-run to resume)",
              file=sys.stderr)
        return 2
    for line in result.lines():
        print(line)
    if result.interrupted:
        print(f"gcop eval: interrupted after {result.metrics['n_problems']} of {result.n_problems} problems; "
              f"the finished ones are saved in {result.out / RECORDS}: re-run the same command to resume",
              file=sys.stderr)
        return exit_interrupted()
    if result.budget_exhausted:
        saved = (f"{result.metrics['n_problems']} of {result.n_problems} problems are finished and saved in "
                 f"{result.out / RECORDS}; no {SUMMARY} until the run is complete.")
        print(budget_message("gcop eval", argv, budget.status(), saved), file=sys.stderr)
        return EXIT_BUDGET
    n_infra = result.metrics["n_infra"]
    if n_infra:
        print(f"gcop eval: WARNING: {n_infra} record(s) hit infrastructure errors (API or sandbox), left out of "
              f"the accuracy, not counted as wrong; see 'error' in {result.out / RECORDS} and re-run the same "
              f"command to retry them", file=sys.stderr)
        return EXIT_INFRA
    return 0
