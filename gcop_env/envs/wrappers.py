"""Wrappers that keep infrastructure failures out of what a learner sees as task outcomes.

A step whose core API or sandbox failed has ``info["reward_is_task_outcome"] = False`` and a
reward of 0.0 only because Gymnasium needs a float. Libraries that know nothing of that flag
(``RecordEpisodeStatistics``, GEM's autoreset, SkyRL) would count it as a real 0. Wrap the env:

``InfraAware(env, policy=...)`` — the user chooses what an infra-failed step becomes:

==========  ==============================================================================
``retry``   step again on the same problem with the same action (the core sample is not used
            up, so a cached core answer or a sandbox re-run is reused), ``retries`` times with
            a doubling backoff; if every attempt fails, ``then`` decides (``mask`` or ``drop``)
``mask``    return the step with ``truncated=True, terminated=False`` (the episode was cut short
            outside the task, not ended by it), ``reward = masked_reward`` (0.0) and
            ``info["infra_masked"] = True``: a learner multiplies its loss by ``1 - infra_masked``
``drop``    raise :class:`InfraStepDropped` (holding the step's info): a loop that catches it
            skips the sample; use ``mask`` inside vector envs, where one exception stops them all
==========  ==============================================================================

``EpisodeStatistics(env)`` is ``RecordEpisodeStatistics`` that leaves infra-failed episodes out
of ``info["episode"]`` and of its return/length/time queues, and counts them in
``infra_episode_count``.

Vector envs: one-step episodes want Gymnasium's ``SAME_STEP`` autoreset, where every vector step
is a real step and each step's full info is kept under ``infos["final_info"]``::

    envs = gym.make_vec("GCoP-GSM8K-v0", num_envs=8, vectorization_mode="sync", core=...,
                        wrappers=[lambda e: EpisodeStatistics(InfraAware(e, policy="mask"))],
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})

With the default ``NEXT_STEP`` mode every other vector step only resets (reward 0, no info).
"""

from __future__ import annotations

import enum
import time
from typing import Any, SupportsFloat

import gymnasium as gym
from gymnasium.wrappers import RecordEpisodeStatistics

from gcop_env.utils.numbers import check_int, check_number


class InfraPolicy(str, enum.Enum):
    """What :class:`InfraAware` does with a step that failed for infrastructure reasons."""

    RETRY = "retry"
    MASK = "mask"
    DROP = "drop"


class InfraStepDropped(RuntimeError):
    """An infra-failed step that :class:`InfraAware` dropped; ``info`` is the failed step's info."""

    def __init__(self, info: dict[str, Any]):
        super().__init__(f"step dropped: {info.get('error_stage')} failed: {info.get('error')}")
        self.info = info


def is_infra_failure(info: dict[str, Any]) -> bool:
    """Whether a step's reward is not a task outcome (an API or sandbox failed)."""
    return info.get("reward_is_task_outcome", True) is False


class InfraAware(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Retries, masks or drops infra-failed steps instead of reporting them as 0.0 (see the module doc).

    Args:
        policy: ``"retry"``, ``"mask"`` or ``"drop"`` (:class:`InfraPolicy`).
        retries: extra attempts of ``retry``. backoff_s: the first wait between attempts (doubles).
        then: what a step becomes when every retry failed: ``"mask"`` or ``"drop"``.
        masked_reward: the float a masked step carries (it is not a task outcome).
    """

    def __init__(self, env: gym.Env, policy: str | InfraPolicy = InfraPolicy.MASK, *, retries: int = 2,
                 backoff_s: float = 1.0, then: str | InfraPolicy = InfraPolicy.MASK, masked_reward: float = 0.0):
        gym.utils.RecordConstructorArgs.__init__(self, policy=str(InfraPolicy(policy).value), retries=retries,
                                                 backoff_s=backoff_s, then=str(InfraPolicy(then).value),
                                                 masked_reward=masked_reward)
        gym.Wrapper.__init__(self, env)
        self.policy = InfraPolicy(policy)
        self.then = InfraPolicy(then)
        if self.then is InfraPolicy.RETRY:
            raise ValueError("then= says what a step becomes after the retries: 'mask' or 'drop', not 'retry'")
        self.retries = check_int("InfraAware retries", retries, lo=0)
        self.backoff_s = check_number("InfraAware backoff_s", backoff_s, lo=0)
        self.masked_reward = check_number("InfraAware masked_reward", masked_reward)
        self.infra_failures = 0  # failed attempts seen, retried ones included
        self.masked_steps = 0
        self.dropped_steps = 0

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        result = self.env.step(action)
        attempts = 1
        if self.policy is InfraPolicy.RETRY:
            while is_infra_failure(result[4]) and attempts <= self.retries:
                self.infra_failures += 1
                time.sleep(self.backoff_s * 2 ** (attempts - 1))
                result = self.env.step(action)  # one problem per episode: the same problem again
                attempts += 1
        observation, reward, terminated, truncated, info = result
        info["infra_attempts"] = attempts
        if not is_infra_failure(info):
            return observation, reward, terminated, truncated, info
        self.infra_failures += 1
        final = self.then if self.policy is InfraPolicy.RETRY else self.policy
        if final is InfraPolicy.DROP:
            self.dropped_steps += 1
            raise InfraStepDropped(info)
        self.masked_steps += 1
        info["infra_masked"] = True
        return observation, self.masked_reward, False, True, info


class EpisodeStatistics(RecordEpisodeStatistics):
    """``RecordEpisodeStatistics`` over task outcomes only: infra-failed episodes are counted apart.

    ``info["episode"]`` (``r``, ``l``, ``t``) and the queues cover scored episodes;
    ``infra_episode_count`` counts the episodes left out.
    """

    def __init__(self, env: gym.Env, buffer_length: int = 100, stats_key: str = "episode"):
        super().__init__(env, buffer_length=buffer_length, stats_key=stats_key)
        self.infra_episode_count = 0
        self._episode_infra = False

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._episode_infra |= is_infra_failure(info)
        self.episode_returns += reward
        self.episode_lengths += 1
        if terminated or truncated:
            elapsed = round(time.perf_counter() - self.episode_start_time, 6)
            if self._episode_infra:
                self.infra_episode_count += 1
            else:
                info[self._stats_key] = {"r": self.episode_returns, "l": self.episode_lengths, "t": elapsed}
                self.time_queue.append(elapsed)
                self.return_queue.append(self.episode_returns)
                self.length_queue.append(self.episode_lengths)
                self.episode_count += 1
            self.episode_start_time = time.perf_counter()
            self.episode_returns, self.episode_lengths, self._episode_infra = 0.0, 0, False
        return observation, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self._episode_infra = False
        return super().reset(seed=seed, options=options)
