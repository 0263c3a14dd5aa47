"""One multi-turn guide–core episode, without Gymnasium state: the path the env, the trainer and
``gcop eval --max-turns`` share.

    turn t: observation → guide text → GuideScorer.score (R_t, J_t, ΔR_t, T_t: a single-turn step)
            → success? the episode ends (terminated)
            → last turn? the episode ends (truncated)
            → else: feedback on the failure (gcop_env.step.feedback) → the revision observation

The first observation is the single-turn guide prompt. A later one is the revision prompt
(:func:`gcop_env.step.prompts.revision_prompt`): the problem, the previous strategy, the core's
answer to it (at most ``max_answer_chars``, head and tail kept) and the feedback (at most
``max_feedback_chars``); after a malformed reply, that reply (bounded) and why it was refused.
The core answers each turn afresh (``core_history="fresh"``, the default: the same prompt a
single-turn step sends) or with its previous attempt and the feedback in its prompt
(``"previous"``). Rewards per turn and the credit rules: :mod:`gcop_env.step.credit`.

An infrastructure failure (API, sandbox, the feedback run, the budget) does not advance the
episode: the turn can be stepped again, and nothing of it is recorded as a task outcome.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from gcop_env.problem import Problem
from gcop_env.step.credit import DEFAULT_CREDIT, check_credit, step_reward
from gcop_env.step.feedback import (
    DEFAULT_MAX_FEEDBACK_CHARS,
    Feedback,
    FeedbackSource,
    FeedbackUnavailable,
    TurnProblem,
    feedback_source_for,
    structure_feedback,
)
from gcop_env.step.prompts import (
    core_prompt_with_attempt,
    guide_prompt,
    revision_prompt,
)
from gcop_env.step.scoring import GuideScorer, RoleCost, StepCost, StepOutcome
from gcop_env.utils.numbers import check_int
from gcop_env.validators.base import Status

CORE_HISTORY = ("fresh", "previous")
DEFAULT_MAX_TURNS = 3  # of the registered multi-turn ids (GCoP-<Task>-MultiTurn-v0)
DEFAULT_MAX_ANSWER_CHARS = 2000
_MALFORMED_REPLY_CHARS = 1000


def bounded(text: str, limit: int) -> str:
    """``text`` (stripped) cut to at most ``limit`` characters, keeping its head and its tail.

    Idempotent: a bounded text is returned as it is, so a stored answer bounds the same way again.
    """
    text = (text or "").strip()
    if len(text) <= limit:
        return text
    marker = f"\n[… {len(text)} characters, {len(text) - limit} omitted …]\n"
    keep = max(0, limit - len(marker) - 20)  # the marker's own digits: the omitted count shrinks as keep grows
    head = keep // 2
    marker = f"\n[… {len(text) - keep} characters omitted …]\n"
    return text[:head] + marker + text[len(text) - (keep - head):]


def add_costs(costs: Sequence[StepCost]) -> StepCost:
    """The sum of several turns' costs, role by role (what ``info["cost"]`` shows for an episode)."""
    total = StepCost()
    for cost in costs:
        for role in ("core", "baseline", "judge"):
            mine, theirs = getattr(total, role), getattr(cost, role)
            for f in dataclasses.fields(RoleCost):
                if f.name == "priced":
                    mine.priced = mine.priced and theirs.priced
                else:
                    setattr(mine, f.name, getattr(mine, f.name) + getattr(theirs, f.name))
    return total


