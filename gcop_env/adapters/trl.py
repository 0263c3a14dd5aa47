"""TRL's ``GRPOTrainer(environment_factory=...)``: one guide episode per rollout, scored in a reward function.

TRL (1.16, experimental) makes one environment per rollout, calls ``reset(**dataset_row)`` before
generation and offers every public method of the environment as a tool. Our episode is one guide
reply with no tool to call, so :class:`GuideEnvironment` has exactly one public method, ``reset``:
it reads ``task_id`` from the row (all ``num_generations`` rollouts of a row, a GRPO group, get the
same problem) and adds nothing to the prompt (the row's prompt already is the guide prompt).

Scoring happens in :class:`EnvironmentReward`, a reward function TRL calls with the batch's
``environments``: it scores all completions at once through the env's scorer (core calls run
concurrently), returns None for infrastructure failures (TRL leaves them out of the group
baseline) and logs every reward term as ``gcop/*``. By default TRL gets it in its ``async def``
form (:class:`~gcop_env.trainers.async_reward.AsyncShapedReward`, at most ``max_inflight`` steps
in flight), which TRL awaits on its event loop alongside any other async reward function. Repeated (problem, strategy) pairs get fresh
core samples when the core samples, from counters kept across batches (a per-process stream, so
``accelerate`` processes draw different samples); a re-run replays them from the cache.

Multi-turn envs (``max_turns > 1``): :meth:`TRLAdapter.trainer_kwargs` gives ``rollout_func`` (a
:class:`~gcop_env.trainers.multiturn_grpo.MultiTurnRollout`, which runs each rollout's episode: the guide
revises after each failed turn, the revision observations are out of the loss) and the episode
reward. A plain ``GRPOTrainer`` then gives every turn of a rollout the episode return's advantage
(the ``final`` credit rule); :class:`~gcop_env.trainers.multiturn_grpo.MultiTurnGRPOTrainer`
(``multiturn_trainer_class()``) gives each turn its own, by the env's credit rule.

Chat templates: TRL accepts ``environment_factory`` only with a tokenizer whose chat template can
render tool calls. :meth:`TRLAdapter.trainer_kwargs` checks that (with TRL's own check) and gives
``environment_factory`` plus the reward function for such a template, or the reward function alone
for a plain template; both train the same reward::

    adapter = TRLAdapter(gym.make("GCoP-GSM8K-v0", core=..., split="train"))
    trainer = GRPOTrainer(model=model, args=config, processing_class=tokenizer,
                          train_dataset=adapter.dataset(), **adapter.trainer_kwargs(tokenizer))
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym

from gcop_env.envs.env import SAMPLE_STREAMS, SAMPLES_PER_STREAM, SampleCounter
from gcop_env.problem import Problem
from gcop_env.step.scoring import GuideScorer, StepOutcome
from gcop_env.step.strategy import parse_guide_output
from gcop_env.trainers.async_reward import DEFAULT_MAX_INFLIGHT, AsyncShapedReward
from gcop_env.trainers.grpo import ShapedReward, grpo_dataset
from gcop_env.utils.environ import env_int


class GuideEnvironment:
    """One rollout's environment for TRL: ``reset(**row)`` picks the row's problem. No tools."""

    def __init__(self, problems: Mapping[str, Problem]):
        self._problems = problems
        self._problem: Problem | None = None

    @property
    def problem(self) -> Problem | None:
        """The problem of the current rollout (None before the first reset)."""
        return self._problem

    def reset(self, task_id: str | None = None, **row: Any) -> None:
        """Start the rollout on the dataset row's problem; the row's prompt is used as it is."""
        if task_id is None:
            raise KeyError(f"the dataset row has no 'task_id' column (columns: {sorted(row)}); build the dataset "
                           "with TRLAdapter.dataset() or give each row the task_id of its problem")
        try:
            self._problem = self._problems[task_id]
        except KeyError:
            raise KeyError(f"task_id {task_id!r} is not among the env's {len(self._problems)} problems; "
                           "make the env with the split (and limit) the dataset was built from") from None
        return None


class EnvironmentReward(ShapedReward):
    """The shaped reward of each rollout's guide reply, scored in one concurrent batch.

    Takes each completion's problem from its :class:`GuideEnvironment` when TRL passes
    ``environments``, else from the ``task_id`` column (the plain-template path).
    """

    __name__ = "gcop_shaped"

    def __init__(self, scorer: GuideScorer, problems: Sequence[Problem], max_workers: int = 8,
                 stream: int | None = None):
        super().__init__(scorer, problems, max_workers=max_workers)
        # one stream per training process, so processes scoring the same pair draw different samples
        self.stream = (env_int("RANK", 0) if stream is None else stream) % SAMPLE_STREAMS
        self.sample_counter = SampleCounter()  # per (problem, strategy), across batches

    def core_samples(self) -> bool:
        """Whether the core's answer varies between calls (then repeats get fresh samples)."""
        sampling = self.scorer.sampling
        is_deterministic = getattr(self.scorer.core, "is_deterministic", None)
        return sampling.temperature > 0 or (callable(is_deterministic) and not is_deterministic(sampling))

    def _key(self, problem: Problem, text: str) -> tuple[str, str] | None:
        parsed = parse_guide_output(text, self.scorer.max_strategy_chars, self.scorer.max_output_chars)
        return (problem.task_id, parsed.strategy) if parsed.structure_ok else None

    def sample_indices(self, items: Sequence[tuple[Problem, str]]) -> list[int]:
        if not self.core_samples():
            return [0] * len(items)
        keys = [self._key(problem, text) for problem, text in items]
        return [0 if key is None else self.stream * SAMPLES_PER_STREAM + self.sample_counter.take(key) for key in keys]

    def scored(self, items: Sequence[tuple[Problem, str]], indices: Sequence[int],
               outcomes: Sequence[StepOutcome]) -> None:
        if not self.core_samples():
            return
        for (problem, text), index, outcome in zip(items, indices, outcomes):
            key = self._key(problem, text)
            if key is not None and outcome.error is not None:  # a later batch asks for the same sample
                self.sample_counter.give_back(key, index - self.stream * SAMPLES_PER_STREAM)

    def task_ids(self, task_id: list[str] | None, environments: list[GuideEnvironment] | None) -> list[str]:
        """Each completion's problem: from its rollout environment, else from the ``task_id`` column."""
        if environments is not None:
            if any(env.problem is None for env in environments):
                raise RuntimeError("a rollout's environment was never reset: TRL calls reset(**row) before generation")
            return [env.problem.task_id for env in environments]
        if task_id is None:
            raise KeyError("no problem for the completions: pass environment_factory or a 'task_id' dataset column")
        return list(task_id)


