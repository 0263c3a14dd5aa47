"""A Gymnasium space for LLM text: any Unicode string up to a length.

Gymnasium's ``spaces.Text`` defaults to alphanumeric characters, so it rejects spaces,
punctuation and the tags the guide must write. The space registers Gymnasium's vector utilities
(shared memory, empty batches, concatenation), so ``gym.make_vec(..., vectorization_mode="async")``
works with its default ``shared_memory=True`` and every text comes back exactly.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import (concatenate, create_empty_array, create_shared_memory, read_from_shared_memory,
                                    write_to_shared_memory)

# What sample() draws from: printable ASCII, newlines, a few non-ASCII letters and symbols.
_SAMPLE_ALPHABET = [chr(c) for c in range(32, 127)] + list("\n\téüßçñ—…→∑πλ中文日本語")


class UnicodeText(spaces.Space[str]):
    """Any ``str`` of at most ``max_length`` characters (``min_length`` at least)."""

    def __init__(self, max_length: int, min_length: int = 0, seed: int | np.random.Generator | None = None):
        if min_length < 0 or max_length < min_length:
            raise ValueError(f"need 0 <= min_length <= max_length, got {min_length}, {max_length}")
        self.max_length = int(max_length)
        self.min_length = int(min_length)
        super().__init__(dtype=str, seed=seed)
        _register_if_torchrl_is_loaded()

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        length = int(self.np_random.integers(self.min_length, min(self.max_length, 256) + 1))
        idx = self.np_random.integers(0, len(_SAMPLE_ALPHABET), size=length)
        return "".join(_SAMPLE_ALPHABET[i] for i in idx)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    @property
    def is_np_flattenable(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"UnicodeText(max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, UnicodeText) and (other.min_length, other.max_length) == (self.min_length, self.max_length)


# -- Gymnasium's vector utilities ---------------------------------------------------------------
# A batch of UnicodeText is a tuple of str, as Gymnasium batches its own Text space. The async
# vector env's shared memory holds, per sub-env, a row of max_length + 1 int32: the text's length,
# then its code points (UTF-32, lone surrogates included, so any str the env returns comes back
# exactly). 16 sub-envs at the default 32,768 characters take 2 MiB.


class SharedTextBatch(Sequence):
    """The texts in a shared-memory buffer, decoded when read: a live view, like the NumPy view
    Gymnasium keeps for a Box (``AsyncVectorEnv`` reads its shared memory once, at start-up).

    Copying it (``AsyncVectorEnv(copy=True)``, the default, deep-copies every observation batch)
    or pickling it gives a plain tuple of str: a snapshot later steps do not change.
    """

    def __init__(self, space: UnicodeText, buffer: Any, n: int):
        self._space = space
        self._rows = np.frombuffer(buffer.get_obj(), dtype=np.int32).reshape(n, space.max_length + 1)

    def __len__(self) -> int:
        return self._rows.shape[0]

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        row = self._rows[index]
        length = int(row[0])
        return row[1:1 + length].astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, (tuple, list, SharedTextBatch)) and tuple(self) == tuple(other)

    def __hash__(self) -> int:  # mutable: like a list, not hashable
        raise TypeError("unhashable type: 'SharedTextBatch' (take tuple(batch) for a snapshot)")

    def __copy__(self) -> tuple[str, ...]:
        return tuple(self)

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)

    def __reduce__(self) -> tuple:
        return tuple, (tuple(self),)

    def __repr__(self) -> str:
        return f"SharedTextBatch({tuple(self)!r})"


@create_shared_memory.register(UnicodeText)
def _create_unicode_text_shared_memory(space: UnicodeText, n: int = 1, ctx: ModuleType = mp) -> Any:
    return ctx.Array(np.dtype(np.int32).char, n * (space.max_length + 1))


@read_from_shared_memory.register(UnicodeText)
def _read_unicode_text_from_shared_memory(space: UnicodeText, shared_memory: Any, n: int = 1) -> SharedTextBatch:
    return SharedTextBatch(space, shared_memory, n)


@write_to_shared_memory.register(UnicodeText)
def _write_unicode_text_to_shared_memory(space: UnicodeText, index: int, value: str, shared_memory: Any) -> None:
    if not isinstance(value, str) or len(value) > space.max_length:
        # a bug in the env, not the user's input: the env checks its observation's length first
        got = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise ValueError(f"{space!r} cannot hold this observation ({got}); it is not in the observation space")
    codes = np.frombuffer(value.encode("utf-32-le", "surrogatepass"), dtype="<u4")
    width = space.max_length + 1
    rows = np.frombuffer(shared_memory.get_obj(), dtype=np.int32)
    rows[index * width] = len(codes)
    rows[index * width + 1:index * width + 1 + len(codes)] = codes


@create_empty_array.register(UnicodeText)
def _create_empty_unicode_text_array(space: UnicodeText, n: int = 1, fn: Any = np.zeros) -> tuple[str, ...]:
    return tuple(" " * space.min_length for _ in range(n))  # the shortest texts in the space


@concatenate.register(UnicodeText)
def _concatenate_unicode_text(space: UnicodeText, items: Any, out: Any) -> tuple[str, ...]:
    return tuple(items)


# -- TorchRL --------------------------------------------------------------------------------------
# TorchRL's GymWrapper maps each Gymnasium space to a spec by a registry of conversions and knows no
# UnicodeText ("No conversion tool could be found ..."): a text is a NonTensor spec there, as for
# Gymnasium's own Text. Registered by gcop_env.adapters.torchrl, and by every new UnicodeText once
# TorchRL's Gym module is imported (so `GymEnv("GCoP-GSM8K-v0")` works after `import torchrl`).
_torchrl_registered = False


def register_torchrl_conversion() -> bool:
    """Teach TorchRL's ``GymWrapper`` the text space (idempotent); False when TorchRL is not installed."""
    global _torchrl_registered
    if _torchrl_registered:
        return True
    try:
        from torchrl.data import NonTensor
        from torchrl.envs.libs.gym import register_gym_spec_conversion
    except ImportError:
        return False

    @register_gym_spec_conversion(UnicodeText)
    def _unicode_text_to_non_tensor(spec: UnicodeText, dtype: Any = None, device: Any = None, **_: Any) -> Any:
        return NonTensor((), device=device, example_data="<strategy></strategy>")

    _torchrl_registered = True
    return True


def _register_if_torchrl_is_loaded() -> None:
    import sys

    if not _torchrl_registered and "torchrl.envs.libs.gym" in sys.modules:
        register_torchrl_conversion()

