r"""Reward and credit across the turns of a multi-turn episode.

Turn t (1-based) of an episode that ends after turn T is scored exactly as a single-turn step:
its own R_t, J_t and ΔR_t = R_t − E[r(y_0)] against the same unguided baseline, and its cost T_t:

    s_t = I_str,t · (R_t + β + γ·J_t − κ·max(0, −ΔR_t)) − λ·T_t        (today's shaped reward)
    u_t = s_t + λ·T_t                                                  (the turn's utility, before cost)
    c_t = λ·T_t                                                        (the turn's cost penalty)

A *credit rule* turns these into the reward the env returns for each step (ρ_t) and the credit
the trainer gives each turn's tokens (q_t):

=============== ================================================ ==================================
rule            env reward ρ_t                                   trainer credit q_t
=============== ================================================ ==================================
``improvement`` ρ_t = u_t − u_{t−1} − c_t  (u_0 = 0)             q_t = ρ_t
(default)       Σ_t ρ_t = u_T − Σ_t c_t                           (turn 1: exactly the single-turn s_1)
``final``       ρ_t = 0 for t < T,  ρ_T = u_T − Σ_t c_t          q_t = u_T − Σ_t c_t for every turn
``turn``        ρ_t = s_t                                         q_t = s_t
=============== ================================================ ==================================

``improvement`` (the default) credits each turn with what it added over the previous one, less
its own cost: a first turn is trained exactly as in single-turn GRPO, a revision that turns a
failure into a success earns the gain, a revision that makes things worse is pushed down. Its
return telescopes to the same episode value as ``final``: the last turn's utility minus every
turn's cost. ``final`` gives every turn the episode's value (a first turn shares in a later
success). ``turn`` is myopic and its return Σ s_t grows with the number of failed turns when
β + γ·J > 0 (each failed turn still earns its bonus), so it can pay a guide to fail slowly; use it
with β = γ = 0 or as a diagnostic. With λ = 0 a success on turn 1 and on turn 3 have the same
return under ``improvement`` and ``final``; λ > 0 (cost) is what makes an early success worth more.

With one turn every rule gives ρ_1 = q_1 = s_1: today's reward.

Group advantages (the bundled GRPO trainer, :func:`group_advantages`): ``final`` normalises the
episode values over the G episodes of a group, A_i = (q_i − mean)/(std + 1e-4), the same for every
turn; ``improvement`` and ``turn`` normalise turn t's credits over the episodes of the group that
reached turn t (a state-free baseline per depth). Episodes with an infrastructure failure are
left out of the statistics and get no advantage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CREDIT_RULES = ("improvement", "final", "turn")
DEFAULT_CREDIT = "improvement"
_EPS = 1e-4  # TRL's: advantages = (r − mean) / (std + 1e-4)


def check_credit(rule: str) -> str:
    if rule not in CREDIT_RULES:
        raise ValueError(f"credit must be one of {list(CREDIT_RULES)}, got {rule!r}")
    return rule


def step_reward(rule: str, shaped: Sequence[float], cost_penalties: Sequence[float], done: bool) -> float:
    """ρ_t for the latest turn t = len(shaped), given every turn's s and c so far and whether t is the last.

    Computed from s_t itself (not u_t − c_t) so that one turn gives s_1 exactly, bit for bit.
    """
    t = len(shaped)
    if t == 0 or len(cost_penalties) != t:
        raise ValueError("step_reward needs one shaped reward and one cost penalty per turn so far")
    if rule == "turn":
        return shaped[-1]
    if rule == "improvement":
        if t == 1:
            return shaped[0]
        previous_utility = shaped[-2] + cost_penalties[-2]
        return shaped[-1] - previous_utility
    if rule == "final":
        if not done:
            return 0.0
        earlier = sum(cost_penalties[:-1])
        return shaped[-1] - earlier if earlier else shaped[-1]
    raise ValueError(f"credit must be one of {list(CREDIT_RULES)}, got {rule!r}")


def turn_credits(rule: str, shaped: Sequence[float], cost_penalties: Sequence[float]) -> list[float]:
    """q_t for every turn of a finished episode (see the module doc)."""
    check_credit(rule)
    n = len(shaped)
    if rule == "final":
        value = step_reward("final", shaped, cost_penalties, done=True) if n else 0.0
        return [value] * n
    return [step_reward(rule, shaped[:t], cost_penalties[:t], done=t == n) for t in range(1, n + 1)]


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)  # unbiased, as torch.std
    return mean, math.sqrt(var)


def group_advantages(credits: Sequence[Sequence[float] | None], rule: str, scale: str = "group",
                     batch_std: dict[int, float] | None = None) -> list[list[float] | None]:
    """Per-turn advantages of one GRPO group's episodes (``None``: an unscored episode, left out).

    ``scale``: ``"group"`` divides by the group's std (+1e-4), ``"none"`` only centres,
    ``"batch"`` divides by ``batch_std`` (per turn index; the key 0 for ``final``).
    """
    check_credit(rule)
    if scale not in ("group", "none", "batch"):
        raise ValueError(f"scale must be 'group', 'none' or 'batch', got {scale!r}")
    out: list[list[float] | None] = [None if c is None else [0.0] * len(c) for c in credits]
    scored = [i for i, c in enumerate(credits) if c is not None and len(c) > 0]
    if not scored:
        return out
    if rule == "final":
        values = [credits[i][0] for i in scored]
        mean, std = _mean_std(values)
        if scale == "batch":
            std = (batch_std or {}).get(0, std)
        for i in scored:
            a = credits[i][0] - mean
            if scale != "none":
                a /= std + _EPS
            out[i] = [a] * len(credits[i])
        return out
    depth = max(len(credits[i]) for i in scored)
    for t in range(depth):
        members = [i for i in scored if len(credits[i]) > t]
        values = [credits[i][t] for i in members]
        mean, std = _mean_std(values)
        if scale == "batch":
            std = (batch_std or {}).get(t, std)
        for i in members:
            a = credits[i][t] - mean
            if scale != "none":
                a /= std + _EPS
            out[i][t] = a
    return out


def batch_stds(credits: Sequence[Sequence[float] | None], rule: str) -> dict[int, float]:
    """The std of the credits over a whole batch, per turn index (key 0 only for ``final``): ``scale="batch"``."""
    scored = [c for c in credits if c]
    if not scored:
        return {}
    if rule == "final":
        return {0: _mean_std([c[0] for c in scored])[1]}
    depth = max(len(c) for c in scored)
    return {t: _mean_std([c[t] for c in scored if len(c) > t])[1] for t in range(depth)}