class TRLAdapter:
    """What a ``GRPOTrainer`` needs from a GCoP env: a dataset, an environment factory, a reward function.

    ``env``: a made GCoP env (``gym.make("GCoP-GSM8K-v0", ...)``, wrappers allowed); its problems,
    core, validator and reward weights are used. ``reward_mode``: ``"async"`` (default) hands TRL
    :attr:`async_reward`, an ``async def`` reward scoring at most ``max_inflight`` steps at once on
    TRL's event loop; ``"sync"`` hands it :attr:`reward`, a plain function scoring ``max_workers``
    steps at once (for a trainer that does not await reward functions). Both score the same batch
    to the same rewards and share one set of totals (``adapter.reward.totals``).
    """

    def __init__(self, env: gym.Env, *, max_workers: int = 8, stream: int | None = None, reward_mode: str = "async",
                 max_inflight: int = DEFAULT_MAX_INFLIGHT):
        base = env.unwrapped
        if not hasattr(base, "scorer") or not hasattr(base, "problems"):
            raise TypeError(f"TRLAdapter needs a GCoP env (gym.make('GCoP-...')), got {type(base).__name__}")
        if reward_mode not in ("async", "sync"):
            raise ValueError(f"reward_mode must be 'async' or 'sync', got {reward_mode!r}")
        self.env = env
        self.problems: list[Problem] = list(base.problems)
        self._by_id = {p.task_id: p for p in self.problems}
        self.reward_mode = reward_mode
        self.reward = EnvironmentReward(base.scorer, self.problems, max_workers=max_workers, stream=stream)
        self.async_reward = AsyncShapedReward(self.reward, max_inflight=max_inflight)
        self.max_turns = int(getattr(base, "max_turns", 1))
        self.rollout = self.episode_reward = None
        if self.max_turns > 1:  # a multi-turn env: TRL's rollout_func runs the episodes
            from gcop_env.trainers.multiturn_grpo import EpisodeReward, MultiTurnRollout

            self.rollout = MultiTurnRollout(base.episodes, self.problems, max_workers=max_workers, stream=stream)
            self.episode_reward = EpisodeReward(base.episodes, self.max_turns)

    @property
    def reward_function(self) -> EnvironmentReward | AsyncShapedReward:
        """The reward function for ``reward_funcs``, as ``reward_mode`` says."""
        return self.async_reward if self.reward_mode == "async" else self.reward

    def environment_factory(self) -> GuideEnvironment:
        """A fresh rollout environment (TRL calls this once per concurrent rollout)."""
        return GuideEnvironment(self._by_id)

    def dataset(self) -> Any:
        """One row per problem: the guide prompt (conversational) and its ``task_id``."""
        return grpo_dataset(self.problems)

    def trainer_kwargs(self, processing_class: Any) -> dict[str, Any]:
        """``environment_factory`` and ``reward_funcs`` for a tool-capable template; ``reward_funcs`` alone
        otherwise; ``rollout_func`` and the episode reward for a multi-turn env."""
        from trl.chat_template_utils import supports_tool_calling

        if self.rollout is not None:
            os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL 1.16
            return {"rollout_func": self.rollout, "reward_funcs": [self.episode_reward]}

        if supports_tool_calling(processing_class):
            return {"environment_factory": self.environment_factory, "reward_funcs": [self.reward_function]}
        return {"reward_funcs": [self.reward_function]}
