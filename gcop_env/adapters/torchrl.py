"""TorchRL (0.14): a GCoP env as a TorchRL env, with the infra flag and the reward terms in the TensorDict.

TorchRL's ``GymWrapper`` maps Gymnasium spaces to specs through a registry that has no entry for
GCoP's text space; importing this module registers one (a ``NonTensor`` spec, as for
Gymnasium's ``Text``), and so does every GCoP env made after TorchRL's Gym module was imported.
``GymWrapper`` drops the step's ``info``: without a reader, an infrastructure failure would be a
plain reward of 0.0. :func:`make_torchrl_env` sets :class:`GCoPInfoReader`, which writes under
``("next", key)`` of each step:

=========================  ==================================================================
``reward_is_task_outcome``  bool; False when an API or the sandbox failed: drop the step
``infra_error``             bool, its negation
``status``                  pass / fail / timeout / error / tampered / malformed / infra
``task_id``                 the problem
every reward term           float32: structure_ok, task_reward, bonus, judge_score, leak,
                            reward_delta, harm_penalty, cost, cost_penalty, shaped
``cost_usd``                the step's nominal cost
=========================  ==================================================================

::

    from gcop_env.adapters.torchrl import make_torchrl_env
    env = make_torchrl_env("GCoP-GSM8K-v0", core="anthropic:claude-haiku-4-5-20251001")
    td = env.reset(); td["action"] = guide_text; td = env.step(td)
    keep = td["next", "reward_is_task_outcome"]

The env is an episode of the public scoring call's shared parts
(:meth:`gcop_env.envs.score.Scoring.episode`); closing it closes them.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data import Composite, NonTensor, Unbounded
from torchrl.envs.gym_like import BaseInfoDictReader
from torchrl.envs.libs.gym import GymWrapper

from gcop_env.envs.score import Scoring, score_of
from gcop_env.envs.spaces import register_torchrl_conversion

register_torchrl_conversion()

TERMS = ("structure_ok", "task_reward", "bonus", "judge_score", "leak", "reward_delta", "harm_penalty", "cost",
         "cost_penalty", "shaped")


class GCoPInfoReader(BaseInfoDictReader):
    """Writes the infra flag, the status and every reward term of a GCoP step into the TensorDict."""

    def __init__(self) -> None:
        numbers = {name: Unbounded((), dtype=torch.float32) for name in (*TERMS, "cost_usd")}
        flags = {name: Unbounded((), dtype=torch.bool) for name in ("reward_is_task_outcome", "infra_error")}
        text = {name: NonTensor((), example_data="") for name in ("status", "task_id")}
        self._info_spec = Composite({**numbers, **flags, **text}, shape=())

    def __call__(self, info_dict: dict[str, Any], tensordict: TensorDictBase) -> TensorDictBase:
        if "reward_components" not in info_dict:  # a reset: no step yet
            tensordict.set("reward_is_task_outcome", torch.tensor(True))
            tensordict.set("infra_error", torch.tensor(False))
            tensordict.set_non_tensor("status", "")
            tensordict.set_non_tensor("task_id", str(info_dict.get("task_id", "")))
            for name in (*TERMS, "cost_usd"):
                tensordict.set(name, torch.tensor(0.0))
            return tensordict
        score = score_of(str(info_dict.get("task_id", "")), 0.0, info_dict)
        ok = score.is_task_outcome
        tensordict.set("reward_is_task_outcome", torch.tensor(ok))
        tensordict.set("infra_error", torch.tensor(not ok))
        tensordict.set_non_tensor("status", score.status)
        tensordict.set_non_tensor("task_id", score.task_id)
        metrics = score.metrics()
        for name in (*TERMS, "cost_usd"):
            tensordict.set(name, torch.tensor(float(metrics.get(name, 0.0))))
        return tensordict

    def reset(self) -> None:
        """Nothing is learnt from the info: the spec is fixed."""

    @property
    def info_spec(self) -> Composite:
        return self._info_spec


def make_torchrl_env(env_id: str = "GCoP-GSM8K-v0", *, scoring: Scoring | None = None, **make_kwargs: Any) -> GymWrapper:
    """A TorchRL ``GymWrapper`` over an episode of ``scoring`` (else of a new ``Scoring.make(env_id, **make_kwargs)``),
    reading the infra flag and the reward terms into the TensorDict."""
    handle = scoring.share() if scoring is not None else Scoring.make(env_id, **make_kwargs)
    with handle:  # the episode holds the parts; this handle is no longer needed
        episode = handle.episode()
    env = GymWrapper(episode)
    env.set_info_dict_reader(GCoPInfoReader())
    return env
