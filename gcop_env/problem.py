"""The one task item every stage passes along: a problem with its reference."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One problem of a task.

    ``task_id`` is stable across runs (cache keys and ``reset(options={"task_id": ...})`` use it).
    ``question`` is what the guide and the core read. ``reference`` is what the validator needs
    to score an answer (GSM8K: the gold number as a string; code: the tests). ``solution`` is a
    reference solution when the dataset has one (the curation teacher may see it; the guide and
    the core never do). ``metadata`` carries anything else from the row.
    """

    task_id: str
    question: str
    reference: Any
    solution: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
