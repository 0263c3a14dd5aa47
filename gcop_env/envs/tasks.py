"""The task registry: a task is a validator class plus a loader, registered as ``GCoP-<Name>-v<N>``.

Adding a task touches one file of yours::

    class MyValidator(gcop_env.Validator):
        def validate(self, problem, output): ...

    def load_my_task(split="test", data_files=None) -> list[gcop_env.Problem]: ...

    gcop_env.register_task("MyTask", validator=MyValidator, load=load_my_task)
    env = gym.make("GCoP-MyTask-v0", core="openai:my-model@http://127.0.0.1:8000/v1")

Keyword arguments of ``gym.make`` that the environment does not know are passed to the
validator class, so its ``__init__`` parameters become options of the env (e.g. ``sandbox=``).
"""

from __future__ import annotations

import difflib
import inspect
import re
from dataclasses import dataclass
from typing import Callable

import gymnasium as gym

from gcop_env.problem import Problem
from gcop_env.step.episode import DEFAULT_MAX_TURNS
from gcop_env.validators.base import Validator

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    env_id: str
    validator: Callable[..., Validator]
    load: Callable[..., list[Problem]]
    description: str = ""
    multiturn_env_id: str | None = None  # GCoP-<name>-MultiTurn-v<N>: the same task with max_turns=3

    def validator_options(self) -> set[str]:
        """Keyword arguments the validator class accepts."""
        try:
            params = inspect.signature(self.validator).parameters.values()
        except (TypeError, ValueError):
            return set()
        return {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"}


    def make_validator(self, options: dict | None = None) -> Validator:
        """The task's validator with ``options`` (``--validator-options``, the env's extra kwargs).

        An option the validator does not take, or a value its ``__init__`` refuses, is a
        :class:`ValidatorOptionsError` naming the task and the valid options, raised before any work
        (not a ``TypeError`` from deep inside a run)."""
        options = dict(options or {})
        try:
            params = inspect.signature(self.validator).parameters.values()
            open_ended = any(p.kind is p.VAR_KEYWORD for p in params)
        except (TypeError, ValueError):  # no signature to read: the validator decides
            open_ended = True
        known = self.validator_options()
        unknown = [] if open_ended else sorted(set(options) - known)
        if unknown:
            hints = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
            detail = ", ".join(f"{k!r}" + (f" (did you mean {v[0]!r}?)" if v else "") for k, v in hints.items())
            raise ValidatorOptionsError(f"the {self.name} validator takes no option {detail}; valid options: "
                                        f"{sorted(known) if known else 'none'}")
        try:
            return self.validator(**options)
        except (TypeError, ValueError) as exc:
            raise ValidatorOptionsError(f"the {self.name} validator refused the options {options}: {exc}") from None


class ValidatorOptionsError(ValueError):
    """Validator options a task's validator does not take (the message names the valid ones)."""


_TASKS: dict[str, TaskSpec] = {}


def register_task(name: str, *, validator: Callable[..., Validator], load: Callable[..., list[Problem]],
                  version: int = 0, description: str = "", overwrite: bool = False) -> str:
    """Register a task and its Gymnasium ids ``GCoP-<name>-v<version>`` (one turn; ``max_turns=N``
    for N turns) and ``GCoP-<name>-MultiTurn-v<version>`` (``max_turns=3``); returns the first id.

    ``validator``: a :class:`Validator` subclass (or factory) called with the env's extra kwargs.
    ``load``: ``load(split="test", data_files=None) -> list[Problem]``.
    """
    if not _NAME.match(name):
        raise ValueError(f"task name {name!r} must start with a letter and contain only letters, digits and _")
    key = name.lower()
    if key in _TASKS and not overwrite:
        raise ValueError(f"task {name!r} is already registered as {_TASKS[key].env_id}; pass overwrite=True to replace it")
    env_id = f"GCoP-{name}-v{version}"
    multiturn_id = f"GCoP-{name}-MultiTurn-v{version}"
    _TASKS[key] = TaskSpec(name=name, env_id=env_id, validator=validator, load=load, description=description,
                           multiturn_env_id=multiturn_id)
    # The entry point gives the single-turn GCoPEnv unless max_turns > 1 (gcop_env.envs.multiturn).
    # vector_entry_point: gym.make_vec(env_id, num_envs=N) steps N episodes on threads in one process
    for gym_id, kwargs in ((env_id, {"task": name}), (multiturn_id, {"task": name, "max_turns": DEFAULT_MAX_TURNS})):
        if gym_id in gym.registry:
            del gym.registry[gym_id]
        gym.register(id=gym_id, entry_point="gcop_env.envs.multiturn:make_env",
                     vector_entry_point="gcop_env.envs.vector:GCoPVectorEnv", kwargs=kwargs)
    return env_id


def get_task(name: str) -> TaskSpec:
    """The registered task called ``name`` (case-insensitive), or a KeyError naming the known ones."""
    try:
        return _TASKS[name.lower()]
    except KeyError:
        known = sorted(t.name for t in _TASKS.values())
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"unknown task {name!r}; registered tasks: {known}.{hint}") from None


def registered_tasks() -> list[TaskSpec]:
    return list(_TASKS.values())
