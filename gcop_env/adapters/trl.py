"""TRL's ``GRPOTrainer(environment_factory=...)``: one guide episode per rollout, scored in a reward function.

TRL (1.16, experimental) makes one environment per rollout, calls ``reset(**dataset_row)`` before
generation and offers every public method of the environment as a tool. Our episode is one guide
reply with no tool to call, so :class:`GuideEnvironment` has exactly one public method, ``reset``:
it reads ``task_id`` from the row (all ``num_generations`` rollouts of a row, a GRPO group, get the
same problem) and adds nothing to the prompt (the row's prompt already is the guide prompt).

Scoring happens in :class:`EnvironmentReward`, a reward function TRL calls with the batch's
``environments``: it scores all completions at once through the public scoring call
(:class:`gcop_env.envs.score.Scoring`; core calls run concurrently), returns None for infrastructure failures (TRL leaves them out of the group
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

from gcop_env.envs.env import SAMPLE_STREAMS, GCoPEnv
from gcop_env.envs.score import Scoring
from gcop_env.problem import Problem
from gcop_env.step.scoring import StepOutcome
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
    """The shaped reward of each rollout's guide reply, scored in one concurrent batch through the
    public scoring call (:class:`~gcop_env.envs.score.Scoring`): each completion is exactly the
    env's step for its task id.

    Takes each completion's problem from its :class:`GuideEnvironment` when TRL passes
    ``environments``, else from the ``task_id`` column (the plain-template path). Repeated
    (problem, strategy) pairs draw fresh core samples when the core samples: the scoring handle
    counts them across batches on its sample stream (one per training process), and a failed call
    does not use up its sample.
    """

    __name__ = "gcop_shaped"

    def __init__(self, scoring: Scoring, max_workers: int = 8):
        super().__init__(scoring.scorer, scoring.problems, max_workers=max_workers)
        self.scoring = scoring

    @property
    def stream(self) -> int:
        return self.scoring.stream

    def sample_indices(self, items: Sequence[tuple[Problem, str]]) -> list[int]:
        return [0] * len(items)  # the scoring call picks each step's sample

    def score_item(self, problem: Problem, text: str, index: int) -> StepOutcome:
        return self.scoring.score(problem.task_id, text).outcome

    def score_items(self, items: Sequence[tuple[Problem, str]], indices: Sequence[int]) -> list[StepOutcome]:
        scores = self.scoring.score_many([(problem.task_id, text) for problem, text in items],
                                         max_workers=self.max_workers)
        return [score.outcome for score in scores]

    def task_ids(self, task_id: list[str] | None, environments: list[GuideEnvironment] | None) -> list[str]:
        """Each completion's problem: from its rollout environment, else from the ``task_id`` column."""
        if environments is not None:
            if any(env.problem is None for env in environments):
                raise RuntimeError("a rollout's environment was never reset: TRL calls reset(**row) before generation")
            return [env.problem.task_id for env in environments]
        if task_id is None:
            raise KeyError("no problem for the completions: pass environment_factory or a 'task_id' dataset column")
        return list(task_id)

    def close(self) -> None:
        self.scoring.close()


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
        if not isinstance(base, GCoPEnv):
            raise TypeError(f"TRLAdapter needs a GCoP env (gym.make('GCoP-...')), got {type(base).__name__}")
        if reward_mode not in ("async", "sync"):
            raise ValueError(f"reward_mode must be 'async' or 'sync', got {reward_mode!r}")
        # one stream per training process, so processes scoring the same pair draw different samples
        stream = (env_int("RANK", 0) if stream is None else stream) % SAMPLE_STREAMS
        self.env = env
        self.scoring = Scoring(env, stream=stream)  # holds the env's parts: close() releases them
        self.problems: list[Problem] = list(self.scoring.problems)
        self._by_id = {p.task_id: p for p in self.problems}
        self.reward_mode = reward_mode
        self.reward = EnvironmentReward(self.scoring, max_workers=max_workers)
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

    def close(self) -> None:
        """Stop the async reward's threads and release the adapter's hold on the env's parts."""
        self.async_reward.close()
