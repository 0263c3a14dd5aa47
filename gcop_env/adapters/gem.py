"""GEM (``gem-llm``): a GCoP environment as a ``gem.Env``, for ``gem.make`` / ``gem.make_vec``.

GEM's contract differs from Gymnasium's in three ways this adapter absorbs:

* ``gem.make_vec`` passes ``seed=`` (``seed + i`` for sub-env i) to every constructor. The seed
  seeds the first ``reset``: each sub-env gets its own problem order and its own core sample
  stream (see :mod:`gcop_env.envs.env`).
* GEM's vector envs autoreset in the same step and *replace* the step's info by the reset's. The
  reward survives in the reward array, but the reward terms, the cost and the infra flag would
  be lost: :meth:`GEMGuideEnv.reset` therefore returns the previous step's full info under
  ``info["final_info"]`` (and its reward under ``info["final_reward"]``), as Gymnasium does.
* A finished step returns GEM's ``TERMINAL_STATE`` observation, like GEM's own math envs. A
  multi-turn env (``max_turns=N`` or ``gcop:<Task>-MultiTurn``) returns the revision prompt while
  its episode goes on, and ``TERMINAL_STATE`` when it ends (solved, or turns used up).

Sub-envs of one configuration share one set of parts per process (problems, core, response cache,
sandbox pool, baseline table, sample counter) through the public scoring call's process handle
(:func:`gcop_env.envs.score.process_scoring`); each is an episode of it with its own problem, RNG
and sample stream, and closing one releases only its own hold.

Infrastructure failures go through :class:`gcop_env.envs.wrappers.InfraAware` (``infra_policy``,
default ``"retry"`` then mask): a masked step is ``truncated`` with ``info["infra_masked"]``
(under ``final_info`` after an autoreset), never a silent 0 outcome.

    import gem
    from gcop_env.adapters.gem import register_gem_envs
    register_gem_envs()                                # gcop:GSM8K, gcop:GSM8K-MultiTurn, gcop:KodCode, ...
    envs = gem.make_vec(["gcop:GSM8K"] * 8, seed=0, core="anthropic:claude-haiku-4-5-20251001")
"""

from __future__ import annotations

import logging
from typing import Any


def _import_gem_quietly() -> None:
    """Import GEM without its side effect on logging: ``gem/__init__`` calls ``logging.basicConfig``
    at INFO, which would print every HTTP request of every core call. The root logger's level and
    handlers are put back as they were (a script that imported GEM first keeps GEM's setting)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        import gem  # noqa: F401
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


_import_gem_quietly()

from gem.core import Env as GEMEnv  # noqa: E402
from gem.utils.constants import TERMINAL_STATE  # noqa: E402

import gcop_env  # noqa: F401 - registers the Gymnasium environments
from gcop_env.envs.score import process_scoring
from gcop_env.envs.tasks import registered_tasks
from gcop_env.envs.wrappers import InfraAware, InfraPolicy

GEM_NAMESPACE = "gcop"


class GEMGuideEnv(GEMEnv):
    """A GCoP env behind GEM's ``Env`` API (one problem per episode; one guide step, or up to
    ``max_turns`` with a multi-turn id or ``max_turns=N``).

    Args:
        gym_id: the Gymnasium id (``"GCoP-GSM8K-v0"``; GEM keeps ``env_id`` for its own id).
        seed: seeds the first reset (GEM passes it).
        infra_policy, infra_retries, infra_backoff_s: see :class:`~gcop_env.envs.wrappers.InfraAware`
            (after the retries a step is masked).
        **make_kwargs: ``gym.make`` keyword arguments (``core=``, ``split=``, reward weights, ...).
    """

    def __init__(self, gym_id: str = "GCoP-GSM8K-v0", seed: int = 0, *, infra_policy: str = "retry",
                 infra_retries: int = 2, infra_backoff_s: float = 1.0, **make_kwargs: Any):
        super().__init__()
        self.env_id = gym_id  # gem.make overwrites it with the GEM id
        self.seed = seed
        self._config = dict(gym_id=gym_id, infra_policy=infra_policy, infra_retries=infra_retries,
                            infra_backoff_s=infra_backoff_s, **make_kwargs)
        self.env = InfraAware(process_scoring(gym_id, **make_kwargs).episode(), policy=InfraPolicy(infra_policy),
                              retries=infra_retries, backoff_s=infra_backoff_s, then=InfraPolicy.MASK)
        self._seeded = False
        self._finished: tuple[float, dict[str, Any]] | None = None

    def reset(self, seed: int | None = None, idx: int | None = None,
              task_id: str | None = None) -> tuple[str, dict[str, Any]]:
        """A new episode: a random problem, or the one at ``idx`` or with ``task_id``."""
        super().reset(seed)  # GEM's contract: a given seed also seeds Python's and NumPy's global RNGs
        if seed is None and not self._seeded:
            seed = self.seed
        self._seeded = True
        options = {"index": idx} if idx is not None else ({"task_id": task_id} if task_id is not None else None)
        observation, info = self.env.reset(seed=seed, options=options)
        if self._finished is not None:  # GEM's autoreset keeps only this info: carry the finished step's
            info["final_reward"], info["final_info"] = self._finished
            self._finished = None
        return observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        if not (terminated or truncated):  # a multi-turn episode goes on: the revision prompt is next
            return observation, float(reward), terminated, truncated, info
        self._finished = (float(reward), info)
        return TERMINAL_STATE, float(reward), terminated, truncated, info

    def sample_random_action(self) -> str:
        return "<strategy>Work through the problem step by step.</strategy>"

    def spawn(self, same_state: bool = False, **kwargs: Any) -> "GEMGuideEnv":
        """A new env with this one's configuration (``kwargs`` override it); ``same_state`` keeps the problem."""
        config = {**self._config, "seed": self.seed, **kwargs}
        env = GEMGuideEnv(**config)
        if same_state and self.env.unwrapped.problem is not None:
            env.reset(task_id=self.env.unwrapped.problem.task_id)
        return env

    def close(self) -> None:
        self.env.close()


def register_gem_envs(namespace: str = GEM_NAMESPACE) -> list[str]:
    """Register every GCoP task with GEM as ``<namespace>:<Task>`` and ``<namespace>:<Task>-MultiTurn``;
    returns the ids (already registered ones are kept)."""
    from gem.envs.registration import ENV_REGISTRY, register

    ids = []
    for task in registered_tasks():
        for gem_id, gym_id in ((f"{namespace}:{task.name}", task.env_id),
                               (f"{namespace}:{task.name}-MultiTurn", task.multiturn_env_id)):
            if gym_id is None:
                continue
            if gem_id not in ENV_REGISTRY:
                register(gem_id, entry_point=GEMGuideEnv, gym_id=gym_id)
            ids.append(gem_id)
    return ids