@dataclass
class Turn:
    """One scored turn: what the guide saw and wrote, the step's outcome, its reward terms."""

    number: int  # 1-based
    observation: str
    guide_text: str
    outcome: StepOutcome
    success: bool
    shaped: float  # s_t: the single-turn shaped reward of this turn
    cost_penalty: float  # c_t = λ·T_t
    reward: float  # ρ_t under the episode's credit rule
    feedback: Feedback | None = None  # written when the turn failed and another turn follows

    @property
    def utility(self) -> float:
        """u_t = s_t + c_t: the turn's shaped reward before its cost."""
        return self.shaped + self.cost_penalty

    def summary(self) -> dict[str, Any]:
        """A compact, JSON-ready record of the turn (``info["turns"]``, eval records)."""
        c = self.outcome.components
        validation = self.outcome.validation
        return {"turn": self.number, "structure_ok": c.structure_ok, "success": self.success,
                "status": validation.status.value if validation is not None else "malformed",
                "task_reward": c.task_reward, "judge_score": c.judge_score, "reward_delta": c.reward_delta,
                "harm_penalty": c.harm_penalty, "cost": c.cost, "cost_penalty": self.cost_penalty,
                "shaped": self.shaped, "utility": self.utility, "reward": self.reward,
                "cost_usd": self.outcome.cost.as_dict()["total_usd"],
                "feedback": self.feedback.as_dict() if self.feedback is not None else None}


@dataclass
class Episode:
    """The state of one episode: its problem, its turns so far, the observation the guide answers next."""

    problem: Problem
    prepared: TurnProblem
    max_turns: int
    observation: str
    turns: list[Turn] = field(default_factory=list)
    done: bool = False
    success: bool = False
    error: str | None = None  # set by run_episodes when an infrastructure failure stopped the episode

    @property
    def turn(self) -> int:
        """The number of the turn the guide answers next (1-based)."""
        return len(self.turns) + 1

    @property
    def shaped(self) -> list[float]:
        return [t.shaped for t in self.turns]

    @property
    def cost_penalties(self) -> list[float]:
        return [t.cost_penalty for t in self.turns]

    @property
    def cost(self) -> StepCost:
        """The cost of every turn so far, added up."""
        return add_costs([t.outcome.cost for t in self.turns])

    @property
    def episode_return(self) -> float:
        """Σ ρ_t so far."""
        return sum(t.reward for t in self.turns)

    def conversation(self) -> list[dict[str, str]]:
        """The guide's chat so far: each observation as a user message, each reply as an assistant
        message, ending with the observation to answer (when the episode is not over)."""
        messages: list[dict[str, str]] = []
        for t in self.turns:
            messages += [{"role": "user", "content": t.observation}, {"role": "assistant", "content": t.guide_text}]
        if not self.done:
            messages.append({"role": "user", "content": self.observation})
        return messages


@dataclass
class TurnResult:
    """What stepping an episode gave: the scored ``turn``, or (``turn`` None) an infrastructure error."""

    outcome: StepOutcome
    turn: Turn | None

    @property
    def error(self) -> str | None:
        return self.outcome.error

    @property
    def error_stage(self) -> str | None:
        return self.outcome.error_stage


