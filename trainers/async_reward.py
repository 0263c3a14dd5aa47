"""The shaped reward as an ``async def`` TRL reward function, with a bound on steps in flight.

TRL 1.16's ``GRPOTrainer`` (and ``RLOOTrainer``) runs every async reward function on one event
loop in a daemon thread, all of a batch's async functions at once under ``asyncio.gather``, while
the training thread waits for them. :class:`AsyncShapedReward` gives a :class:`ShapedReward` (or
the TRL adapter's ``EnvironmentReward``) that form: the batch's steps are handed to a thread pool
of ``max_inflight`` workers (the scorer and the cores are thread-safe and blocking) and awaited,
so the loop stays free for the other reward functions of the batch while the core calls run.

The bound: at most ``max_inflight`` steps of this reward function are being scored at once. A
step makes its core call, then (once per problem) its unguided baseline, then its judge call, one
after the other, so with ``kappa = 0`` or a deterministic core (one baseline draw) that is also
the bound on core requests in flight; a sampled core's first step on a problem makes its
``baseline_samples`` draws at once. Each reward function object has its own pool, and each
``accelerate`` process its own objects: N processes put up to N × ``max_inflight`` steps in flight.

Everything else is the synchronous reward's, shared code: the same sample indices, the same
scorer calls, the same totals and ``gcop/*`` metrics, None for an infrastructure failure (TRL
leaves the completion out), and a :class:`~gcop_env.cores.base.FatalCoreError` that ends the run
(the steps not yet started are cancelled, the running ones finish first, nothing keeps calling
the API behind the error).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Sequence

from gcop_env.problem import Problem
from gcop_env.step.scoring import GuideScorer, StepOutcome
from gcop_env.trainers.grpo import RewardTotals, ShapedReward

DEFAULT_MAX_INFLIGHT = 16


class AsyncShapedReward:
    """``await reward(prompts=..., completions=..., task_id=...)``: the wrapped reward, scored concurrently.

    ``reward``: the synchronous :class:`ShapedReward` (or a subclass) whose batching, totals and
    logging are used. ``max_inflight``: steps scored at once by this function (its pool's threads).
    """

    __name__ = "gcop_shaped"  # TRL names the reward column after the function, as for the sync one

    def __init__(self, reward: ShapedReward, max_inflight: int = DEFAULT_MAX_INFLIGHT):
        if isinstance(max_inflight, bool) or not isinstance(max_inflight, int) or max_inflight < 1:
            raise ValueError(f"max_inflight must be an integer >= 1 (steps scored at once), got {max_inflight!r}")
        self.reward = reward
        self.max_inflight = max_inflight
        self._pool: ThreadPoolExecutor | None = None
        self._pool_guard = threading.Lock()

    @property
    def scorer(self) -> GuideScorer:
        return self.reward.scorer

    @property
    def totals(self) -> RewardTotals:
        return self.reward.totals

    def _executor(self) -> ThreadPoolExecutor:
        # one pool for the object's life: its worker count is the bound, whichever event loop awaits
        # (an asyncio.Semaphore would be tied to the first loop that waits on it)
        with self._pool_guard:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.max_inflight, thread_name_prefix="gcop-reward")
            return self._pool

    async def score(self, items: Sequence[tuple[Problem, str]], indices: Sequence[int]) -> list[StepOutcome]:
        """Score the steps on the pool, at most ``max_inflight`` at once; outcomes in input order."""
        if not items:
            return []
        pool = self._executor()
        futures: list[Future] = [pool.submit(self.reward.score_item, problem, text, index)
                                 for (problem, text), index in zip(items, indices)]
        waiting = [asyncio.wrap_future(f) for f in futures]
        try:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_EXCEPTION)
            errors = [w.exception() for w in done if not w.cancelled()]  # all read: none logged as unretrieved
            if any(e is not None for e in errors):
                # Like the sync path (Executor.map): the steps not started never start and the running
                # ones finish before the error leaves, so no core call outlives the end of the run.
                _cancel(futures, waiting)
                await _settle([f for f in futures if not f.cancelled()])
                raise next(f.exception() for f in futures  # the first failure in input order
                           if f.done() and not f.cancelled() and f.exception() is not None)
        except asyncio.CancelledError:  # the loop is shutting down: start nothing more
            _cancel(futures, waiting)
            raise
        return [w.result() for w in waiting]

    async def __call__(self, prompts: list, completions: list, task_id: list[str] | None = None,
                       log_metric: Callable[[str, float], None] | None = None,
                       log_extra: Callable[[str, list], None] | None = None, environments: list | None = None,
                       **_: Any) -> list[float | None]:
        items, indices = self.reward.batch(completions, task_id, environments)
        outcomes = await self.score(items, indices)
        return self.reward.record(items, indices, outcomes, log_metric, log_extra)

    def close(self) -> None:
        """Stop the pool's threads and close the scorer (its validator's sandboxes)."""
        with self._pool_guard:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        self.reward.close()

    # A pool does not pickle; a copy makes its own on first use.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_pool"] = None
        del state["_pool_guard"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pool_guard = threading.Lock()


def _cancel(futures: Sequence[Future], waiting: Sequence[asyncio.Future]) -> None:
    """Cancel the steps not started (at once: a wrapper's cancel reaches its step only later) and
    stop waiting on every wrapper; a running step cannot be cancelled and runs to its end."""
    for f in futures:
        f.cancel()
    for w in waiting:
        w.cancel()


async def _settle(futures: Sequence[Future]) -> None:
    """Wait for ``futures`` to finish, whatever their outcome (their errors are read by the caller)."""
    if futures:
        wrappers = [asyncio.wrap_future(f) for f in futures]
        await asyncio.wait(wrappers)
        for w in wrappers:
            if not w.cancelled():
                w.exception()  # read, so asyncio does not log it as never retrieved
