"""Module names from before the re-layout (issue 19), still importable.

The package was regrouped into rooms by job (``cli/``, ``envs/``, ``step/``, ``cores/``,
``evaluation/``, ``utils/``). Code written against the old names keeps working: ``import
gcop_env.wrappers`` gives the module :mod:`gcop_env.envs.wrappers` itself (same object, same
classes), ``python -m gcop_env.trainers.cli grpo ...`` still runs, and a pickle that names an old
module still loads. A module that was split in two or more is a read-only view that looks a name up
in each of its new homes in turn. New code imports the new names; the import contracts in
``pyproject.toml`` keep product code off this table.

The table is also the map for rebasing a branch across the move: old name -> new name(s).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

MOVED: dict[str, str | tuple[str, ...]] = {
    "gcop_env.budget": ("gcop_env.cores.budget", "gcop_env.cli.budget", "gcop_env.cli.exit_codes"),
    "gcop_env.cache": "gcop_env.cores.cache",
    "gcop_env.check": ("gcop_env.cores.preflight", "gcop_env.cli.check"),
    "gcop_env.checks": "gcop_env.utils.numbers",
    "gcop_env.demo": "gcop_env.cli.demo",
    "gcop_env.env": "gcop_env.envs.env",
    "gcop_env.files": "gcop_env.utils.files",
    "gcop_env.interrupt": ("gcop_env.utils.interrupt", "gcop_env.cli.exit_codes"),
    "gcop_env.judge": "gcop_env.step.judge",
    "gcop_env.prompts": "gcop_env.step.prompts",
    "gcop_env.python_ast": "gcop_env.utils.python_ast",
    "gcop_env.reward": "gcop_env.step.reward",
    "gcop_env.scoring": "gcop_env.step.scoring",
    "gcop_env.spaces": "gcop_env.envs.spaces",
    "gcop_env.strategy": "gcop_env.step.strategy",
    "gcop_env.tasks": "gcop_env.envs.tasks",
    "gcop_env.usage": ("gcop_env.cli.args", "gcop_env.cli.exit_codes"),
    "gcop_env.vector": "gcop_env.envs.vector",
    "gcop_env.wrappers": "gcop_env.envs.wrappers",
    "gcop_env.evaluation.runner": ("gcop_env.evaluation.run", "gcop_env.evaluation.config",
                                   "gcop_env.evaluation.conditions", "gcop_env.evaluation.records",
                                   "gcop_env.evaluation.summary", "gcop_env.cli.eval", "gcop_env.cli.exit_codes"),
    "gcop_env.sandbox.cli": "gcop_env.cli.sandbox",
    "gcop_env.trainers.cli": "gcop_env.cli.train",
    "gcop_env.trainers.common": ("gcop_env.trainers.training", "gcop_env.cores.options", "gcop_env.utils.files"),
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers only for the old names (and only when no real module has that name)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=new if isinstance(new, str) else ", ".join(new))

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = MOVED[spec.name]
        if isinstance(new, str):
            module = importlib.import_module(new)
            self._real_specs[spec.name] = module.__spec__
            return module
        return _SplitModule(spec.name, new)

    def exec_module(self, module: types.ModuleType) -> None:
        # The import machinery stamped the alias's spec on the real module: give it its own back.
        real = self._real_specs.pop(getattr(module.__spec__, "name", ""), None)
        if real is not None:
            module.__spec__ = real

    def get_code(self, fullname: str) -> Any:
        """For ``python -m OLD.NAME``: the code of the module it moved to."""
        new = MOVED[fullname]
        if not isinstance(new, str):
            raise ImportError(f"{fullname} was split into {', '.join(new)}; run one of those")
        return importlib.util.find_spec(new).loader.get_code(new)

    def is_package(self, fullname: str) -> bool:
        return False

    _real_specs: dict[str, Any] = {}


class _SplitModule(types.ModuleType):
    """An old module whose names now live in several modules: looks each name up in turn."""

    def __init__(self, name: str, homes: tuple[str, ...]):
        super().__init__(name, f"Moved: the names of {name} now live in {', '.join(homes)}.")
        self._homes = homes

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        for home in self._homes:
            module = importlib.import_module(home)
            if hasattr(module, attr):
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} (moved to {', '.join(self._homes)}) has no attribute {attr!r}")


def install() -> None:
    """Add the finder once, after the real ones (a real module of an old name always wins)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
