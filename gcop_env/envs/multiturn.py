"""Multi-turn episodes: the guide sees the core fail and revises its strategy.

``gym.make("GCoP-GSM8K-v0", max_turns=3)`` or the registered ``GCoP-GSM8K-MultiTurn-v0``
(``max_turns=3``). ``max_turns=1`` (the default of every ``GCoP-<Task>-v0``) is the single-turn
:class:`~gcop_env.envs.env.GCoPEnv` itself, unchanged: the entry point :func:`make_env` returns
it, and the multi-turn options then have no effect (they are still checked).

One episode (the path is :mod:`gcop_env.step.episode`):

* ``reset`` picks a problem; the observation is the single-turn guide prompt.
* each ``step(guide_text)`` is one turn, scored exactly like a single-turn step (its own R, J,
  ΔR against the same unguided baseline, its cost). The core answers afresh (``core_history=
  "fresh"``) or sees its previous attempt and the feedback (``"previous"``).
* the core's answer passes: ``terminated=True``. Turns used up: ``truncated=True``. Otherwise the
  next observation is the revision prompt (problem, previous strategy, the core's answer,
  bounded, and the validator's feedback); the episode goes on.
* a malformed reply ends its turn with no core call (reward 0, no cost), as in the single-turn
  env; the next observation says why it was refused.
* an infrastructure failure (API, sandbox, the feedback run, the budget) does not advance the
  episode: reward 0.0 with ``info["reward_is_task_outcome"] = False``, ``truncated=True``, and the
  same observation; stepping again retries the turn (what :class:`~gcop_env.envs.wrappers.InfraAware`
  ``policy="retry"`` does).

Rewards: the env's reward for turn t is ρ_t of the credit rule (``credit=``, default
``"improvement"``); formulas in :mod:`gcop_env.step.credit`. ``info`` of a turn:

* every key of a single-turn step, for this turn (``reward_components``, ``validation``, ``judge``,
  ``strategy``, ``core_output``, ...), except that ``info["cost"]`` is the *episode's* cost so far
  (every turn added; with ``budget`` as in single-turn) and ``info["turn_cost"]`` this turn's;
* ``turn``, ``max_turns``, ``success``; ``credit``: the rule, ρ_t (``reward``), s_t
  (``turn_reward``), u_t (``utility``), u_{t−1} (``previous_utility``), c_t (``cost_penalty``),
  Σ c (``episode_cost_penalty``) and Σ ρ so far (``return``);
* ``feedback`` (text, kind, counts) when the turn failed and another follows;
* ``turns``: a summary of every turn so far (the whole episode on its last step);
* ``feedback_split``: how the problem's tests are divided between feedback and reward.

Code tasks score R on the *reward* tests only (KodCode: the file minus its feedback units;
HumanEval: ``check()``), so a multi-turn env's R can differ from the single-turn env's R for the
same answer on KodCode: compare turn 1 of a multi-turn run with the single-turn numbers on the
same split, not across the two envs. See :mod:`gcop_env.step.feedback`.
"""

from __future__ import annotations

from typing import Any

from gcop_env.envs.env import SAMPLES_PER_STREAM, GCoPEnv
from gcop_env.step.credit import DEFAULT_CREDIT
from gcop_env.step.episode import (
    DEFAULT_MAX_ANSWER_CHARS,
    DEFAULT_MAX_TURNS,
    Episode,
    EpisodeScorer,
    add_costs,
    check_multiturn_options,
)
from gcop_env.step.feedback import DEFAULT_MAX_FEEDBACK_CHARS

MULTITURN_OPTIONS = ("max_turns", "credit", "core_history", "max_answer_chars", "max_feedback_chars")


def make_env(task: str, *, max_turns: int = 1, credit: str = DEFAULT_CREDIT, core_history: str = "fresh",
             max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS, max_feedback_chars: int = DEFAULT_MAX_FEEDBACK_CHARS,
             **kwargs: Any) -> GCoPEnv:
    """The entry point of every GCoP id: the single-turn env for ``max_turns=1``, else :class:`MultiTurnGCoPEnv`."""
    check_multiturn_options(max_turns=max_turns, credit=credit, core_history=core_history,
                            max_answer_chars=max_answer_chars, max_feedback_chars=max_feedback_chars)
    if max_turns == 1:
        return GCoPEnv(task, **kwargs)
    return MultiTurnGCoPEnv(task, max_turns=max_turns, credit=credit, core_history=core_history,
                            max_answer_chars=max_answer_chars, max_feedback_chars=max_feedback_chars, **kwargs)


