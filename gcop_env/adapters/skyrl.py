"""SkyRL-gym: a GCoP environment as a ``BaseTextEnv`` (``skyrl_gym.make("gcop", env_config=..., extras=...)``).

SkyRL makes one env per trajectory with ``env_config`` (the ``skyrl_gym`` section of its config for
this env class) and ``extras`` (the dataset row's extra fields), calls ``init(prompt)`` and then
``step(guide_text)``. Here:

* ``env_config``: ``env_id`` (default ``GCoP-GSM8K-v0``), ``infra_policy`` / ``infra_retries`` /
  ``infra_backoff_s`` (see :class:`gcop_env.envs.wrappers.InfraAware`), and any ``gym.make`` kwarg
  (``core``, ``split``, reward weights, ``temperature``...).
* ``extras["task_id"]`` (or ``extras["extra_info"]["task_id"]``) picks the problem; ``init`` keeps
  the row's prompt, or builds the guide prompt when the row has none.
* ``step`` returns ``done=True`` with the shaped reward, no new observation, and the step's whole
  info as ``metadata``. With a multi-turn env (``env_id: GCoP-GSM8K-MultiTurn-v0`` or
  ``max_turns: N``) a failed turn returns ``done=False`` and the revision prompt as the next user
  message (SkyRL appends it to the chat), until the episode is solved or its turns are used up;
  ``max_turns`` is the env's. :meth:`get_metrics` gives the reward terms, cost and infra flag of
  the last turn (and ``turns``, ``success``) for SkyRL's per-environment metrics.

Trajectories with one config share the parts of one env per process (its problems, core, cache,
validator and sample counters: all thread-safe), through the public scoring call's process handle
(:func:`gcop_env.envs.score.process_scoring`): each trajectory is an episode of it
(:meth:`~gcop_env.envs.score.Scoring.episode`), so creating an env per trajectory costs nothing,
closing one releases only its own hold, and a GRPO group's identical strategies draw distinct core
samples. An infra-failed step (after
the retries) is masked: reward 0.0 with ``metadata["infra_masked"]`` and ``infra_error`` 1.0 in
the metrics; SkyRL has no per-sample mask, so watch ``infra_error`` or choose
``infra_policy="drop"``, which raises instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput

import gcop_env  # noqa: F401 - registers the Gymnasium environments
from gcop_env.envs.score import Scoring, process_scoring, score_of
from gcop_env.envs.wrappers import InfraAware, InfraPolicy

SKYRL_ENV_ID = "gcop"
_ADAPTER_KEYS = ("env_id", "infra_policy", "infra_retries", "infra_backoff_s")


def _plain(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if not isinstance(config, Mapping):  # an OmegaConf DictConfig
        from omegaconf import OmegaConf

        config = OmegaConf.to_container(config, resolve=True)
    config = dict(config)
    config.pop("env_class", None)  # SkyRL's own key
    return config


def shared_scoring(make_kwargs: dict[str, Any], env_id: str) -> Scoring:
    """The process's scoring handle for this configuration (made on first use)."""
    return process_scoring(env_id, **make_kwargs)


class SkyRLGuideEnv(BaseTextEnv):
    """One guide episode for SkyRL: ``init`` from ``extras["task_id"]``, one ``step`` (or up to
    ``max_turns`` with a multi-turn env), done."""

    def __init__(self, env_config: Any = None, extras: Mapping[str, Any] | None = None):
        super().__init__()
        config = _plain(env_config)
        extras = dict(extras or {})
        task_id = extras.get("task_id") or (extras.get("extra_info") or {}).get("task_id")
        if task_id is None:
            raise KeyError(f"extras has no 'task_id' (keys: {sorted(extras)}): give each dataset row the task_id of "
                           "its problem (gcop_env.adapters.skyrl.skyrl_dataset_rows builds such rows)")
        env_id = config.pop("env_id", "GCoP-GSM8K-v0")
        policy = InfraPolicy(config.pop("infra_policy", "retry"))
        retries = int(config.pop("infra_retries", 2))
        backoff_s = float(config.pop("infra_backoff_s", 1.0))
        # this trajectory's episode over the shared, thread-safe parts (problems, core, scorer, counters)
        self.episode = shared_scoring(config, env_id).episode()
        self.env = InfraAware(self.episode, policy=policy, retries=retries, backoff_s=backoff_s, then=InfraPolicy.MASK)
        self.task_id = task_id
        self.max_turns = int(getattr(self.episode, "max_turns", 1))
        self._info: dict[str, Any] | None = None

    def init(self, prompt: list[dict[str, str]] | None = None) -> tuple[list[dict[str, str]], dict[str, Any]]:
        observation, info = self.env.reset(options={"task_id": self.task_id})
        return (list(prompt) if prompt else [{"role": "user", "content": observation}]), info

    def step(self, action: str) -> BaseTextEnvStepOutput:
        self.turns += 1
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._info = info
        done = bool(terminated or truncated)
        observations = [] if done else [{"role": "user", "content": observation}]
        return BaseTextEnvStepOutput(observations=observations, reward=float(reward), done=done, metadata=info)

    def get_metrics(self) -> dict[str, Any]:
        """The episode's reward terms, cost (USD) and whether infrastructure failed (numbers only)."""
        if self._info is None:
            return {}
        metrics = score_of(self.task_id, 0.0, self._info).metrics()  # cost_usd: the episode's so far (every turn)
        metrics = {name: metrics[name] for name in metrics if name not in ("spent_usd", "total_tokens")}
        if "turn" in self._info:  # a multi-turn episode
            metrics["turns"] = float(self._info["turn"])
            metrics["success"] = float(bool(self._info.get("success")))
        return metrics

    def close(self) -> None:
        """Release this trajectory's episode; the process's shared parts stay for the others."""
        self.episode.close()


def register_skyrl_env(env_id: str = SKYRL_ENV_ID) -> str:
    """Register :class:`SkyRLGuideEnv` with skyrl_gym as ``env_id`` (idempotent); returns it."""
    from skyrl_gym.envs.registration import register, registry

    if env_id not in registry:
        register(id=env_id, entry_point=SkyRLGuideEnv)
    return env_id


def skyrl_dataset_rows(env: gym.Env | Scoring, env_class: str = SKYRL_ENV_ID) -> list[dict[str, Any]]:
    """SkyRL dataset rows for the problems of an env (or of a :class:`Scoring`): the guide prompt,
    ``env_class`` and ``task_id``."""
    from gcop_env.step.prompts import guide_prompt

    problems = env.problems if isinstance(env, Scoring) else env.unwrapped.problems
    return [{"prompt": [{"role": "user", "content": guide_prompt(p.question)}], "env_class": env_class,
             "task_id": p.task_id} for p in problems]
