"""The one task item every stage passes along: a problem with its reference."""

from __future__ import annotations

import hashlib
import json
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

    def fingerprint(self) -> str:
        """16 hex digits of SHA-256 over the question and the reference: what an answer to this
        problem was graded against. ``task_id`` is positional in many datasets, so a file edited in
        place keeps the ids and changes the problems; records carry this to tell (``problem_sha256``)."""
        try:
            payload = json.dumps([self.question, self.reference], sort_keys=True, ensure_ascii=False, default=str)
        except TypeError:  # keys of mixed types cannot be sorted
            payload = json.dumps([self.question, repr(self.reference)], ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()[:16]
