"""What one request needs from the limits: its estimated input tokens, its output reservation,
and the ticket an admitted request holds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


def estimate_input_tokens(request: Any) -> int:
    """An upper-leaning guess of a request's input tokens, before the server counts them.

    One token per three characters of system prompt and message text, plus 4 per message for the
    role markers. English prose runs about four characters per token and code about three, so this
    over-reserves a little; the reported usage replaces it after the call.
    """
    messages = getattr(request, "messages", ())
    chars = len(getattr(request, "system", "") or "") + sum(len(m.content) for m in messages)
    return math.ceil(chars / 3) + 4 * (len(messages) + 1)


@dataclass(frozen=True)
class Need:
    input_tokens: int = 0
    output_tokens: int = 0

    def amount(self, resource: str) -> float:
        if resource == "requests":
            return 1
        if resource == "tokens":
            return self.input_tokens + self.output_tokens
        return getattr(self, resource)

    @classmethod
    def of(cls, request: Any) -> "Need":
        sampling = getattr(request, "sampling", None)
        return cls(estimate_input_tokens(request), int(getattr(sampling, "max_tokens", 0) or 0))


@dataclass(frozen=True)
class Ticket:
    """An admitted request: what it booked, under which id in the ledger's pending requests."""

    id: str
    booked: dict[str, float]
