"""Uncertainty for evaluation numbers: confidence intervals and paired significance tests.

An accuracy from 50 problems is not a number without its interval, and "the guide helps" is
not a finding until a paired test says the difference is unlikely under chance. Everything here
is exact or resampled from the data given; nothing depends on scipy.

- :func:`wilson_interval`: the Wilson score interval for a binomial proportion (well behaved at
  0 and n, unlike the normal "Wald" interval).
- :func:`mcnemar_exact`: McNemar's exact test on paired binary outcomes (two-sided binomial test
  on the discordant pairs), the test the report prints against the core-only run.
- :func:`paired_bootstrap`: a paired bootstrap of the mean difference with a percentile interval
  and a two-sided p-value, for non-binary scores or as a cross-check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for ``successes`` out of ``n`` (95% with the default ``z``).

    ``successes`` may be fractional (e.g. a mean of per-problem success rates times ``n``);
    the formula is the same. ``n == 0`` has no information: the interval is (0, 1).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = (z / denom) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clamp float dust (e.g. -1e-17) so the interval always lies in [0, 1] and contains p.
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test on paired binary outcomes of a baseline (A) and a treatment (B).

    ``only_a``: pairs where A succeeded and B failed; ``only_b``: B succeeded, A failed
    (the discordant pairs; concordant pairs carry no information about the difference).
    ``p_value`` is two-sided: 1.0 when there are no discordant pairs.
    """

    n_pairs: int
    both: int
    only_a: int
    only_b: int
    neither: int
    p_value: float

    @property
    def n_discordant(self) -> int:
        return self.only_a + self.only_b


def _binomial_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided binomial p-value for ``k`` successes out of ``n`` at p = 1/2.

    With p = 1/2 the distribution is symmetric, so the "as or less likely" p-value equals
    2 * P(X <= min(k, n - k)), capped at 1. Summed with exact integers (no float underflow).
    """
    if n == 0:
        return 1.0
    m = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(m + 1))
    return min(1.0, 2 * tail / 2**n)


def mcnemar_exact(baseline: Sequence[bool], treatment: Sequence[bool]) -> McNemarResult:
    """McNemar's exact test: were ``baseline`` and ``treatment`` equally likely to succeed?

    The two sequences are paired by position (the same problems in the same order). Under the
    null hypothesis each discordant pair is equally likely to go either way, so ``only_b`` is
    Binomial(only_a + only_b, 1/2); the p-value is the exact two-sided binomial test.
    """
    if len(baseline) != len(treatment):
        raise ValueError(f"paired outcomes need equal lengths, got {len(baseline)} and {len(treatment)}")
    both = only_a = only_b = neither = 0
    for a, b in zip(baseline, treatment):
        a, b = bool(a), bool(b)
        if a and b:
            both += 1
        elif a:
            only_a += 1
        elif b:
            only_b += 1
        else:
            neither += 1
    return McNemarResult(n_pairs=len(baseline), both=both, only_a=only_a, only_b=only_b, neither=neither,
                         p_value=_binomial_two_sided_half(only_b, only_a + only_b))


@dataclass(frozen=True)
class BootstrapResult:
    """A paired bootstrap of mean(treatment) - mean(baseline).

    ``ci95``: the 2.5 / 97.5 percentiles of the resampled differences. ``p_value``: two-sided,
    from the resampled differences centred on the observed one (the shift method):
    the fraction of |resampled - observed| >= |observed|, with the +1 correction so it is never 0.
    """

    n_pairs: int
    difference: float
    ci95: tuple[float, float]
    p_value: float
    n_resamples: int
    seed: int


def paired_bootstrap(baseline: Sequence[float], treatment: Sequence[float], *, n_resamples: int = 10_000,
                     seed: int = 0) -> BootstrapResult:
    """Paired bootstrap of the mean difference (treatment - baseline), deterministic for ``seed``."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(treatment, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores need two equal-length 1-D sequences, got shapes {a.shape} and {b.shape}")
    if len(a) == 0:
        raise ValueError("paired bootstrap needs at least one pair")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    diffs = b - a
    observed = float(diffs.mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diffs), size=(n_resamples, len(diffs)))
    resampled = diffs[idx].mean(axis=1)
    lo, hi = np.percentile(resampled, [2.5, 97.5])
    extreme = int(np.sum(np.abs(resampled - observed) >= abs(observed) - 1e-12))
    p_value = min(1.0, (extreme + 1) / (n_resamples + 1))
    return BootstrapResult(n_pairs=len(diffs), difference=observed, ci95=(float(lo), float(hi)),
                           p_value=float(p_value), n_resamples=n_resamples, seed=seed)
