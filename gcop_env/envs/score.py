"""The public scoring call: score this guide text for this task id, from any thread or event loop.

What every adapter (TRL, GEM, SkyRL, verifiers, OpenEnv, TorchRL) uses, and what a user's own
loop can use without stepping a Gymnasium env::

    import gcop_env
    scoring = gcop_env.Scoring.make("GCoP-GSM8K-v0", core="anthropic:claude-haiku-4-5-20251001")
    score = scoring.score("gsm8k/test/0", guide_text)          # any thread
    score = await scoring.ascore("gsm8k/test/0", guide_text)   # any event loop
    score.reward, score.terms, score.status, score.info
    scoring.close()

A :class:`Score` is exactly what ``env.reset(options={"task_id": ...})`` then ``env.step(text)``
gives (the same reward and the same ``info``, by construction: it is that step), plus a
``status`` and ``reward=None`` for an infrastructure failure (an API or the sandbox failed: the
step is no task outcome and must not be learnt from as a 0).

Sharing. A :class:`Scoring` holds one set of parts: the problems, the scorer (validator, sandbox
pool, baseline table), the core (SDK client, response cache, rate limiter, budget) and the
sample counter. :meth:`Scoring.share` gives another handle on the same parts and
:meth:`Scoring.episode` a fresh Gymnasium env on them (its own problem, RNG and sample stream),
for one session or trajectory. Every handle and episode holds the parts (reference counts):
closing one never closes what another still uses, and the last close releases them.
:meth:`Scoring.shared` hands out handles on one process-wide ``Scoring`` per configuration.

Episodes and turns. Each call scores one guide reply on a fresh episode of the task. An episode
of several turns is an env from :meth:`Scoring.episode` (reset with the task id, then stepped
turn by turn), so a per-episode object already exists for consumers that need a history.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import gymnasium as gym

from gcop_env.envs.env import GCoPEnv
from gcop_env.problem import Problem
from gcop_env.step.prompts import guide_prompt
from gcop_env.step.scoring import StepOutcome

DEFAULT_MAX_INFLIGHT = 16

#: Score.status values besides the validator's (pass, fail, timeout, error, tampered, ...)
MALFORMED = "malformed"
INFRA = "infra"


@dataclass(frozen=True)
class Score:
    """One scored guide reply.

    Attributes:
        task_id: the problem.
        reward: the shaped reward; **None** when an API or the sandbox failed (``status == "infra"``).
        terms: every term of the shaped reward (``info["reward_components"]``: structure_ok,
            task_reward, bonus, judge_score, leak, unguided_reward, reward_delta, harm_penalty,
            cost, cost_penalty, shaped).
        status: ``"infra"`` (no task outcome), ``"malformed"`` (the structure check failed: reward
            0, no core call), else the validator's verdict (``"pass"``, ``"fail"``, ``"timeout"``,
            ``"error"``, ``"tampered"``).
        info: the step's whole ``info`` (cost, validation, strategy, core output, judge, ...), as
            ``env.step`` returns it.
        outcome: the scorer's :class:`~gcop_env.step.scoring.StepOutcome` (for in-process consumers).
    """

    task_id: str
    reward: float | None
    terms: dict[str, Any]
    status: str
    info: dict[str, Any]
    outcome: StepOutcome | None = field(default=None, repr=False, compare=False)

    @property
    def is_task_outcome(self) -> bool:
        """False when infrastructure failed: then ``reward`` is None and the step must be dropped."""
        return self.status != INFRA

    @property
    def error(self) -> str | None:
        return self.info.get("error")

    @property
    def error_stage(self) -> str | None:
        return self.info.get("error_stage")

    def metrics(self) -> dict[str, float]:
        """Numbers only, for libraries that keep float metrics: every term, ``cost_usd`` (nominal),
        ``spent_usd`` (paid), ``total_tokens`` and ``infra_error`` (1.0 for an infrastructure failure)."""
        out = {name: float(value) for name, value in self.terms.items() if isinstance(value, (bool, int, float))}
        cost = self.info.get("cost", {})
        out["cost_usd"] = float(cost.get("total_usd", 0.0))
        out["spent_usd"] = float(cost.get("total_spent_usd", 0.0))
        out["total_tokens"] = float(cost.get("total_tokens", 0))
        out["infra_error"] = float(not self.is_task_outcome)
        return out

    def jsonable_info(self) -> dict[str, Any]:
        """``info`` as plain JSON types (what a trace file or an HTTP response can carry)."""
        return json.loads(json.dumps(self.info, default=_json_default, ensure_ascii=False))


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    return repr(value)


def score_of(task_id: str, reward: float, info: dict[str, Any], outcome: StepOutcome | None = None) -> Score:
    """A :class:`Score` from one ``env.step``'s reward and info."""
    if info.get("reward_is_task_outcome", True) is False:
        status, value = INFRA, None
    elif not info.get("structure_ok", True):
        status, value = MALFORMED, float(reward)
    else:
        status, value = str(info.get("validation", {}).get("status", "scored")), float(reward)
    return Score(task_id=task_id, reward=value, terms=dict(info.get("reward_components", {})), status=status,
                 info=info, outcome=outcome)


