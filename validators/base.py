"""The validator contract: one method that scores a core output for a problem.

In the paper's notation a validator gives R, the task reward of the core's answer.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gcop_env.problem import Problem


class Status(str, enum.Enum):
    """Why a validation ended the way it did."""

    PASS = "pass"  # the answer is right / every test passed
    FAIL = "fail"  # a wrong answer / a failing test
    TIMEOUT = "timeout"  # the candidate ran out of time
    ERROR = "error"  # the candidate could not run (syntax error, import error, no answer)
    TAMPERED = "tampered"  # the candidate's code games the test harness (a reward hack): reward 0
    INFRA = "infra"  # the validator's own machinery failed: not a task outcome, never a 0


@dataclass(frozen=True)
class ValidationResult:
    """The score of one core output. ``reward`` is in [0, 1]."""

    reward: float
    status: Status
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.reward) <= 1.0:
            raise ValueError(f"reward must be in [0, 1], got {self.reward!r}")
        object.__setattr__(self, "status", Status(self.status))

    @property
    def is_infra(self) -> bool:
        """True when the result says nothing about the answer (the validator itself failed)."""
        return self.status is Status.INFRA

    @classmethod
    def infra(cls, message: str, **details: Any) -> "ValidationResult":
        return cls(reward=0.0, status=Status.INFRA, details={"error": message, **details})


class Validator(ABC):
    """Scores a core's output for one problem.

    Subclass it, implement :meth:`validate`, and register a task with
    :func:`gcop_env.register_task`. Optionally override :meth:`leaks` (a deterministic check
    that a strategy gives the answer away; it forces the judge score J to 0) and set
    ``answer_format`` to ``"math"`` (the core is asked for ``\\boxed{}``) or ``"code"`` (the core
    is asked for one fenced python block).
    """

    answer_format: ClassVar[str] = "math"

    @abstractmethod
    def validate(self, problem: Problem, output: str) -> ValidationResult:
        """Score ``output`` (the core's whole reply) for ``problem``."""

    def leaks(self, problem: Problem, strategy: str) -> bool:
        """True when ``strategy`` gives away the answer. Default: no deterministic check."""
        return False

    def close(self) -> None:
        """Release resources (sandbox pools). Called by ``env.close()``."""