class EpisodeScorer:
    """Runs multi-turn episodes over a :class:`GuideScorer` (thread-safe: the state is in :class:`Episode`).

    Args:
        scorer: the single-turn scorer each turn goes through (its reward weights, core, judge).
        max_turns: turns per episode (≥ 1).
        credit: the credit rule (:data:`gcop_env.step.credit.CREDIT_RULES`).
        core_history: ``"fresh"`` (the core answers each turn as a single-turn step) or
            ``"previous"`` (its prompt also holds its previous attempt and the feedback).
        max_answer_chars, max_feedback_chars: bounds of the core's answer and of the feedback in
            the revision observation.
        max_observation_chars: the observation's length limit (the answer, then the strategy,
            are cut further when a revision would exceed it).
        feedback: the task's :class:`~gcop_env.step.feedback.FeedbackSource` (default: by validator).
    """

    def __init__(self, scorer: GuideScorer, *, max_turns: int = DEFAULT_MAX_TURNS, credit: str = DEFAULT_CREDIT,
                 core_history: str = "fresh", max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
                 max_feedback_chars: int = DEFAULT_MAX_FEEDBACK_CHARS, max_observation_chars: int | None = None,
                 feedback: FeedbackSource | None = None):
        check_multiturn_options(max_turns=max_turns, credit=credit, core_history=core_history,
                                max_answer_chars=max_answer_chars, max_feedback_chars=max_feedback_chars)
        self.scorer = scorer
        self.max_turns = max_turns
        self.credit = credit
        self.core_history = core_history
        self.max_answer_chars = max_answer_chars
        self.max_observation_chars = max_observation_chars
        self.feedback = feedback or feedback_source_for(scorer.validator, max_feedback_chars)

    def start(self, problem: Problem) -> Episode:
        """A new episode on ``problem``; its first observation is the single-turn guide prompt."""
        return Episode(problem, self.feedback.prepare(problem), self.max_turns, guide_prompt(problem.question))

    def _core_prompt(self, episode: Episode) -> Any:
        if self.core_history != "previous" or not episode.turns:
            return None
        last = episode.turns[-1]
        if not last.outcome.parsed.structure_ok or last.feedback is None:
            return None  # the core was not called last turn: it has no attempt to see
        answer = bounded(last.outcome.core_output or "", self.max_answer_chars)
        question, fmt, text = episode.problem.question, self.scorer.validator.answer_format, last.feedback.text
        return lambda strategy: core_prompt_with_attempt(question, fmt, strategy, answer, text)

    def step(self, episode: Episode, guide_text: str, sample_index: int = 0) -> TurnResult:
        """Score the guide's reply to ``episode.observation``; advances the episode unless infrastructure failed."""
        if episode.done:
            raise RuntimeError(f"the episode on {episode.problem.task_id} is over ({len(episode.turns)} turn(s)); "
                               "start a new one")
        number = episode.turn
        outcome = self.scorer.score(episode.prepared.reward, guide_text, sample_index,
                                    core_prompt=self._core_prompt(episode))
        if outcome.error is not None:
            return TurnResult(outcome, None)
        validation = outcome.validation
        success = validation is not None and validation.status is Status.PASS and validation.reward >= 1.0
        last = success or number >= episode.max_turns
        feedback = None
        if not last:
            if not outcome.parsed.structure_ok:
                feedback = structure_feedback(outcome.parsed)
            else:
                try:
                    feedback = self.feedback.feedback(episode.prepared, outcome.core_output or "", validation)
                except FeedbackUnavailable as exc:
                    outcome.error, outcome.error_stage = str(exc), "feedback"
                    return TurnResult(outcome, None)
        shaped, penalty = outcome.components.shaped, outcome.components.cost_penalty
        reward = step_reward(self.credit, episode.shaped + [shaped], episode.cost_penalties + [penalty], done=last)
        turn = Turn(number, episode.observation, guide_text, outcome, success, shaped, penalty, reward, feedback)
        episode.turns.append(turn)
        episode.done, episode.success = last, success
        if not last:
            episode.observation = self.revision_observation(episode)
        return TurnResult(outcome, turn)

    def step_many(self, items: Sequence[tuple[Episode, str, int]], max_workers: int = 8) -> list[TurnResult]:
        """Step several episodes concurrently (core calls and sandbox runs overlap); results in order."""
        if len(items) <= 1 or max_workers <= 1:
            return [self.step(e, text, index) for e, text, index in items]
        with ThreadPoolExecutor(max_workers=min(max_workers, len(items))) as pool:
            return list(pool.map(lambda item: self.step(*item), items))

    def revision_observation(self, episode: Episode) -> str:
        """The observation after the episode's last (failed) turn, within ``max_observation_chars``."""
        last = episode.turns[-1]
        parsed = last.outcome.parsed
        text = revision_observation(episode.problem.question, episode.turn, episode.max_turns, last.feedback.text,
                                    last.guide_text, parsed.strategy if parsed.structure_ok else None,
                                    last.outcome.core_output, self.max_answer_chars, self.max_observation_chars)
        return text


