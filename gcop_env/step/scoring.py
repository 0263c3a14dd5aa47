"""One step's whole path, without Gymnasium state: guide text in, shaped reward out.

    guide text → structure check (I_str) → guided core call → validator (R)
               → [unguided baseline, once per problem (ΔR)] → [judge (J)] → shaped reward

The unguided baseline estimates E[r(y_0)], the unguided core's expected reward, so that
ΔR = R(guided) − E[r(y_0)] as in the paper. A deterministic core needs one draw; a sampled core
(temperature > 0, or a backend that cannot be made deterministic) gets the mean over
``baseline_samples`` distinct draws (sample indices 0..n−1, each cached on its own), default
:data:`DEFAULT_STOCHASTIC_BASELINE_SAMPLES`.

The environment calls :meth:`GuideScorer.score` once per step; the trainer calls
:meth:`GuideScorer.score_many` for a batch, which runs core calls concurrently. An
infrastructure failure anywhere (API down, sandbox broken) ends the step with ``error`` set and
``reward`` None: it is never scored as a wrong answer. A call refused by the spend cap
(:class:`~gcop_env.cores.budget.BudgetExceeded`) is such a failure with ``error_stage`` ``"budget"``; one
ended by the user's stop while it waited (:class:`~gcop_env.cores.base.CallInterrupted`), ``"interrupted"``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from gcop_env.cores.base import (
    CallInterrupted,
    Core,
    CoreError,
    CoreRequest,
    CoreResponse,
    FatalCoreError,
    Message,
    SamplingParams,
)
from gcop_env.cores.budget import BudgetExceeded
from gcop_env.problem import Problem
from gcop_env.step.judge import JudgeVerdict, StrategyJudge
from gcop_env.step.prompts import core_prompt
from gcop_env.step.reward import RewardComponents, RewardConfig, shape_reward
from gcop_env.step.strategy import (
    DEFAULT_MAX_STRATEGY_CHARS,
    ParsedGuideOutput,
    parse_advice,
    parse_guide_output,
)
from gcop_env.validators.base import ValidationResult, Validator

# Unguided draws averaged for ΔR when the core samples: 4 draws put the standard error of a
# Bernoulli baseline at or below 0.25 (one draw: up to 0.5) for 4 times one baseline's cost,
# paid once per problem and then cached.
DEFAULT_STOCHASTIC_BASELINE_SAMPLES = 4


def core_is_deterministic(core: Core, sampling: SamplingParams) -> bool:
    """Whether ``core`` gives the same reply every time under ``sampling``.

    The core decides when it can (``Core.is_deterministic``: a backend that does not send the
    temperature is not deterministic at temperature 0); otherwise temperature 0 counts as greedy.
    """
    decide = getattr(core, "is_deterministic", None)
    return bool(decide(sampling)) if callable(decide) else sampling.temperature == 0


def resolve_baseline_samples(core: Core, sampling: SamplingParams, baseline_samples: int | None) -> int:
    """The number of unguided draws: as given, else 1 for a deterministic core and the default otherwise."""
    if baseline_samples is None:
        return 1 if core_is_deterministic(core, sampling) else DEFAULT_STOCHASTIC_BASELINE_SAMPLES
    if isinstance(baseline_samples, bool) or not isinstance(baseline_samples, int) or baseline_samples < 1:
        raise ValueError(f"baseline_samples must be an integer >= 1 (or None for the default), got {baseline_samples!r}")
    return baseline_samples


@dataclass(frozen=True)
class UnguidedBaseline:
    """E[r(y_0)] estimated from ``len(results)`` distinct unguided draws of one problem."""

    results: tuple[ValidationResult, ...]
    responses: tuple[CoreResponse, ...]

    @property
    def reward(self) -> float:
        """The mean validator reward over the draws."""
        return sum(r.reward for r in self.results) / len(self.results)

    @property
    def samples(self) -> int:
        return len(self.results)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"reward": self.reward, "samples": self.samples,
                             "rewards": [r.reward for r in self.results],
                             "statuses": [r.status.value for r in self.results]}
        if self.samples == 1:
            d["status"] = self.results[0].status.value
        return d


@dataclass
class RoleCost:
    """Tokens, dollars and time spent by one role (core, baseline or judge) in one step."""

    calls: int = 0
    cached_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usd: float = 0.0  # nominal price of the calls, cached or not
    spent_usd: float = 0.0  # what was actually paid this time (cache hits are free)
    latency_s: float = 0.0
    priced: bool = True  # False: a model without a price counted as $0 (cost figures incomplete)

    def add(self, response: CoreResponse) -> None:
        self.priced = self.priced and response.priced
        self.calls += 1
        self.cached_calls += int(response.cached)
        self.input_tokens += response.input_tokens
        self.output_tokens += response.output_tokens
        self.usd += response.cost_usd
        self.spent_usd += response.spent_usd
        self.latency_s += 0.0 if response.cached else response.latency_s


@dataclass
class StepCost:
    core: RoleCost = field(default_factory=RoleCost)
    baseline: RoleCost = field(default_factory=RoleCost)
    judge: RoleCost = field(default_factory=RoleCost)

    def step_cost(self, unit: str) -> float:
        """T: the guided core and judge cost of the step (the baseline is a training aid, not inference)."""
        roles = (self.core, self.judge)
        if unit == "tokens":
            return sum(r.input_tokens + r.output_tokens for r in roles) / 1000.0
        return sum(r.usd for r in roles)

    def as_dict(self) -> dict[str, Any]:
        d = {role: asdict(getattr(self, role)) for role in ("core", "baseline", "judge")}
        d["total_usd"] = sum(v["usd"] for v in d.values())
        d["total_spent_usd"] = sum(getattr(self, r).spent_usd for r in ("core", "baseline", "judge"))
        d["total_tokens"] = sum(getattr(self, r).input_tokens + getattr(self, r).output_tokens
                                for r in ("core", "baseline", "judge"))
        d["latency_s"] = sum(getattr(self, r).latency_s for r in ("core", "baseline", "judge"))
        d["priced"] = all(getattr(self, r).priced for r in ("core", "baseline", "judge"))
        return d


@dataclass
class StepOutcome:
    """Everything one step produced. ``reward`` is None when ``error`` is set (infrastructure)."""

    task_id: str
    parsed: ParsedGuideOutput
    components: RewardComponents
    cost: StepCost
    core_output: str | None = None
    validation: ValidationResult | None = None
    unguided: UnguidedBaseline | None = None
    verdict: JudgeVerdict | None = None
    error: str | None = None
    error_stage: str | None = None
    core_sampling: dict[str, Any] | None = None  # the sampling parameters the core was really sent
    baseline_samples: int = 0  # unguided draws behind E[r(y_0)] (0: no baseline, κ = 0)

    @property
    def reward(self) -> float | None:
        return None if self.error else self.components.shaped

    def info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "task_id": self.task_id,
            "structure_ok": self.parsed.structure_ok,
            "reward_components": self.components.as_dict(),
            "cost": self.cost.as_dict(),
            "reward_is_task_outcome": self.error is None,
            "baseline_samples": self.baseline_samples,
            "core_output": self.core_output,
            "core_sampling": self.core_sampling,
        }
        if not self.parsed.structure_ok:
            info["structure_error"] = self.parsed.error.value if self.parsed.error else None
            info["structure_message"] = self.parsed.message
        else:
            info["strategy"] = self.parsed.strategy
        if self.validation is not None:
            info["validation"] = {"status": self.validation.status.value, "reward": self.validation.reward,
                                  "details": self.validation.details}
        if self.unguided is not None:
            info["unguided_validation"] = self.unguided.as_dict()
        if self.verdict is not None:
            info["judge"] = asdict(self.verdict)
        if self.error:
            info["error"] = self.error
            info["error_stage"] = self.error_stage
        return info


class _InfraFailure(Exception):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


class GuideScorer:
    """Scores guide outputs for problems of one task against one core. Thread-safe.

    ``structure_required=False`` (the Advisor recipe) skips the structure check: the guide's whole
    non-empty output is passed to the core as the strategy.
    """

    def __init__(self, validator: Validator, core: Core, *, judge_core: Core | None = None,
                 reward: RewardConfig | None = None, sampling: SamplingParams | None = None,
                 judge_sampling: SamplingParams | None = None,
                 max_strategy_chars: int = DEFAULT_MAX_STRATEGY_CHARS, max_output_chars: int | None = None,
                 validation_retries: int = 0, baseline_samples: int | None = None,
                 structure_required: bool = True):
        self.validator = validator
        self.structure_required = structure_required
        self.core = core
        self.reward = reward or RewardConfig()
        self.sampling = sampling or SamplingParams()
        self.max_strategy_chars = max_strategy_chars
        self.max_output_chars = max_output_chars
        self.validation_retries = validation_retries
        # unguided draws per problem for E[r(y_0)]; 0 when there is no baseline (κ = 0)
        samples = resolve_baseline_samples(core, self.sampling, baseline_samples)
        self.baseline_samples = samples if self.reward.kappa > 0 else 0
        self.judge = StrategyJudge(judge_core or core, validator, judge_sampling) if self.reward.gamma > 0 else None
        self._baselines: dict[tuple, UnguidedBaseline] = {}
        self._baseline_locks: dict[tuple, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- stages -------------------------------------------------------------------------------
    def _ask_core(self, problem: Problem, strategy: str | None, sample_index: int,
                  prompt: str | None = None) -> CoreResponse:
        prompt = prompt or core_prompt(problem.question, self.validator.answer_format, strategy)
        request = CoreRequest(messages=(Message("user", prompt),), sampling=self.sampling, sample_index=sample_index)
        try:
            return self.core.complete(request)
        except FatalCoreError:
            raise  # a dead model or bad key stops the run: every later step would fail the same way
        except BudgetExceeded as exc:  # nothing was sent: not an outage, the spend cap was reached
            raise _InfraFailure("budget", str(exc)) from exc
        except CallInterrupted as exc:  # nothing was sent: the user asked to stop while it waited
            raise _InfraFailure("interrupted", str(exc)) from exc
        except CoreError as exc:
            raise _InfraFailure("baseline" if strategy is None else "core", str(exc)) from exc

    def _validate(self, problem: Problem, output: str, stage: str) -> ValidationResult:
        # Validators retry their own infrastructure (the code validators retry the sandbox), so
        # by default an INFRA result here is final; ``validation_retries`` adds attempts on top.
        result = None
        for _ in range(1 + self.validation_retries):
            try:
                result = self.validator.validate(problem, output)
            except Exception as exc:  # noqa: BLE001 - a crashing validator is an infra failure
                result = ValidationResult.infra(f"validator raised {type(exc).__name__}: {exc}")
            if not result.is_infra:
                return result
        raise _InfraFailure(stage, f"validation failed: {result.details.get('error', 'infrastructure error')}")

    def unguided(self, problem: Problem) -> tuple[UnguidedBaseline, bool]:
        """The baseline E[r(y_0)] over ``baseline_samples`` draws: computed once per (problem, core,
        sampling), then remembered. Returns (baseline, fresh): ``fresh`` says whether this call paid.

        The draws run concurrently, each with its own ``sample_index`` (a distinct cached sample).
        Any draw failing for infrastructure reasons fails the baseline: a mean over the draws that
        happened to succeed would be a different estimate.
        """
        n = max(1, self.baseline_samples)
        # the reference is part of the key: a multi-turn env scores a code problem on its reward tests only
        key = (problem.task_id, problem.question, str(problem.reference), self.core.spec, self.sampling, n)
        with self._locks_guard:
            lock = self._baseline_locks.setdefault(key, threading.Lock())
        with lock:
            if key in self._baselines:
                return self._baselines[key], False

            def draw(index: int) -> tuple[ValidationResult, CoreResponse]:
                response = self._ask_core(problem, None, sample_index=index)
                return self._validate(problem, response.text, "baseline"), response

            if n == 1:
                draws = [draw(0)]
            else:
                with ThreadPoolExecutor(max_workers=n) as pool:
                    draws = list(pool.map(draw, range(n)))
            baseline = UnguidedBaseline(tuple(r for r, _ in draws), tuple(resp for _, resp in draws))
            self._baselines[key] = baseline
            return baseline, True

    # -- the step -----------------------------------------------------------------------------
    def score(self, problem: Problem, guide_text: str, sample_index: int = 0,
              core_prompt: Callable[[str], str] | None = None) -> StepOutcome:
        """Score one guide output. Never raises for API or sandbox failures: see ``error``.

        ``core_prompt``: builds the core's prompt from the strategy instead of the guided template
        (a multi-turn episode whose core sees its previous attempt).

        Raises :class:`~gcop_env.cores.base.FatalCoreError` for a permanent configuration error
        (retired model, bad key): that is not a per-step outcome but the end of the run.
        """
        if self.structure_required:
            parsed = parse_guide_output(guide_text, self.max_strategy_chars, self.max_output_chars)
        else:
            parsed = parse_advice(guide_text, self.max_output_chars)
        cost = StepCost()
        if not parsed.structure_ok:
            return StepOutcome(problem.task_id, parsed, shape_reward(self.reward, structure_ok=False), cost,
                               baseline_samples=self.baseline_samples)
        outcome = StepOutcome(problem.task_id, parsed, RewardComponents(structure_ok=True), cost,
                              baseline_samples=self.baseline_samples)
        try:
            prompt = core_prompt(parsed.strategy) if core_prompt is not None else None
            response = self._ask_core(problem, parsed.strategy, sample_index, prompt=prompt)
            cost.core.add(response)
            outcome.core_output = response.text
            outcome.core_sampling = response.sampling
            outcome.validation = self._validate(problem, response.text, "validation")
            unguided_reward = None
            if self.reward.kappa > 0:
                baseline, fresh = self.unguided(problem)
                if fresh:
                    for base_response in baseline.responses:
                        cost.baseline.add(base_response)
                outcome.unguided = baseline
                unguided_reward = baseline.reward
            judge_score, leak = 0.0, False
            if self.judge is not None:
                try:
                    verdict, judge_response = self.judge.judge(problem, parsed.strategy)
                except FatalCoreError:
                    raise
                except BudgetExceeded as exc:
                    raise _InfraFailure("budget", str(exc)) from exc
                except CallInterrupted as exc:
                    raise _InfraFailure("interrupted", str(exc)) from exc
                except CoreError as exc:
                    raise _InfraFailure("judge", str(exc)) from exc
                if judge_response is not None:  # None: the leak check settled J = 0 without a call
                    cost.judge.add(judge_response)
                outcome.verdict = verdict
                judge_score, leak = verdict.score, verdict.leak
            outcome.components = shape_reward(
                self.reward, structure_ok=True, task_reward=outcome.validation.reward, judge_score=judge_score,
                leak=leak, unguided_reward=unguided_reward, cost=cost.step_cost(self.reward.cost_unit))
        except _InfraFailure as failure:
            outcome.error, outcome.error_stage = str(failure), failure.stage
            outcome.components = RewardComponents(structure_ok=True, cost=cost.step_cost(self.reward.cost_unit))
        return outcome

    def score_unguided(self, problem: Problem, prompt: str | None = None, sample_index: int = 0) -> StepOutcome:
        """The core alone, through the same core call and validator as :meth:`score`.

        ``prompt`` replaces the core's unguided prompt (e.g. one with in-context examples). There
        is no guide output: ``parsed`` holds no strategy, and the shaped reward is the task reward
        R. Never raises for API or sandbox failures: see ``error``.
        """
        parsed = ParsedGuideOutput(structure_ok=True, strategy=None, message="unguided: no guide output")
        cost = StepCost()
        outcome = StepOutcome(problem.task_id, parsed, RewardComponents(structure_ok=True), cost)
        try:
            response = self._ask_core(problem, None, sample_index, prompt=prompt)
            cost.core.add(response)
            outcome.core_output = response.text
            outcome.validation = self._validate(problem, response.text, "validation")
            r = outcome.validation.reward
            outcome.components = RewardComponents(structure_ok=True, task_reward=r, shaped=r,
                                                  cost=cost.step_cost(self.reward.cost_unit))
        except _InfraFailure as failure:
            # _ask_core names an unguided call "baseline"; here it is the evaluated core call
            outcome.error = str(failure)
            outcome.error_stage = "core" if failure.stage == "baseline" else failure.stage
        return outcome

    def score_many(self, items: Sequence[tuple[Problem, str]], max_workers: int = 8,
                   sample_indices: Sequence[int] | None = None) -> list[StepOutcome]:
        """Score a batch concurrently (core calls overlap); results in input order."""
        indices = list(sample_indices) if sample_indices is not None else [0] * len(items)
        if len(items) <= 1 or max_workers <= 1:
            return [self.score(p, t, i) for (p, t), i in zip(items, indices)]
        with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
            return list(pool.map(lambda args: self.score(args[0][0], args[0][1], args[1]), zip(items, indices)))

    def close(self) -> None:
        self.validator.close()

    # Pickling and deep copies keep the remembered baselines; the locks are made afresh.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_baseline_locks"] = {}
        del state["_locks_guard"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._locks_guard = threading.Lock()