class Scoring:
    """Thread-safe scoring of guide replies for the problems of one GCoP env (see the module doc).

    Args:
        env: a made GCoP env (``gym.make("GCoP-...")``, wrappers allowed). The handle shares its
            parts and holds them; the env stays the caller's to close.
        stream: the core sample stream of this handle's calls (when the core samples, a repeated
            (problem, strategy) gets a fresh sample; two streams draw different samples). Default 0.
        max_inflight: steps :meth:`ascore` / :meth:`ascore_many` run at once on this handle's threads.
    """

    def __init__(self, env: gym.Env, *, stream: int = 0, max_inflight: int = DEFAULT_MAX_INFLIGHT):
        base = env.unwrapped
        if not isinstance(base, GCoPEnv):
            raise TypeError(f"Scoring needs a GCoP env (gym.make('GCoP-...')), got {type(base).__name__}")
        if isinstance(max_inflight, bool) or not isinstance(max_inflight, int) or max_inflight < 1:
            raise ValueError(f"max_inflight must be an integer >= 1, got {max_inflight!r}")
        self._base = base.sibling(stream)  # this handle's hold on the parts
        self.stream = int(stream)
        self.max_inflight = max_inflight
        self._pool: ThreadPoolExecutor | None = None
        self._guard = threading.Lock()
        self._closed = False
        self._on_close: Callable[[], None] | None = None
        self._by_id = {p.task_id: p for p in base.problems}

    @classmethod
    def make(cls, env_id: str, *, stream: int = 0, max_inflight: int = DEFAULT_MAX_INFLIGHT,
             **make_kwargs: Any) -> Scoring:
        """A handle on a new env ``gym.make(env_id, **make_kwargs)``; closing it (and every share)
        closes the env's parts."""
        env = gym.make(env_id, **make_kwargs)
        try:
            return cls(env, stream=stream, max_inflight=max_inflight)
        finally:
            env.close()  # the handle holds the parts now; this releases the maker's own hold only

    @classmethod
    def shared(cls, env_id: str, *, stream: int = 0, max_inflight: int = DEFAULT_MAX_INFLIGHT,
               **make_kwargs: Any) -> Scoring:
        """A handle on this process's one :class:`Scoring` for ``(env_id, make_kwargs)``, made on
        first use. Handles of one configuration share problems, core, cache, sandboxes, baseline
        table and sample counter; when the last one is closed the parts are closed and the next
        call makes them anew. What SkyRL trajectories, GEM sub-envs, verifiers rollouts and OpenEnv
        sessions use."""
        key = _config_key(env_id, make_kwargs)
        with _registry_lock:
            entry = _registry.get(key)
            if entry is None:
                entry = _registry[key] = _Entry(cls.make(env_id, **make_kwargs))
            entry.handles += 1
            handle = entry.anchor.share(stream=stream, max_inflight=max_inflight)
        handle._on_close = lambda: _release_entry(key, entry)
        return handle

    # -- the problems and the shared parts ---------------------------------------------------------
    env_id = property(attrgetter("_base.task.env_id"), doc="The env id (``GCoP-GSM8K-v0``, ...).")
    problems = property(attrgetter("_base.problems"), doc="The split's problems, in order.")
    scorer = property(attrgetter("_base.scorer"), doc="The shared :class:`~gcop_env.step.scoring"
                       ".GuideScorer` (validator, reward weights, baseline table).")
    core = property(attrgetter("_base.core"), doc="The shared core (SDK client, response cache, rate limiter, budget).")

    @property
    def task_ids(self) -> list[str]:
        return [p.task_id for p in self._base.problems]

    def problem(self, task_id: str) -> Problem:
        """The problem with ``task_id`` (a KeyError naming close ids when there is none)."""
        try:
            return self._by_id[task_id]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(str(task_id), list(self._by_id), n=3)
            raise KeyError(f"unknown task_id {task_id!r} in {self.env_id} split {self._base.split!r}"
                           + (f"; close matches: {close}" if close else "")) from None

    def prompt(self, task_id: str) -> str:
        """The guide's prompt for the problem (the env's observation)."""
        return guide_prompt(self.problem(task_id).question)

    # -- scoring -----------------------------------------------------------------------------------
    def score(self, task_id: str, text: str) -> Score:
        """Score the guide reply ``text`` for the problem ``task_id``: one episode's step. Thread-safe.

        Never raises for an API or sandbox failure (``status == "infra"``, ``reward`` None). Raises
        KeyError for an unknown task id, TypeError for a ``text`` that is not a str, and
        :class:`~gcop_env.cores.base.FatalCoreError` for a permanent configuration error (a retired
        model, a bad key), which ends a run.
        """
        self._check_open()
        self.problem(task_id)  # the KeyError with close matches, before anything else
        if not isinstance(text, str):
            raise TypeError(f"the guide reply must be a str, got {type(text).__name__}")
        episode = self._base.sibling(self.stream)
        try:
            episode.reset(options={"task_id": task_id})
            _, reward, _, _, info = episode.step(text)
            return score_of(task_id, reward, info, episode.last_outcome)
        finally:
            episode.close()

    async def ascore(self, task_id: str, text: str) -> Score:
        """:meth:`score` awaited on this handle's threads (at most ``max_inflight`` at once); the
        event loop stays free while the core calls and the sandbox run."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), self.score, task_id, text)

    def score_many(self, items: Iterable[tuple[str, str]], max_workers: int | None = None) -> list[Score]:
        """Score (task_id, text) pairs concurrently; results in input order."""
        items = list(items)
        workers = min(max_workers or self.max_inflight, max(1, len(items)))
        if workers <= 1:
            return [self.score(task_id, text) for task_id, text in items]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gcop-score") as pool:
            return list(pool.map(lambda item: self.score(*item), items))

    async def ascore_many(self, items: Iterable[tuple[str, str]]) -> list[Score]:
        """:meth:`ascore` for (task_id, text) pairs, all awaited together; results in input order."""
        return list(await asyncio.gather(*(self.ascore(task_id, text) for task_id, text in items)))

    # -- handles and episodes ----------------------------------------------------------------------
    def episode(self, stream: int | None = None) -> GCoPEnv:
        """A fresh Gymnasium env on these parts (its own problem, RNG and sample ``stream``,
        default this handle's): one session or trajectory. Close it when done (it holds the parts)."""
        self._check_open()
        return self._base.sibling(self.stream if stream is None else stream)

    def share(self, *, stream: int | None = None, max_inflight: int | None = None) -> Scoring:
        """Another handle on the same parts (close each handle you take)."""
        self._check_open()
        return Scoring(self._base, stream=self.stream if stream is None else stream,
                       max_inflight=self.max_inflight if max_inflight is None else max_inflight)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release this handle (and stop its threads); the parts close with their last holder. Idempotent."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        self._base.close()
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> Scoring:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._by_id)} problems"
        return f"Scoring({self.env_id}, {state})"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Scoring handle is closed; take a new one (Scoring.make / share / shared)")

    def _executor(self) -> ThreadPoolExecutor:
        with self._guard:
            self._check_open()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.max_inflight, thread_name_prefix="gcop-ascore")
            return self._pool

    # Threads do not pickle; a copy makes its own pool, holds the parts it unpickled and is not registered.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_pool=None, _on_close=None)
        del state["_guard"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._guard = threading.Lock()


# -- the process-wide handles of Scoring.shared -----------------------------------------------------
@dataclass
class _Entry:
    anchor: Scoring
    handles: int = 0


_registry: dict[str, _Entry] = {}
_registry_lock = threading.Lock()


def _release_entry(key: str, entry: _Entry) -> None:
    with _registry_lock:
        entry.handles -= 1
        last = entry.handles <= 0 and _registry.get(key) is entry
        if last:
            del _registry[key]
    if last:
        entry.anchor.close()


def _config_key(env_id: str, make_kwargs: dict[str, Any]) -> str:
    # JSON values compare by value; anything else (a Core, a RetryPolicy object) by identity
    return json.dumps({"env_id": env_id, **make_kwargs}, sort_keys=True,
                      default=lambda v: f"<{type(v).__module__}.{type(v).__qualname__} at {id(v):#x}>")


_process: dict[str, Scoring] = {}
_process_lock = threading.Lock()


def process_scoring(env_id: str, *, stream: int = 0, **make_kwargs: Any) -> Scoring:
    """A :meth:`Scoring.shared` handle that this process keeps (one per configuration and stream):
    what adapters whose library makes and closes an env per trajectory use, so the problems, the
    core, its cache and the sandboxes are made once per process, not once per trajectory. Take
    episodes from it (:meth:`Scoring.episode`) and close those; :func:`close_process_scorings`
    releases the handles."""
    key = _config_key(env_id, {**make_kwargs, "__stream": stream})
    with _process_lock:
        handle = _process.get(key)
        if handle is None or handle.closed:
            handle = _process[key] = Scoring.shared(env_id, stream=stream, **make_kwargs)
        return handle


def close_process_scorings() -> None:
    """Close the handles :func:`process_scoring` keeps (the parts close with their last holder)."""
    with _process_lock:
        handles = list(_process.values())
        _process.clear()
    for handle in handles:
        handle.close()


def shared_handles() -> int:
    """Handles currently taken from :meth:`Scoring.shared`, over every configuration (for tests and leak checks)."""
    with _registry_lock:
        return sum(entry.handles for entry in _registry.values())

