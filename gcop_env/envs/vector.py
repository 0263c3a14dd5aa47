"""The native vector env: N episodes in one process, stepped concurrently on threads.

``gym.make_vec("GCoP-GSM8K-v0", num_envs=16)`` (or ``vectorization_mode="vector_entry_point"``)
makes a :class:`GCoPVectorEnv`. A step of this env waits on the network (the core's API, the
judge, the sandbox), not on the CPU, so threads in one process overlap the calls as well as 16
processes do, and share what processes cannot: one scorer with its baseline table, one core with
its SDK client, response cache and in-flight de-duplication (and whatever limits the core
enforces), one validator with its sandbox pool, one sample counter. Gymnasium's ``"sync"`` mode
steps sub-envs one after another; ``"async"`` starts one process per sub-env, each with its own
copy of all of these.

Each episode is one step (one problem, one guide output). What the autoreset modes mean here
(``autoreset_mode=``, stored in ``metadata["autoreset_mode"]``):

* ``NextStep`` (the default, as in Gymnasium's sync and async envs): ``step`` scores every
  sub-env's guide output (terminated=True; the observation is the same prompt). The next ``step``
  starts a new episode in each finished sub-env instead: its action is ignored, reward 0.0,
  terminated False, the observation is the new prompt and ``info`` the reset's info. Every other
  call scores, so learners skip the steps that follow a termination.
* ``SameStep`` (the natural fit for one-step episodes): every ``step`` scores N guide outputs and
  returns the *next* problems' prompts; the scored step's info is under ``info["final_info"]``
  (its prompt under ``info["final_obs"]``), and the top level holds the new episodes' reset info.
* ``Disabled``: ``step`` scores; a finished sub-env must be reset with
  ``reset(options={"reset_mask": mask})`` before it is stepped again.

``info`` is a dict of arrays with a boolean ``_key`` mask per key (Gymnasium's vector
convention); nested dicts (``reward_components``, ``cost``) are batched key by key. Unlike
Gymnasium's incremental batching, an array's dtype is chosen from every sub-env's value: an
integer beside a float gives a float array, a None beside numbers an object array, so no value
is truncated or turned into NaN. An API or sandbox failure is per sub-env
(``info["reward_is_task_outcome"][i]`` False, ``info["error"][i]`` set); a
:class:`~gcop_env.cores.base.FatalCoreError` (dead model, bad key) is raised from ``step`` once
every sub-env's call has finished.

Seeding follows Gymnasium: ``reset(seed=s)`` seeds sub-env i with ``s + i``, which also picks its
core sample stream (see :mod:`gcop_env.envs.env`), so sub-envs draw different core samples.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from gcop_env.utils.numbers import check_int
from gcop_env.cores.base import FatalCoreError
from gcop_env.envs.env import GCoPEnv
from gcop_env.envs.multiturn import make_env

# Threads are cheap while they wait on sockets; the cap keeps a large num_envs from opening
# hundreds of connections at once (rate limits, not threads, should pace a big run).
DEFAULT_MAX_WORKERS = 64


class GCoPVectorEnv(VectorEnv):
    """``num_envs`` GCoP episodes stepped concurrently on up to ``max_workers`` threads.

    Args:
        task: registered task name (the env id sets it).
        num_envs: the number of sub-envs N.
        autoreset_mode: ``"NextStep"`` (default), ``"SameStep"`` or ``"Disabled"`` (see the module doc).
        max_workers: threads stepping sub-envs at once; default ``min(num_envs, 64)``.
        **env_kwargs: every keyword :class:`~gcop_env.envs.env.GCoPEnv` takes (core, split, cache, reward
            weights, validator options such as ``sandbox=``...), passed on unchanged; the env is built
            once and its sub-envs share its scorer, core and validator.
    """

    def __init__(self, task: str, num_envs: int = 1, *, autoreset_mode: str | AutoresetMode = AutoresetMode.NEXT_STEP,
                 max_workers: int | None = None, **env_kwargs: Any):
        check_int("num_envs", num_envs, lo=1)
        try:
            self.autoreset_mode = AutoresetMode(autoreset_mode)
        except ValueError:
            valid = [mode.value for mode in AutoresetMode]
            raise ValueError(f"autoreset_mode must be one of {valid} (or an AutoresetMode), got {autoreset_mode!r}") from None
        if max_workers is not None:
            check_int("max_workers", max_workers, lo=1)
        self.max_workers = max_workers or min(num_envs, DEFAULT_MAX_WORKERS)
        owner = make_env(task, **env_kwargs)  # the single-turn env, or a multi-turn one for max_turns > 1
        self.envs: list[GCoPEnv] = [owner] + [owner.sibling() for _ in range(num_envs - 1)]
        self.num_envs = num_envs
        self.single_observation_space = owner.observation_space
        self.single_action_space = owner.action_space
        self.observation_space = batch_space(owner.observation_space, num_envs)
        self.action_space = batch_space(owner.action_space, num_envs)
        self.metadata = {**GCoPEnv.metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = owner.render_mode
        self._executor: ThreadPoolExecutor | None = None
        self._observations: list[str | None] = [None] * num_envs
        self._started = np.zeros(num_envs, dtype=np.bool_)  # the sub-env has an episode (reset at least once)
        self._autoreset_envs = np.zeros(num_envs, dtype=np.bool_)  # the sub-env's episode is over

    # -- the shared parts, for users who want to see them -----------------------------------------
    @property
    def scorer(self):
        """The one :class:`~gcop_env.step.scoring.GuideScorer` every sub-env scores with."""
        return self.envs[0].scorer

    @property
    def core(self):
        """The one core (SDK client, response cache, retries) every sub-env calls."""
        return self.envs[0].core

    # -- Gymnasium's vector API ---------------------------------------------------------------
    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Reset the sub-envs (all, or those in ``options["reset_mask"]``); the other options go to
        every sub-env's reset (``task_id``/``index``). ``seed=s`` seeds sub-env i with ``s + i``."""
        self._check_open()
        seeds = self._seeds(seed)
        if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            super().reset(seed=int(seed))  # the vector env's own np_random, as Gymnasium's envs seed it
        options = dict(options or {})
        mask = np.ones(self.num_envs, dtype=np.bool_)
        if "reset_mask" in options:
            mask = _check_reset_mask(options.pop("reset_mask"), self.num_envs)
        infos: list[dict | None] = [None] * self.num_envs
        for i in np.flatnonzero(mask):
            self._observations[i], infos[i] = self.envs[i].reset(seed=seeds[i], options=dict(options))
        self._started |= mask
        self._autoreset_envs[mask] = False
        return tuple(self._observations), batch_infos(infos, self.num_envs)

    def step(self, actions: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Score the sub-envs' guide outputs concurrently; see the module doc for the autoreset modes."""
        self._check_open()
        actions = self._check_actions(actions)
        if not self._started.all():
            missing = np.flatnonzero(~self._started).tolist()
            raise RuntimeError(f"sub-env(s) {missing} have no episode: call reset() before step()")
        to_reset = np.zeros(self.num_envs, dtype=np.bool_)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            to_reset = self._autoreset_envs.copy()
        elif self.autoreset_mode == AutoresetMode.DISABLED and self._autoreset_envs.any():
            finished = np.flatnonzero(self._autoreset_envs).tolist()
            raise RuntimeError(f"sub-env(s) {finished} finished their episode and autoreset is disabled: reset them "
                               "with reset(options={'reset_mask': mask}) before stepping them again")
        stepped = [i for i in range(self.num_envs) if not to_reset[i]]
        results = self._step_concurrently([(i, actions[i]) for i in stepped])

        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminations = np.zeros(self.num_envs, dtype=np.bool_)
        truncations = np.zeros(self.num_envs, dtype=np.bool_)
        infos: list[dict | None] = [None] * self.num_envs
        for i in range(self.num_envs):
            if to_reset[i]:  # NextStep: this call starts the sub-env's next episode; its action is ignored
                self._observations[i], infos[i] = self.envs[i].reset()
                continue
            observation, rewards[i], terminations[i], truncations[i], info = results[i]
            if self.autoreset_mode == AutoresetMode.SAME_STEP and (terminations[i] or truncations[i]):
                next_observation, reset_info = self.envs[i].reset()
                info = {"final_obs": observation, "final_info": info, **reset_info}
                observation = next_observation
            self._observations[i], infos[i] = observation, info
        self._autoreset_envs = terminations | truncations
        return tuple(self._observations), rewards, terminations, truncations, batch_infos(infos, self.num_envs)

    def render(self) -> tuple[str | None, ...]:
        return tuple(env.render() for env in self.envs)

    # SyncVectorEnv's helpers, so code written for it runs here too
    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        values = (getattr(env, name) for env in self.envs)
        return tuple(value(*args, **kwargs) if callable(value) else value for value in values)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return tuple(getattr(env, name) for env in self.envs)

    def set_attr(self, name: str, values: Any) -> None:
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr needs one value per sub-env ({self.num_envs}), got {len(values)}")
        for env, value in zip(self.envs, values):
            setattr(env, name, value)

    def close_extras(self, **kwargs: Any) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for env in self.envs:  # siblings: each releases its hold, the last one closes the core and sandboxes
            env.close()

    # -- helpers --------------------------------------------------------------------------------
    def _step_concurrently(self, jobs: list[tuple[int, str]]) -> dict[int, tuple]:
        """Run ``envs[i].step(action)`` for each job on the thread pool; results by sub-env index.

        Every call is waited for before anything is raised, so no thread is left stepping an env
        the caller may reset. A FatalCoreError wins over other exceptions: it is the one that says
        the run cannot go on.
        """
        if len(jobs) <= 1 or self.max_workers == 1:
            return {i: self.envs[i].step(action) for i, action in jobs}
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="gcop-vector")
        futures: dict[int, Future] = {i: self._executor.submit(self.envs[i].step, action) for i, action in jobs}
        wait(futures.values())
        errors = [future.exception() for future in futures.values() if future.exception() is not None]
        if errors:
            raise next((e for e in errors if isinstance(e, FatalCoreError)), errors[0])
        return {i: future.result() for i, future in futures.items()}

    def _seeds(self, seed: Any) -> list[int | None]:
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = list(seed)
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset(seed=...) takes an int (sub-env i gets seed + i), None, or a list of "
                             f"{self.num_envs} seeds (one per sub-env); got a list of {len(seeds)}")
        return seeds

    def _check_actions(self, actions: Any) -> list[str]:
        if isinstance(actions, str):
            raise TypeError(f"step() takes one guide output per sub-env ({self.num_envs} strings), got a single str")
        actions = list(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"step() takes one guide output per sub-env: {self.num_envs} actions, got {len(actions)}")
        wrong = [(i, type(a).__name__) for i, a in enumerate(actions) if not isinstance(a, str)]
        if wrong:
            raise TypeError(f"every action must be the guide's output text (str); got {wrong[:5]} (index, type)")
        return actions

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("this vector env is closed; make a new one with gym.make_vec(...)")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_executor"] = None  # threads cannot be pickled; a copy starts its own pool on first step
        return state

    def __repr__(self) -> str:
        task = self.envs[0].task.env_id
        return f"GCoPVectorEnv({task}, num_envs={self.num_envs}, autoreset_mode={self.autoreset_mode.value})"


