"""The Gymnasium environment: one problem per episode, one step per episode.

Observation: the guide's prompt for the current problem. Action: the guide's whole output text.
The step runs :class:`~gcop_env.step.scoring.GuideScorer` and returns the shaped reward with every term
in ``info["reward_components"]`` and the spend in ``info["cost"]``.

``info["reward_is_task_outcome"]`` is False (and ``info["error"]`` set) when an API or the sandbox
failed: the reward of such a step is 0.0 only because Gymnasium needs a float; learners must
drop it (the bundled trainer does; :class:`gcop_env.envs.wrappers.InfraAware` does it for any library).

Core samples: when the core samples (temperature > 0, or the core says it is not deterministic),
a repeated (problem, strategy) gets a fresh core sample: the env counts the samples it drew for
each (problem, strategy) and asks for the next ``sample_index``, which is part of the response
cache key. A re-run of the same script therefore replays the same cached sequence (no API call),
while one run sees independent samples. The counter is per env and starts from a *sample stream*
taken from the seed of ``reset(seed=...)`` (0 until a seed is given), so the sub-envs of a vector
env, seeded ``seed + i``, draw different samples. A step that failed for infrastructure reasons
does not use up its sample: a retry asks for the same one.

Pickling, ``copy.deepcopy`` and ``cloudpickle`` work: clients, SQLite connections, locks and
sandboxes are left out and made again on first use. A deep copy shares the core and its
response cache (thread-safe connections, like ``gym.make`` copies); a pickled copy gets its own.
A copy starts with the original's sample counts: seed each copy's ``reset`` differently (as vector
envs and Ray do) so that copies draw different core samples.
``env.spec.to_json()`` stores core spec strings; a ``Core`` object cannot be written as JSON and
is refused with a message saying which spec string to pass instead.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import json
import numbers
import os
import threading
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from gcop_env.cores.budget import Budget
from gcop_env.cores.cache import ResponseCache
from gcop_env.utils.numbers import check_int, check_number
from gcop_env.cores import Core, RateLimits, RetryPolicy, SamplingParams, make_core
from gcop_env.cores.models import DEFAULT_CORE  # a current model; dates and sources in cores/models.py
from gcop_env.problem import Problem
from gcop_env.step.prompts import guide_prompt
from gcop_env.step.reward import RewardConfig
from gcop_env.step.scoring import GuideScorer, StepOutcome
from gcop_env.envs.spaces import UnicodeText
from gcop_env.step.strategy import DEFAULT_MAX_STRATEGY_CHARS, parse_guide_output
from gcop_env.envs.tasks import get_task

# sample_index = stream * SAMPLES_PER_STREAM + count. Bounded so that the index stays a small
# integer for every backend (the hf: core seeds torch with it).
SAMPLE_STREAMS = 2**24
SAMPLES_PER_STREAM = 2**20


class SampleCounter:
    """Hands out core sample numbers per key (e.g. (stream, problem, strategy)); thread-safe.

    ``take`` gives the next unused number; ``give_back`` returns one whose call failed, and it is
    handed out again before any new one (a retry asks for the same sample, never skips one).
    """

    def __init__(self) -> None:
        self._next: dict[Any, int] = {}
        self._returned: dict[Any, list[int]] = {}
        self._lock = threading.Lock()

    def take(self, key: Any) -> int:
        with self._lock:
            returned = self._returned.get(key)
            if returned:
                return returned.pop(0)
            number = self._next.get(key, 0)
            self._next[key] = number + 1
            return number

    def give_back(self, key: Any, number: int) -> None:
        with self._lock:
            self._returned.setdefault(key, []).append(number)
            self._returned[key].sort()

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            return {"_next": dict(self._next), "_returned": {k: list(v) for k, v in self._returned.items()}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class GCoPEnv(gym.Env[str, str]):
    """Guide–core steering as an environment.

    Args:
        task: registered task name (set by the env id, e.g. ``GCoP-GSM8K-v0`` → ``"GSM8K"``).
        core: core spec (see :func:`gcop_env.make_core` and the Cores page), or a ready
            :class:`~gcop_env.cores.Core`.
        split: dataset split.
        data_files: local files (JSONL, ``.jsonl.gz``, JSON, Parquet, CSV) instead of the task's default
            source (the hub, or a package for HumanEval); read directly, never through the ``datasets`` cache.
        limit: use only the first N problems of the split (default: all).
        judge: core spec of the judge J (default: the core itself). Unused when ``gamma == 0``.
        beta: β, the structure bonus of a well-formed strategy.
        gamma: γ, the judge weight; 0 means no judge calls.
        kappa: κ, the harm weight on max(0, −ΔR); 0 means no unguided baseline calls.
        lam, cost_unit: λ and the unit of T in the cost term λ·T: ``"usd"`` or ``"tokens"`` (thousands of
            tokens of the core and the judge). The weights are :class:`~gcop_env.step.reward.RewardConfig`'s.
        temperature, top_p, max_tokens: the core's sampling parameters (part of the cache keys; the cache
            key and ``info["core_sampling"]`` hold what the backend really sends).
        baseline_samples: unguided draws averaged into the baseline E[r(y_0)] of ΔR. None: 1 when the
            core is deterministic, else :data:`~gcop_env.step.scoring.DEFAULT_STOCHASTIC_BASELINE_SAMPLES` (4).
        judge_max_tokens: the judge's reply budget.
        max_strategy_chars: the strategy length budget of the structure check.
        max_observation_chars, max_action_chars: lengths of the text spaces.
        cache: None/True (the default on-disk cache), False (off), or a cache path.
        retry: a :class:`RetryPolicy` (attempts, backoff, jitter, longest retry-after honoured), or a dict of
            its fields, as ``spec.to_json()`` writes it. None: ``RetryPolicy()``.
        rate_limits: a :class:`~gcop_env.cores.RateLimits` (``rpm``, ``itpm``, ``otpm``, ``max_concurrency``,
            ``shared_dir``) or a dict of its fields, for the core's and the judge's endpoints, instead of
            ``GCOP_RPM`` / ``GCOP_RATE_LIMITS`` (none by default); shared with every other caller of the same
            endpoint in the process.
        max_usd, max_total_tokens: a spend cap on the real calls of this env's core, judge and
            baseline (:class:`~gcop_env.cores.budget.Budget`; cache hits are free). Once it is reached a
            step is an infrastructure error (``info["error_stage"] == "budget"``), never a wrong
            answer; ``info["cost"]["budget"]`` shows what was spent and what is left. To share one
            budget between several envs, pass each a core made with ``make_core(spec, budget=b)``.
        render_mode: None or ``"ansi"`` (``render()`` returns the current problem and last step as text).
        **validator_options: passed to the task's validator class (e.g. ``sandbox="docker"``, ``timeout``,
            ``partial_credit`` for the code tasks).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, task: str, core: Any = DEFAULT_CORE, *, split: str = "test", data_files: Any = None,
                 limit: int | None = None, judge: Any = None, beta: float = RewardConfig.beta,
                 gamma: float = RewardConfig.gamma, kappa: float = RewardConfig.kappa, lam: float = RewardConfig.lam,
                 cost_unit: str = RewardConfig.cost_unit, temperature: float = 0.0, top_p: float = 1.0,
                 max_tokens: int = 1024, judge_max_tokens: int = 256, baseline_samples: int | None = None,
                 max_strategy_chars: int = DEFAULT_MAX_STRATEGY_CHARS, max_observation_chars: int = 32768,
                 max_action_chars: int = 32768, cache: Any = None, retry: RetryPolicy | None = None,
                 rate_limits: Any = None, max_usd: float | None = None, max_total_tokens: int | None = None,
                 render_mode: str | None = None, **validator_options: Any):
        self.task = get_task(task)
        unknown = set(validator_options) - self.task.validator_options()
        if unknown:
            valid = sorted(set(_ENV_KWARGS) | self.task.validator_options())
            hints = {k: difflib.get_close_matches(k, valid, n=1) for k in sorted(unknown)}
            detail = ", ".join(f"{k!r}" + (f" (did you mean {v[0]!r}?)" if v else "") for k, v in hints.items())
            raise TypeError(f"{self.task.env_id} got unknown keyword argument(s) {detail}; valid: {valid}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        _check_arguments(limit=limit, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                         judge_max_tokens=judge_max_tokens, max_strategy_chars=max_strategy_chars,
                         max_observation_chars=max_observation_chars, max_action_chars=max_action_chars)
        self.reward_config = RewardConfig(beta=beta, gamma=gamma, kappa=kappa, lam=lam, cost_unit=cost_unit)
        self.render_mode = render_mode
        self.split = split
        problems = self.task.load(split=split, data_files=data_files)
        self.problems: list[Problem] = problems[:limit] if limit else problems
        if not self.problems:
            raise ValueError(f"{self.task.env_id}: split {split!r} has no problems")
        self._index = {p.task_id: i for i, p in enumerate(self.problems)}
        retry = RetryPolicy.coerce(retry)
        self.budget = Budget.from_limits(max_usd, max_total_tokens)
        self.core = make_core(core, cache=cache, retry=retry, limits=rate_limits, budget=self.budget)
        if self.budget is None:  # a core made with make_core(spec, budget=b) shares b (e.g. across several envs)
            self.budget = getattr(self.core, "budget", None)
        judge_core = None
        if self.reward_config.gamma > 0 and judge is not None:
            judge_core = make_core(judge, cache=cache, retry=retry, limits=rate_limits, budget=self.budget)
        if self.budget is not None:
            self.budget.check_priced([c for c in (self.core, judge_core) if c is not None])
        self.validator = self.task.make_validator(validator_options)
        self.scorer = GuideScorer(
            self.validator, self.core, judge_core=judge_core, reward=self.reward_config,
            sampling=SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens),
            judge_sampling=SamplingParams(temperature=0.0, max_tokens=judge_max_tokens),
            max_strategy_chars=max_strategy_chars, max_output_chars=max_action_chars,
            baseline_samples=baseline_samples)
        self.observation_space = UnicodeText(max_length=max_observation_chars)
        self.action_space = UnicodeText(max_length=max_action_chars)
        self.problem: Problem | None = None
        self.last_outcome: StepOutcome | None = None
        self._sample_stream = 0
        self.sample_counter = SampleCounter()

    # -- spec: gym.make sets it; ours writes JSON that gym.make can read back -----------------
    @property
    def spec(self) -> EnvSpec | None:
        return self.__dict__.get("_spec")

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        if value is not None and not isinstance(value, GCoPEnvSpec):
            value = GCoPEnvSpec(**{f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init})
        self.__dict__["_spec"] = value

    # -- core samples ---------------------------------------------------------------------------
    def core_samples(self) -> bool:
        """Whether the core's answer to one prompt varies between calls (so repeats are worth drawing)."""
        # temperature > 0 varies with sample_index even on a reproducible core (hf: seeds with it);
        # a core that cannot send temperature 0 (default Anthropic API version) samples regardless
        sampling = self.scorer.sampling
        is_deterministic = getattr(self.core, "is_deterministic", None)
        return sampling.temperature > 0 or (callable(is_deterministic) and not is_deterministic(sampling))

    def _sample_key(self, action: str) -> tuple[int, str, str] | None:
        """The (stream, problem, strategy) whose samples this step counts; None when no core call is made."""
        if not self.core_samples():
            return None
        parsed = parse_guide_output(action, self.scorer.max_strategy_chars, self.scorer.max_output_chars)
        if not parsed.structure_ok:
            return None
        return (self._sample_stream, self.problem.task_id, parsed.strategy)

    # -- Gymnasium API ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._sample_stream = int(seed) % SAMPLE_STREAMS
        options = dict(options or {})
        if "task_id" in options:
            task_id = options.pop("task_id")
            if task_id not in self._index:
                close = difflib.get_close_matches(str(task_id), list(self._index), n=3)
                raise KeyError(f"unknown task_id {task_id!r} in {self.task.env_id} split {self.split!r}"
                               + (f"; close matches: {close}" if close else ""))
            index = self._index[task_id]
        elif "index" in options:
            raw = options.pop("index")
            if isinstance(raw, bool) or not isinstance(raw, numbers.Integral):
                raise TypeError(f"reset option 'index' must be an integer in 0..{len(self.problems) - 1}, "
                                f"got {raw!r} ({type(raw).__name__}); use 'task_id' to pick a problem by id")
            index = int(raw)
            if not 0 <= index < len(self.problems):
                raise IndexError(f"index {index} out of range 0..{len(self.problems) - 1}")
        else:
            index = int(self.np_random.integers(len(self.problems)))
        if options:
            raise ValueError(f"unknown reset option(s) {sorted(options)}; valid: 'task_id', 'index'")
        self.problem = self.problems[index]
        self.last_outcome = None
        observation = guide_prompt(self.problem.question)
        if len(observation) > self.observation_space.max_length:
            raise ValueError(f"problem {self.problem.task_id} gives a {len(observation)}-character prompt, over "
                             f"max_observation_chars={self.observation_space.max_length}")
        return observation, {"task_id": self.problem.task_id, "index": index}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.problem is None:
            raise RuntimeError("call reset() before step(): each episode is one problem and one step")
        if not isinstance(action, str):
            raise TypeError(f"the action must be the guide's output text (str), got {type(action).__name__}")
        key = self._sample_key(action)
        sample_index = 0
        if key is not None:
            number = self.sample_counter.take(key)
            sample_index = key[0] * SAMPLES_PER_STREAM + number
        outcome = self.scorer.score(self.problem, action, sample_index)
        if key is not None and outcome.error is not None:
            self.sample_counter.give_back(key, number)  # nothing was learnt from it: a retry asks again
        self.last_outcome = outcome
        observation = guide_prompt(self.problem.question)
        reward = float(outcome.reward) if outcome.reward is not None else 0.0
        info = outcome.info()
        if self.budget is not None:
            info["cost"]["budget"] = self.budget.status().as_dict()
        if outcome.parsed.structure_ok:
            info["core_sample_index"] = sample_index
        # a key without a value is left out rather than set to None: Gymnasium's vector envs batch
        # info by key with a `_key` mask for "absent", and a None beside a dict (core_sampling) breaks that
        return observation, reward, True, False, {key: value for key, value in info.items() if value is not None}

    def sibling(self) -> GCoPEnv:
        """An env for a second concurrent episode on this env's scorer, core (SDK client, response
        cache), baseline table, validator (sandbox pool) and sample counter, with its own problem,
        RNG and sample stream: what :class:`gcop_env.envs.vector.GCoPVectorEnv` steps on threads.

        Closing one closes the shared parts of all: close the owner once, not each sibling.
        """
        twin = copy.copy(self)  # shallow on purpose: everything not reset below is shared
        twin._np_random, twin._np_random_seed = None, None
        twin.problem, twin.last_outcome, twin._sample_stream = None, None, 0
        return twin

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        if self.problem is None:
            return "(no problem: call reset())"
        lines = [f"[{self.problem.task_id}] {self.problem.question}"]
        if self.last_outcome is not None:
            c = self.last_outcome.components
            lines.append(f"structure_ok={c.structure_ok} task_reward={c.task_reward} judge={c.judge_score:.2f} "
                         f"delta={c.reward_delta:+.2f} shaped={c.shaped:.3f}"
                         + (f" ERROR={self.last_outcome.error}" if self.last_outcome.error else ""))
        return "\n".join(lines)

    def close(self) -> None:
        self.scorer.close()
        self.core.close()


