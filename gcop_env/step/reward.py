"""The shaped reward, term by term.

    shaped = I_str · (R + β + γ·J − κ·max(0, −ΔR)) − λ·T

========  ====================  ==========================================================
symbol    name here             meaning
========  ====================  ==========================================================
I_str     ``structure_ok``      the guide's output is one well-formed strategy block
R         ``task_reward``       validator reward of the guided core's answer, in [0, 1]
β         ``bonus``             structure bonus (``RewardConfig.beta``)
J         ``judge_score``       judge score of the strategy in [0, 1]; 0 when it leaks
ΔR        ``reward_delta``      R(guided) − E[r(y_0)], the unguided mean over baseline draws
κ·max(0, −ΔR)  ``harm_penalty`` penalise harm only: guidance that made the core worse
λ·T       ``cost_penalty``      inference cost T of the step (USD or tokens), weight λ
========  ====================  ==========================================================

T counts the guided core call and the judge call, the calls a deployed guide pays for. The
unguided baseline is a training aid (it only measures ΔR), so it is reported in ``info["cost"]``
but not part of T. A malformed output gets shaped = 0 and nothing is called, so T = 0 too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gcop_env.utils.numbers import check_number


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the shaped reward.

    Attributes:
        beta: structure bonus β, paid for every well-formed strategy.
        gamma: judge weight γ. 0 turns the judge off (no judge calls).
        kappa: harm weight κ on max(0, −ΔR). 0 turns the unguided baseline off (no baseline calls).
        lam: cost weight λ. The default 0 leaves cost out of the reward (it is still reported).
        cost_unit: what T counts: ``"usd"`` (nominal price of the guided core and judge calls; the
            unguided baseline is not part of T) or ``"tokens"`` (their tokens, in thousands).
    """

    beta: float = 0.1
    gamma: float = 0.2
    kappa: float = 0.5
    lam: float = 0.0
    cost_unit: str = "usd"

    def __post_init__(self) -> None:
        for name in ("beta", "gamma", "kappa", "lam"):  # finite: a NaN weight would make every reward NaN
            check_number(name, getattr(self, name), lo=0)
        if self.cost_unit not in ("usd", "tokens"):
            raise ValueError(f"cost_unit must be 'usd' or 'tokens', got {self.cost_unit!r}")


@dataclass(frozen=True)
class RewardComponents:
    """Every term of one step's shaped reward, for logging and for ``info``."""

    structure_ok: bool
    task_reward: float = 0.0
    bonus: float = 0.0
    judge_score: float = 0.0
    leak: bool = False
    unguided_reward: float | None = None
    reward_delta: float = 0.0
    harm_penalty: float = 0.0
    cost: float = 0.0
    cost_penalty: float = 0.0
    shaped: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def shape_reward(config: RewardConfig, *, structure_ok: bool, task_reward: float = 0.0,
                 judge_score: float = 0.0, leak: bool = False, unguided_reward: float | None = None,
                 cost: float = 0.0) -> RewardComponents:
    """Combine the terms. ``unguided_reward`` None means no baseline (ΔR taken as 0)."""
    if not structure_ok:
        return RewardComponents(structure_ok=False, cost=cost, cost_penalty=config.lam * cost,
                                shaped=0.0 - config.lam * cost)
    delta = 0.0 if unguided_reward is None else task_reward - unguided_reward
    harm = config.kappa * max(0.0, -delta)
    bonus = config.beta
    judge_term = config.gamma * judge_score
    cost_penalty = config.lam * cost
    shaped = (task_reward + bonus + judge_term - harm) - cost_penalty
    return RewardComponents(structure_ok=True, task_reward=task_reward, bonus=bonus, judge_score=judge_score,
                            leak=leak, unguided_reward=unguided_reward, reward_delta=delta, harm_penalty=harm,
                            cost=cost, cost_penalty=cost_penalty, shaped=shaped)