def _check_reset_mask(mask: Any, num_envs: int) -> np.ndarray:
    """Gymnasium's rules for ``options["reset_mask"]``, with what to pass instead."""
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (num_envs,):
        got = f"{type(mask).__name__}" + (f" {mask.dtype} {mask.shape}" if isinstance(mask, np.ndarray) else "")
        raise TypeError(f"options['reset_mask'] must be a NumPy bool array of shape ({num_envs},), got {got}")
    if not mask.any():
        raise ValueError("options['reset_mask'] selects no sub-env: set at least one True")
    return mask


def batch_infos(infos: Sequence[dict | None], num_envs: int) -> dict[str, Any]:
    """Sub-env infos (None: the sub-env has none this call) as one dict of arrays with ``_key`` masks.

    The layout is Gymnasium's (``VectorEnv._add_info``): nested dicts are batched recursively,
    ``final_obs`` is an object array. The dtype of each array is chosen from all values at once.
    """
    batched: dict[str, Any] = {}
    keys = list(dict.fromkeys(key for info in infos if info for key in info))
    for key in keys:
        present = [i for i, info in enumerate(infos) if info and key in info]
        values = [infos[i][key] for i in present]
        mask = np.zeros(num_envs, dtype=np.bool_)
        mask[present] = True
        if key != "final_obs" and all(isinstance(v, dict) for v in values):
            array: Any = batch_infos([info[key] if info and key in info else None for info in infos], num_envs)
        else:
            array = _empty_column(values, num_envs) if key != "final_obs" else np.full(num_envs, None, dtype=object)
            for i, value in zip(present, values):
                array[i] = value
        batched[key], batched[f"_{key}"] = array, mask
    return batched


def _empty_column(values: list[Any], num_envs: int) -> np.ndarray:
    """An array that holds every value exactly: bool, int64, float64, a stacked array, or objects."""
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return np.zeros(num_envs, dtype=np.bool_)
    if all(isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
        if all(-2**63 <= int(v) < 2**63 for v in values):
            return np.zeros(num_envs, dtype=np.int64)
    elif all(isinstance(v, (numbers.Real, np.floating)) and not isinstance(v, (bool, np.bool_)) for v in values):
        return np.zeros(num_envs, dtype=np.float64)
    elif all(isinstance(v, np.ndarray) for v in values) and len({(v.shape, v.dtype) for v in values}) == 1:
        return np.zeros((num_envs, *values[0].shape), dtype=values[0].dtype)
    return np.full(num_envs, None, dtype=object)
