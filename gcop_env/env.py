"""The Gymnasium environment: one problem per episode, one step per episode.

Observation: the guide's prompt for the current problem. Action: the guide's whole output text.
The step runs :class:`~gcop_env.scoring.GuideScorer` and returns the shaped reward with every term
in ``info["reward_components"]`` and the spend in ``info["cost"]``.

``info["reward_is_task_outcome"]`` is False (and ``info["error"]`` set) when an API or the sandbox
failed: the reward of such a step is 0.0 only because Gymnasium needs a float; learners must
drop it (the bundled trainer does).
"""

from __future__ import annotations

import difflib
import inspect
import numbers
from typing import Any

import gymnasium as gym

from gcop_env.checks import check_int, check_number
from gcop_env.cores import RetryPolicy, SamplingParams, make_core
from gcop_env.problem import Problem
from gcop_env.prompts import guide_prompt
from gcop_env.reward import RewardConfig
from gcop_env.scoring import GuideScorer, StepOutcome
from gcop_env.spaces import UnicodeText
from gcop_env.strategy import DEFAULT_MAX_STRATEGY_CHARS
from gcop_env.tasks import get_task

DEFAULT_CORE = "anthropic:claude-3-5-haiku-20241022"


class GCoPEnv(gym.Env[str, str]):
    """Guide–core steering as an environment.

    Args:
        task: registered task name (set by the env id, e.g. ``GCoP-GSM8K-v0`` → ``"GSM8K"``).
        core: core spec (see :func:`gcop_env.make_core`), or a ready :class:`~gcop_env.cores.Core`.
        split: dataset split. data_files: local files instead of the hub. limit: first N problems only.
        judge: core spec for the judge J (default: the core itself). Unused when ``gamma == 0``.
        beta, gamma, kappa, lam, cost_unit: the shaped reward's weights (:class:`~gcop_env.reward.RewardConfig`).
        temperature, top_p, max_tokens: the core's sampling parameters (part of the cache keys).
        judge_max_tokens: the judge's reply budget.
        max_strategy_chars: the strategy length budget of the structure check.
        max_observation_chars, max_action_chars: lengths of the text spaces.
        cache: None/True (the default on-disk cache), False (off), or a cache path. retry: a :class:`RetryPolicy`.
        **validator_options: passed to the task's validator class (e.g. ``sandbox="docker"``).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, task: str, core: Any = DEFAULT_CORE, *, split: str = "test", data_files: Any = None,
                 limit: int | None = None, judge: Any = None, beta: float = RewardConfig.beta,
                 gamma: float = RewardConfig.gamma, kappa: float = RewardConfig.kappa, lam: float = RewardConfig.lam,
                 cost_unit: str = RewardConfig.cost_unit, temperature: float = 0.0, top_p: float = 1.0,
                 max_tokens: int = 1024, judge_max_tokens: int = 256,
                 max_strategy_chars: int = DEFAULT_MAX_STRATEGY_CHARS, max_observation_chars: int = 32768,
                 max_action_chars: int = 32768, cache: Any = None, retry: RetryPolicy | None = None,
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
        self.core = make_core(core, cache=cache, retry=retry)
        judge_core = None
        if self.reward_config.gamma > 0 and judge is not None:
            judge_core = make_core(judge, cache=cache, retry=retry)
        self.validator = self.task.validator(**validator_options)
        self.scorer = GuideScorer(
            self.validator, self.core, judge_core=judge_core, reward=self.reward_config,
            sampling=SamplingParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens),
            judge_sampling=SamplingParams(temperature=0.0, max_tokens=judge_max_tokens),
            max_strategy_chars=max_strategy_chars, max_output_chars=max_action_chars)
        self.observation_space = UnicodeText(max_length=max_observation_chars)
        self.action_space = UnicodeText(max_length=max_action_chars)
        self.problem: Problem | None = None
        self.last_outcome: StepOutcome | None = None

    # -- Gymnasium API ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
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
        outcome = self.scorer.score(self.problem, action)
        self.last_outcome = outcome
        observation = guide_prompt(self.problem.question)
        reward = float(outcome.reward) if outcome.reward is not None else 0.0
        return observation, reward, True, False, outcome.info()

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


_ENV_KWARGS = [name for name in inspect.signature(GCoPEnv.__init__).parameters
               if name not in ("self", "validator_options")]
