"""Spend caps: stop paying for core calls at ``max_usd`` dollars or ``max_total_tokens`` tokens.

One :class:`Budget` is shared by every core of an env, a command or a trainer run (core, judge,
unguided baseline, teacher, an API guide): :class:`~gcop_env.cores.ManagedCore` asks it before
each real call. Cache hits and answers shared with an identical in-flight request cost nothing
and are never counted or refused.

Concurrency: reserve the worst case, settle the real price. Before a call is sent, its worst
case is reserved: the prompt's UTF-8 byte count plus a framing allowance (byte-level BPE
tokenizers never make more tokens than bytes) as input tokens, plus the request's ``max_tokens``
as output tokens, priced at the model's rates. A call starts only when what is spent, plus every
reservation in flight, plus its own worst case fits under the cap. When it does not fit only
because of calls in flight, the caller waits for them to settle (they usually cost far less than
their worst case); when it would not fit even alone, the budget is *exhausted*: the call raises
:class:`BudgetExceeded` without sending anything, and so does every later call. After the call,
the reservation is replaced by the real price and tokens. So N threads cannot overshoot by N
calls: the spend stays at or under the cap whenever the provider bills no more than the worst
case (the only way past it is a server reporting more tokens than the request could hold). A
call that was sent is always settled and its answer returned: a call already paid for is never
thrown away. Each attempt (a retry too) is reserved and settled on its own: an attempt the server
refused with an error (a 429, a 5xx, a timeout) is counted as free; an attempt it answered with a
malformed reply (no content, a token count that is not a count:
:class:`~gcop_env.cores.base.MalformedReply`) is counted at its worst case, since it may have been
billed and its usage cannot be trusted (a server reporting -100000 tokens never pays the cap back).

The price of that guarantee: a run stops when what is left cannot cover one more worst-case
call, so up to one worst-case call's cost of the cap can stay unused.

A :class:`BudgetExceeded` is a :class:`~gcop_env.cores.CoreError`: the step it hits is an
infrastructure error (``info["error_stage"] == "budget"``), never a wrong answer. The commands
(``gcop eval``, ``gcop curate``, ``gcop grpo``) then stop starting work, save everything
finished, print what was spent, the cap and the command that resumes with a larger budget, and
exit with status 4 (:mod:`gcop_env.cli.exit_codes`). A budget is per process and per invocation: a re-run starts a
new count, and the response cache plus each command's resume make the work already done free.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from gcop_env.cores.base import CallInterrupted, CoreError, CoreRequest, CoreResponse
from gcop_env.utils.interrupt import stop_signalled

# Tokens a provider adds around the text: the chat template's role markers per message and a
# few per request. Generous on purpose: the estimate must be an upper bound.
FRAMING_TOKENS_PER_MESSAGE = 8
FRAMING_TOKENS_PER_REQUEST = 16


def worst_case_input_tokens(request: CoreRequest) -> int:
    """An upper bound on the input tokens of ``request``: UTF-8 bytes plus the framing allowance."""
    text_bytes = len(request.system.encode("utf-8")) + sum(len(m.content.encode("utf-8")) for m in request.messages)
    return text_bytes + FRAMING_TOKENS_PER_MESSAGE * (len(request.messages) + bool(request.system)) \
        + FRAMING_TOKENS_PER_REQUEST


class UnpricedModel(ValueError):
    """``max_usd`` is set but a model has no price: its calls would count as $0 and the cap could not hold."""


class BudgetExceeded(CoreError):
    """The budget cannot pay for this call: nothing was sent. Every later call is refused too.

    A :class:`~gcop_env.cores.CoreError`, so a step reports it as an infrastructure error (stage
    ``"budget"``); commands stop on it and exit with status 4 (``EXIT_BUDGET``).
    """

    def __init__(self, message: str, status: "BudgetStatus | None" = None):
        super().__init__(message, transient=False, attempts=0, cause="budget")
        self.status = status  # the budget when the call was refused (None after unpickling)


@dataclass(frozen=True)
class BudgetStatus:
    """What a budget allows, what was spent on real calls, and what is left (None: no such cap)."""

    max_usd: float | None
    max_total_tokens: int | None
    spent_usd: float
    spent_tokens: int
    calls: int  # real calls settled
    refused: int  # calls refused since the budget ran out
    exhausted: bool
    refusal: str | None = None  # why the first call was refused: its worst case against what was left
    refused_call_usd: float = 0.0  # the worst case of that call
    refused_call_tokens: int = 0

    @property
    def left_usd(self) -> float | None:
        return None if self.max_usd is None else max(0.0, self.max_usd - self.spent_usd)

    @property
    def left_tokens(self) -> int | None:
        return None if self.max_total_tokens is None else max(0, self.max_total_tokens - self.spent_tokens)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(left_usd=self.left_usd, left_tokens=self.left_tokens)
        return d

    def describe(self) -> str:
        """e.g. ``$0.0480 of max_usd $0.0500 and 9,812 of max_total_tokens 10,000 tokens spent``."""
        parts = []
        if self.max_usd is not None:
            parts.append(f"${self.spent_usd:.4f} of max_usd ${self.max_usd:.4f}")
        if self.max_total_tokens is not None:
            parts.append(f"{self.spent_tokens:,} of max_total_tokens {self.max_total_tokens:,} tokens")
        if not parts:
            parts.append(f"${self.spent_usd:.4f} and {self.spent_tokens:,} tokens (no cap)")
        return " and ".join(parts) + f" spent on {self.calls} real call(s)"


class BudgetHold:
    """One call's reservation; :meth:`settle` it exactly once with the response (None: the call failed)."""

    def __init__(self, budget: "Budget", usd: float, tokens: int):
        self.budget = budget
        self.usd = usd
        self.tokens = tokens
        self._settled = False

    def settle(self, response: CoreResponse | None) -> None:
        if not self._settled:
            self._settled = True
            self.budget._settle(self, response)

    def settle_worst_case(self) -> None:
        """Settle a call the server answered with a malformed reply (it may have been billed, but its
        usage cannot be trusted): it is counted at the worst case reserved for it."""
        if not self._settled:
            self._settled = True
            self.budget._settle(self, None, worst_case=True)