class MultiTurnGCoPEnv(GCoPEnv):
    """A GCoP env whose episodes last up to ``max_turns`` guide turns (see the module doc).

    Args: every :class:`~gcop_env.envs.env.GCoPEnv` argument, and
        max_turns: turns per episode (default 3).
        credit: ``"improvement"`` (default), ``"final"`` or ``"turn"`` (:mod:`gcop_env.step.credit`).
        core_history: ``"fresh"`` (default) or ``"previous"``.
        max_answer_chars, max_feedback_chars: bounds of the core's answer and of the feedback in
            the revision observation.
    """

    def __init__(self, task: str, *args: Any, max_turns: int = DEFAULT_MAX_TURNS, credit: str = DEFAULT_CREDIT,
                 core_history: str = "fresh", max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
                 max_feedback_chars: int = DEFAULT_MAX_FEEDBACK_CHARS, **kwargs: Any):
        check_multiturn_options(max_turns=max_turns, credit=credit, core_history=core_history,
                                max_answer_chars=max_answer_chars, max_feedback_chars=max_feedback_chars)
        super().__init__(task, *args, **kwargs)
        self.episodes = EpisodeScorer(self.scorer, max_turns=max_turns, credit=credit, core_history=core_history,
                                      max_answer_chars=max_answer_chars, max_feedback_chars=max_feedback_chars,
                                      max_observation_chars=self.observation_space.max_length)
        self.max_turns = max_turns
        self.episode: Episode | None = None

    @property
    def credit(self) -> str:
        return self.episodes.credit

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        observation, info = super().reset(seed=seed, options=options)
        self.episode = self.episodes.start(self.problem)
        info.update(turn=1, max_turns=self.max_turns, feedback_split=self.episode.prepared.describe())
        return observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.episode is None:
            raise RuntimeError("call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(f"the action must be the guide's output text (str), got {type(action).__name__}")
        episode = self.episode
        if episode.done:
            raise RuntimeError(f"the episode ended after {len(episode.turns)} turn(s) "
                               f"({'solved' if episode.success else 'turns used up'}): call reset() for the next one")
        key = self._sample_key(action)
        sample_index = 0
        if key is not None:
            number = self.sample_counter.take(key)
            sample_index = key[0] * SAMPLES_PER_STREAM + number
        observation = episode.observation
        result = self.episodes.step(episode, action, sample_index)
        outcome = result.outcome
        if key is not None and result.error is not None:
            self.sample_counter.give_back(key, number)  # nothing was learnt from it: a retry asks again
        self.last_outcome = outcome
        info = outcome.info()
        turn_cost = info["cost"]
        episode_cost = episode.cost
        if result.turn is None:  # infrastructure: the turn did not happen; the episode stays where it was
            episode_cost = add_costs([episode_cost, outcome.cost])  # what the failed attempt spent still counts
        info["cost"] = episode_cost.as_dict()
        info["turn_cost"] = turn_cost
        if self.budget is not None:
            info["cost"]["budget"] = self.budget.status().as_dict()
        if outcome.parsed.structure_ok:
            info["core_sample_index"] = sample_index
        number_of_turn = episode.turn if result.turn is None else result.turn.number
        info.update(turn=number_of_turn, max_turns=self.max_turns, feedback_split=episode.prepared.describe(),
                    turns=[t.summary() for t in episode.turns])
        if result.turn is None:
            info["success"] = False
            return observation, 0.0, False, True, {k: v for k, v in info.items() if v is not None}
        turn = result.turn
        info["success"] = turn.success
        info["credit"] = {"rule": self.credit, "reward": turn.reward, "turn_reward": turn.shaped,
                          "utility": turn.utility,
                          "previous_utility": episode.turns[-2].utility if len(episode.turns) > 1 else 0.0,
                          "cost_penalty": turn.cost_penalty, "episode_cost_penalty": sum(episode.cost_penalties),
                          "return": episode.episode_return}
        if turn.feedback is not None:
            info["feedback"] = turn.feedback.as_dict()
        terminated = turn.success
        truncated = episode.done and not turn.success
        next_observation = observation if episode.done else episode.observation
        return next_observation, float(turn.reward), terminated, truncated, \
            {k: v for k, v in info.items() if v is not None}

    def sibling(self, stream: int = 0) -> MultiTurnGCoPEnv:
        twin = super().sibling(stream)
        twin.episode = None
        return twin

    def render(self) -> str | None:
        text = super().render()
        if text is None or self.episode is None:
            return text
        return text + f"\nturn {len(self.episode.turns)}/{self.max_turns}" + (" (done)" if self.episode.done else "")
