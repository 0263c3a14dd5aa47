"""USD per million tokens, by model: the table that turns token counts into the cost T.

The table is documented in the README and can be overridden: ``set_price("my-model", 0.1, 0.2)``,
the ``GCOP_PRICES`` environment variable (a JSON object ``{"model": [input, output]}``), or the
``prices=`` argument of :func:`gcop_env.make_core`. Lookup is by exact model name, then by the
longest matching prefix. Local backends (``hf:``) are free. A model that is not in the table is
priced at 0 and its responses say ``priced=False`` in ``info["cost"]``.
"""

from __future__ import annotations

import json
import os
import threading

# (input, output) USD per million tokens. Prefixes match dated model ids.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-sonnet-4-5": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}

FREE_BACKENDS = frozenset({"hf"})

_lock = threading.Lock()
_overrides: dict[str, tuple[float, float]] = {}


def set_price(model: str, input_per_mtok: float, output_per_mtok: float) -> None:
    """Override (or add) the price of ``model`` (exact name or prefix) for this process."""
    with _lock:
        _overrides[model] = (float(input_per_mtok), float(output_per_mtok))


def _env_prices() -> dict[str, tuple[float, float]]:
    raw = os.environ.get("GCOP_PRICES")
    if not raw:
        return {}
    try:
        table = json.loads(raw)
        return {str(k): (float(v[0]), float(v[1])) for k, v in table.items()}
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(
            f"GCOP_PRICES must be a JSON object like {{\"model\": [input_usd_per_mtok, output_usd_per_mtok]}}: {exc}"
        ) from exc


def lookup_price(backend: str, model: str, extra: dict[str, tuple[float, float]] | None = None) -> tuple[float, float] | None:
    """(input, output) USD per million tokens, or None when the model is not priced."""
    if backend in FREE_BACKENDS:
        return (0.0, 0.0)
    with _lock:
        tables = [extra or {}, dict(_overrides), _env_prices(), DEFAULT_PRICES]
    for table in tables:
        if model in table:
            return table[model]
    for table in tables:
        best = max((k for k in table if model.startswith(k)), key=len, default=None)
        if best is not None:
            return table[best]
    return None


def price_tokens(backend: str, model: str, input_tokens: int, output_tokens: int,
                 extra: dict[str, tuple[float, float]] | None = None) -> tuple[float, bool]:
    """(cost in USD, whether the model was in the price table)."""
    price = lookup_price(backend, model, extra)
    if price is None:
        return 0.0, False
    return (input_tokens * price[0] + output_tokens * price[1]) / 1e6, True