class Budget:
    """A spend cap shared by the cores of one env, command or trainer run. Thread-safe.

    Args:
        max_usd: stop before the real calls' price would pass this many US dollars (None: no cap).
        max_total_tokens: stop before the real calls' input + output tokens would pass this (None: no cap).
    """

    def __init__(self, max_usd: float | None = None, max_total_tokens: int | None = None):
        if max_usd is not None:
            if isinstance(max_usd, bool) or not isinstance(max_usd, (int, float)) or not math.isfinite(max_usd) \
                    or max_usd < 0:
                raise ValueError(f"max_usd must be a finite number of US dollars >= 0 (or None for no cap), "
                                 f"got {max_usd!r}")
            max_usd = float(max_usd)
        if max_total_tokens is not None:
            if isinstance(max_total_tokens, bool) or not isinstance(max_total_tokens, int) or max_total_tokens < 0:
                raise ValueError(f"max_total_tokens must be an integer >= 0 (or None for no cap), "
                                 f"got {max_total_tokens!r}")
        self.max_usd = max_usd
        self.max_total_tokens = max_total_tokens
        self.spent_usd = 0.0
        self.spent_tokens = 0
        self.calls = 0
        self.refused = 0
        self._exhausted = False
        self._refusal: str | None = None
        self._refused_call = (0.0, 0)
        self._reserved_usd = 0.0
        self._reserved_tokens = 0
        self._cond = threading.Condition()

    @classmethod
    def from_limits(cls, max_usd: float | None, max_total_tokens: int | None) -> "Budget | None":
        """A budget when either cap is set, else None (no budget: nothing is checked)."""
        if max_usd is None and max_total_tokens is None:
            return None
        return cls(max_usd, max_total_tokens)

    # -- state -------------------------------------------------------------------------------
    @property
    def exhausted(self) -> bool:
        """True once a call was refused: every later call is refused as well."""
        return self._exhausted

    def status(self) -> BudgetStatus:
        with self._cond:
            return BudgetStatus(self.max_usd, self.max_total_tokens, self.spent_usd, self.spent_tokens, self.calls,
                                self.refused, self._exhausted, self._refusal, *self._refused_call)

    def check_priced(self, cores: Sequence[Any]) -> None:
        """Raise :class:`UnpricedModel` (a ValueError) when ``max_usd`` is set but a core's model has no price (it would count as $0)."""
        if self.max_usd is None:
            return
        for core in cores:
            is_priced = getattr(core, "is_priced", None)
            if callable(is_priced) and not is_priced():
                raise UnpricedModel(
                    f"max_usd is set but {core.spec} is not in the price table, so its calls would count as $0 and "
                    "the cap could not hold; set its price (gcop_env.set_price, GCOP_PRICES='{\"MODEL\": [IN, OUT]}' "
                    "in USD per million tokens) or cap tokens with max_total_tokens instead")

    # -- the call protocol (ManagedCore) -----------------------------------------------------------
    def reserve(self, core: Any, request: CoreRequest) -> BudgetHold:
        """Reserve the worst case of ``request`` on ``core`` (a ManagedCore), waiting for calls in
        flight when only they stand in the way. Raises :class:`BudgetExceeded` (nothing is sent)."""
        from gcop_env.cores.pricing import price_tokens

        tokens_in = worst_case_input_tokens(request)
        tokens = tokens_in + int(request.sampling.max_tokens)
        usd, _ = price_tokens(core.backend, core.model, tokens_in, int(request.sampling.max_tokens),
                              getattr(core, "prices", None))
        with self._cond:
            while True:
                if not self._exhausted:
                    if self._fits(usd, tokens, with_reserved=True):
                        self._reserved_usd += usd
                        self._reserved_tokens += tokens
                        return BudgetHold(self, usd, tokens)
                    if self._fits(usd, tokens, with_reserved=False):
                        if stop_signalled():  # the user's Ctrl-C / SIGTERM: do not wait on, nothing is sent
                            raise CallInterrupted(f"{core.spec}: stopped while waiting for the budget; nothing was sent")
                        self._cond.wait(timeout=0.25)  # calls in flight settle, usually well under their worst case
                        continue
                    self._exhausted = True
                    left = [f"${self.max_usd - self.spent_usd:.4f}" if self.max_usd is not None else None,
                            f"{self.max_total_tokens - self.spent_tokens:,} tokens"
                            if self.max_total_tokens is not None else None]
                    self._refusal = (f"a call to {core.spec} could cost up to ${usd:.4f} / {tokens:,} tokens (prompt "
                                     f"bytes + max_tokens {request.sampling.max_tokens}, at its price), more than "
                                     f"the {' / '.join(x for x in left if x)} left")
                    self._refused_call = (usd, tokens)
                self.refused += 1
                status = self.status()  # the condition's lock is re-entrant
                self._cond.notify_all()  # waiters re-check: the budget is exhausted for them too
                raise BudgetExceeded(f"budget exhausted: {status.describe()}; {self._refusal}, so no call is sent. "
                                     "Raise the budget to continue", status)

    def _fits(self, usd: float, tokens: int, *, with_reserved: bool) -> bool:
        spent_usd = self.spent_usd + (self._reserved_usd if with_reserved else 0.0)
        spent_tokens = self.spent_tokens + (self._reserved_tokens if with_reserved else 0)
        # a tiny tolerance so that float sums of exact prices do not refuse a call that fits to the cent
        usd_ok = self.max_usd is None or spent_usd + usd <= self.max_usd + 1e-12
        tokens_ok = self.max_total_tokens is None or spent_tokens + tokens <= self.max_total_tokens
        return usd_ok and tokens_ok

    def _settle(self, hold: BudgetHold, response: CoreResponse | None, worst_case: bool = False) -> None:
        with self._cond:
            self._reserved_usd = max(0.0, self._reserved_usd - hold.usd)
            self._reserved_tokens = max(0, self._reserved_tokens - hold.tokens)
            if worst_case:
                self.spent_usd += hold.usd
                self.spent_tokens += hold.tokens
                self.calls += 1
            elif response is not None:
                # CoreResponse holds only counts >= 0 and finite prices: nothing here pays the budget back
                self.spent_usd += response.cost_usd
                self.spent_tokens += response.input_tokens + response.output_tokens
                self.calls += 1
            self._cond.notify_all()

    # -- pickling: the counts travel, the lock is made afresh ------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        with self._cond:
            state = dict(self.__dict__)
        del state["_cond"]
        state["_reserved_usd"], state["_reserved_tokens"] = 0.0, 0  # in-flight calls belong to the original
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cond = threading.Condition()

    def __deepcopy__(self, memo: dict) -> "Budget":
        return self  # like a core: copies of an env (gym.make deep-copies kwargs) share one budget

    def __repr__(self) -> str:
        return f"Budget(max_usd={self.max_usd!r}, max_total_tokens={self.max_total_tokens!r})"


class StopOrBudget:
    """Stop starting work: the user's stop (Ctrl-C) or an exhausted budget, whichever comes first.

    Stands where a :class:`~gcop_env.utils.interrupt.StopRequest` is read (``requested``, ``grace_s``).
    After a budget stop the work in flight is awaited, not abandoned: every paid call it would
    make is refused at once, and what it finishes from the cache is saved.
    """

    def __init__(self, stop: Any, budget: Budget | None):
        self.stop = stop
        self.budget = budget

    @property
    def requested(self) -> bool:
        return bool(self.stop is not None and self.stop.requested) or self.budget_exhausted

    @property
    def budget_exhausted(self) -> bool:
        return self.budget is not None and self.budget.exhausted

    @property
    def stage(self) -> str:
        """Why work stops: ``"interrupted"`` (the user) or ``"budget"``."""
        return "interrupted" if self.stop is not None and self.stop.requested else "budget"

    @property
    def grace_s(self) -> float:
        return self.stop.grace_s if self.stop is not None and self.stop.requested else 3600.0