def _check_arguments(*, limit: Any, temperature: Any, top_p: Any, max_tokens: Any, judge_max_tokens: Any,
                     max_strategy_chars: Any, max_observation_chars: Any, max_action_chars: Any) -> None:
    """Every number the env is configured with is finite and in range (the reward weights are
    checked by :class:`RewardConfig`): a clear ValueError before any data is loaded."""
    if limit is not None:
        check_int("limit", limit, lo=1)
    check_number("temperature", temperature, lo=0, hi=2)
    check_number("top_p", top_p, lo=0, hi=1, lo_open=True)
    check_int("max_tokens", max_tokens, lo=1)
    check_int("judge_max_tokens", judge_max_tokens, lo=1)
    check_int("max_strategy_chars", max_strategy_chars, lo=1)
    check_int("max_observation_chars", max_observation_chars, lo=1)
    check_int("max_action_chars", max_action_chars, lo=1)


class GCoPEnvSpec(EnvSpec):
    """Gymnasium's spec with a ``to_json`` that says what it cannot write and how to fix it."""

    def to_json(self) -> str:
        kwargs = {name: _jsonable(name, value) for name, value in self.kwargs.items()}
        plain = EnvSpec(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init})
        plain.kwargs = kwargs
        return plain.to_json()


def _jsonable(name: str, value: Any) -> Any:
    """A kwarg as JSON that ``gym.make`` reads back to the same env, or a TypeError saying what to pass."""
    if isinstance(value, Core):
        raise TypeError(f"env.spec.to_json(): {name}= is a Core object ({value!r}), which JSON cannot hold (its "
                        f"retries, timeouts, prices and cache are not part of a spec string). Make the env with "
                        f"{name}={value.spec!r} (and retry=..., cache=... as env kwargs) to get a JSON spec.")
    if isinstance(value, ResponseCache):
        return str(value.path)  # a cache is its file: the same path opens the same store
    if isinstance(value, (RetryPolicy, RateLimits)):
        return dataclasses.asdict(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {k: _jsonable(f"{name}[{k!r}]", v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(f"{name}[{i}]", v) for i, v in enumerate(value)]
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise TypeError(f"env.spec.to_json(): {name}={value!r} ({type(value).__name__}) cannot be written as JSON; "
                        "pass a string, number, list or dict instead (e.g. sandbox='docker' rather than a Sandbox)") from None
    return value


_ENV_KWARGS = [name for name in inspect.signature(GCoPEnv.__init__).parameters
               if name not in ("self", "validator_options")]
