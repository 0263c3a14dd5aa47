"""The options every command that calls a core over an API shares, declared once.

:class:`CoreCallOptions` is a config dataclass (:mod:`gcop_env.utils.fields`) that the trainers'
configs and ``gcop eval``'s inherit: the response cache, retries, the timeout, the preflight and
the budget. :func:`core_from_options` builds a managed core from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gcop_env.cores import Core, make_core
from gcop_env.cores.retry import RetryPolicy
from gcop_env.utils.fields import option


@dataclass
class CoreCallOptions:
    """Options shared by every command that calls a core over an API."""

    cache: str | None = option(None, "response cache: a SQLite path, 'off' to disable, unset for the default "
                                   "($GCOP_CACHE_DIR/responses.sqlite). The cache is what makes re-runs free.")
    max_retries: int = option(6, "attempts per API call on transient failures (429, 529, 5xx, timeouts)", lo=1)
    retry_backoff_s: float = option(1.0, "first backoff between attempts in seconds (doubles each time, with jitter)",
                                  lo=0)
    timeout_s: float = option(120.0, "per-request timeout in seconds", lo=0, lo_open=True)
    preflight: bool = option(True, "before spending anything, make one tiny call per model spec (as `gcop check`) "
                                 "and stop on a retired model, a bad key or a refused sampling parameter; "
                                 "--no-preflight skips it")
    max_usd: float | None = option(None, "budget: stop paying for core calls (teacher, core, judge, baseline) at this "
                                       "many US dollars this run; cache hits are free. Finished work is saved and "
                                       "the command exits 4; re-run with a larger budget to resume", lo=0)
    max_total_tokens: int | None = option(None, "budget: stop paying for core calls at this many input + output "
                                              "tokens this run (exit 4, resumable like --max-usd)", lo=0)

    def cache_setting(self) -> Any:
        """``cache`` as :func:`~gcop_env.cores.make_core` takes it: None (the default cache), False
        (``off``, ``none``, ``false``, ``0``) or a path."""
        if not self.cache:
            return None
        return False if self.cache.lower() in ("off", "none", "false", "0") else self.cache

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.max_retries, initial_backoff_s=self.retry_backoff_s,
                           max_backoff_s=max(self.retry_backoff_s, 60.0))


def core_from_options(spec: str | Core, options: CoreCallOptions, budget: Any = None) -> Core:
    """A managed core (retries, pricing, cache) built from a command's API options, paying from
    ``budget`` (a :class:`gcop_env.cores.budget.Budget` shared by the run's cores) when one is given."""
    return make_core(spec, cache=options.cache_setting(), retry=options.retry_policy(), timeout_s=options.timeout_s,
                     budget=budget)
