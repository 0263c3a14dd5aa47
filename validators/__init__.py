"""Validators: score a core's output for a problem.

A new task is a :class:`Validator` subclass plus :func:`gcop_env.register_task`.
"""

from gcop_env.validators.base import Status, ValidationResult, Validator

__all__ = ["Status", "ValidationResult", "Validator"]