def revision_observation(question: str, turn: int, max_turns: int, feedback: str, guide_text: str,
                         strategy: str | None, core_output: str | None,
                         max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS, max_observation_chars: int | None = None,
                         task_id: str = "") -> str:
    """The revision prompt for ``turn`` after a failed turn whose reply was ``guide_text``
    (``strategy`` None: the reply was malformed and ``core_output`` unused), bounded as the env
    bounds it; the answer, then the strategy, are cut further to fit ``max_observation_chars``.
    ``gcop sft`` builds its revision examples with it, so they read exactly like the env."""
    answer_limit = max_answer_chars
    text = ""
    for _ in range(3):
        if strategy is not None:
            text = revision_prompt(question, turn, max_turns, feedback, strategy=strategy,
                                   answer=bounded(core_output or "", answer_limit))
        else:
            text = revision_prompt(question, turn, max_turns, feedback,
                                   malformed_reply=bounded(guide_text, min(answer_limit, _MALFORMED_REPLY_CHARS)))
        if max_observation_chars is None or len(text) <= max_observation_chars:
            return text
        over = len(text) - max_observation_chars
        if answer_limit > 200:  # cut the answer first, then the strategy
            answer_limit = max(200, answer_limit - over - 100)
        elif strategy is not None:
            strategy = bounded(strategy, max(200, len(strategy) - over - 100))
    raise ValueError(f"problem {task_id}: the revision prompt needs {len(text)} characters, over "
                     f"max_observation_chars={max_observation_chars}; raise it")


def run_episodes(generate: Callable[[list[Episode]], list[Any]], scorer: EpisodeScorer, episodes: Sequence[Episode],
                 max_workers: int = 8, samples: Sequence[int] | None = None) -> list[tuple[Episode, list[TurnResult]]]:
    """Run started episodes (``scorer.start(problem)``) to their end with a guide, batched per turn.

    ``generate`` gets the running episodes (each one's :meth:`Episode.conversation` is what the guide
    reads) and returns one reply each: a string, or an exception (the guide failed: an
    infrastructure error). ``samples``: the core's sample index of each episode (default 0). An
    infrastructure failure stops its episode where it was (``episode.error`` set, ``done`` False).
    Returns each episode with the result of every step it took, in the problems' order.
    """
    indices = list(samples) if samples is not None else [0] * len(episodes)
    running = [(episode, [], index) for episode, index in zip(episodes, indices)]
    active = list(running)
    while active:
        replies = generate([episode for episode, _, _ in active])
        if len(replies) != len(active):
            raise ValueError(f"generate returned {len(replies)} replies for {len(active)} episodes")
        failed_guide = {i: reply for i, reply in enumerate(replies) if isinstance(reply, BaseException)}
        to_step = [(episode, reply, index) for i, ((episode, _, index), reply) in enumerate(zip(active, replies))
                   if i not in failed_guide]
        stepped = iter(scorer.step_many(to_step, max_workers=max_workers))
        for i, (episode, results, _) in enumerate(active):
            if i in failed_guide:
                episode.error = f"guide: {failed_guide[i]}"
                continue
            result = next(stepped)
            results.append(result)
            if result.error is not None:
                episode.error = f"{result.error_stage}: {result.error}"
        active = [item for item in active if not item[0].done and item[0].error is None]
    return [(episode, results) for episode, results, _ in running]


def check_multiturn_options(*, max_turns: Any, credit: Any, core_history: Any, max_answer_chars: Any,
                            max_feedback_chars: Any) -> None:
    """Every multi-turn option in range: a clear ValueError naming it, before anything is loaded."""
    check_int("max_turns", max_turns, lo=1)
    check_credit(credit)
    if core_history not in CORE_HISTORY:
        raise ValueError(f"core_history must be one of {list(CORE_HISTORY)}, got {core_history!r}")
    check_int("max_answer_chars", max_answer_chars, lo=200)
    check_int("max_feedback_chars", max_feedback_chars, lo=200)
