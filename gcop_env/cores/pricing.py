"""USD per million tokens, by model: the table that turns token counts into the cost T.

The table is documented in the README and can be overridden: ``set_price("my-model", 0.1, 0.2)``,
the ``GCOP_PRICES`` environment variable (a JSON object ``{"model": [input, output]}``), or the
``prices=`` argument of :func:`gcop_env.make_core`. Lookup is by exact model name, then by a table
name followed by a date suffix (``claude-haiku-4-5-20251001``, ``gpt-4o-2024-08-06``) or
``-latest``; nothing looser, so a new model is never priced as an older one with a similar name.
Local backends (``hf:``) are free. A model that is not in the table is priced at 0, a warning is
logged once, and ``info["cost"]`` says ``priced: false``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading

from gcop_env.utils.environ import EnvVarError

log = logging.getLogger(__name__)

# (input, output) USD per million tokens; a 5-tuple (input, output, prompt_threshold, input_long,
# output_long) prices prompts over ``prompt_threshold`` input tokens at the long rates.
# Checked 2026-11-29: Anthropic https://platform.claude.com/docs/en/about-claude/pricing and the
# model pages; OpenAI https://developers.openai.com/api/docs/pricing and the model pages (GPT-5.x
# rows as listed there in 2026; GPT-4.x rows are the long-standing list prices). Retired models keep
# their last price so old cached runs still cost what they cost.
DEFAULT_PRICES: dict[str, tuple[float, ...]] = {
    # Anthropic, current
    "claude-fable-5-1": (10.00, 50.00),
    "claude-fable-5": (10.00, 50.00),
    "claude-opus-5-5": (4.00, 20.00),
    "claude-opus-5": (5.00, 25.00),
    "claude-opus-4-8": (5.00, 25.00),
    "claude-opus-4-7": (5.00, 25.00),
    "claude-opus-4-6": (5.00, 25.00),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-sonnet-5-5": (2.00, 10.00),
    "claude-sonnet-5": (2.00, 10.00),
    "claude-sonnet-4-6": (3.00, 15.00),
    "claude-sonnet-4-5": (3.00, 15.00),  # deprecated, retires 2026-11-30
    "claude-haiku-5-5": (0.10, 0.50, 100_000, 0.50, 2.50),  # prompts over 100k tokens bill at 5x
    "claude-haiku-4-5": (1.00, 5.00),
    # Anthropic, retired (last list prices)
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-0": (15.00, 75.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-haiku": (0.25, 1.25),
    # OpenAI
    "gpt-5.5": (5.00, 30.00),
    "gpt-5.5-pro": (30.00, 180.00),
    "gpt-5.4": (2.50, 15.00),
    "gpt-5.4-pro": (30.00, 180.00),
    "gpt-5.4-mini": (0.75, 4.50),
    "gpt-5.4-nano": (0.20, 1.25),
    "gpt-5.2": (1.75, 14.00),
    "gpt-5.1": (1.25, 10.00),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
}

# What may follow a table name in a dated model id.
_VERSION_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")

FREE_BACKENDS = frozenset({"hf"})

_lock = threading.Lock()
_overrides: dict[str, tuple[float, ...]] = {}


def _rate(value: object, what: str) -> float:
    """A price in USD per million tokens: a finite number >= 0 (a negative or NaN price would make
    every cost, and every dollar budget, wrong)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number of USD per million tokens >= 0, got {value!r}")
    return float(value)


def set_price(model: str, input_per_mtok: float, output_per_mtok: float) -> None:
    """Override (or add) the price of ``model`` (exact name, or the name before a date suffix) for this process."""
    prices = (_rate(input_per_mtok, f"the input price of {model}"), _rate(output_per_mtok, f"the output price of {model}"))
    with _lock:
        _overrides[model] = prices


def _env_prices() -> dict[str, tuple[float, float]]:
    raw = os.environ.get("GCOP_PRICES")
    if not raw:
        return {}
    try:
        table = json.loads(raw)
        if not isinstance(table, dict):
            raise TypeError(f"got a JSON {type(table).__name__}")
        prices = {}
        for k, v in table.items():
            if not isinstance(v, (list, tuple)) or len(v) != 2:
                raise ValueError(f"{k!r} has {v!r}, not [input, output]")
            prices[str(k)] = (_rate(v[0], f"{k}'s input price"), _rate(v[1], f"{k}'s output price"))
        return prices
    except (ValueError, TypeError) as exc:
        raise EnvVarError(
            f"GCOP_PRICES must be a JSON object like {{\"model\": [input_usd_per_mtok, output_usd_per_mtok]}} "
            f"with finite prices >= 0: {exc}"
        ) from None


def lookup_price(backend: str, model: str, extra: dict[str, tuple[float, ...]] | None = None) -> tuple[float, ...] | None:
    """USD per million tokens, (input, output) or the tiered 5-tuple; None when the model is not priced."""
    if backend in FREE_BACKENDS:
        return (0.0, 0.0)
    with _lock:
        tables = [extra or {}, dict(_overrides), _env_prices(), DEFAULT_PRICES]
    for table in tables:
        if model in table:
            return table[model]
    match = _VERSION_SUFFIX.search(model)
    if match:
        base = model[:match.start()]
        for table in tables:
            if base in table:
                return table[base]
    return None


_unpriced_warned: set[tuple[str, str]] = set()


def warn_unpriced(backend: str, model: str) -> None:
    """Log once per model that its cost is counted as 0 (cost figures are incomplete)."""
    with _lock:
        if (backend, model) in _unpriced_warned:
            return
        _unpriced_warned.add((backend, model))
    log.warning("no price known for %s:%s: its calls count as $0, so cost figures (and a cost term λ·T in "
                "USD) are incomplete; info['cost'] marks them priced=False. Set one with "
                "gcop_env.set_price(%r, input_usd_per_mtok, output_usd_per_mtok) or GCOP_PRICES.",
                backend, model, model)


def price_tokens(backend: str, model: str, input_tokens: int, output_tokens: int,
                 extra: dict[str, tuple[float, ...]] | None = None) -> tuple[float, bool]:
    """(cost in USD, whether the model was in the price table). Warns once for an unpriced model."""
    price = lookup_price(backend, model, extra)
    if price is None:
        warn_unpriced(backend, model)
        return 0.0, False
    in_rate, out_rate = price[0], price[1]
    if len(price) == 5 and input_tokens > price[2]:
        in_rate, out_rate = price[3], price[4]
    return (input_tokens * in_rate + output_tokens * out_rate) / 1e6, True
