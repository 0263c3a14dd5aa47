"""A Gymnasium space for LLM text: any Unicode string up to a length.

Gymnasium's ``spaces.Text`` defaults to alphanumeric characters, so it rejects spaces,
punctuation and the tags the guide must write.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

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
