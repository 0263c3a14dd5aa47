"""Confidence intervals and paired tests against values computed by hand (and scipy when present)."""

import math

import pytest

from gcop_env.evaluation.stats import mcnemar_exact, paired_bootstrap, wilson_interval


def _pairs(both, only_a, only_b, neither):
    """Paired outcomes (baseline, treatment) with the given 2x2 table, interleaved."""
    rows = [(True, True)] * both + [(True, False)] * only_a + [(False, True)] * only_b + [(False, False)] * neither
    rows = rows[::2] + rows[1::2]  # order must not matter
    return [a for a, _ in rows], [b for _, b in rows]


@pytest.mark.parametrize("successes,n,expected", [
    # Textbook Wilson 95% intervals (e.g. Newcombe 1998, Table I; and by hand from the formula).
    (3, 10, (0.1078, 0.6032)),
    (0, 10, (0.0, 0.2775)),
    (10, 10, (0.7225, 1.0)),
    (81, 263, (0.2553, 0.3662)),
])
def test_wilson_interval_matches_known_values(successes, n, expected):
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(expected[0], abs=5e-5)
    assert hi == pytest.approx(expected[1], abs=5e-5)


def test_wilson_interval_edges_and_bad_input():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(2.5, 5)  # fractional successes (mean of rates) are allowed
    assert lo < 0.5 < hi and hi - 0.5 == pytest.approx(0.5 - lo)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)
    with pytest.raises(ValueError, match="n must be"):
        wilson_interval(0, -1)


@pytest.mark.parametrize("only_a,only_b,expected", [
    (1, 9, 22 / 1024),      # 2 * (C(10,0) + C(10,1)) / 2^10
    (0, 6, 2 / 64),         # 2 * C(6,0) / 2^6
    (9, 1, 22 / 1024),      # symmetric
    (2, 3, 1.0),            # 2 * (1 + 5 + 10) / 32 = 1
    (5, 5, 1.0),
    (0, 0, 1.0),            # no discordant pairs: no evidence
    (3, 17, 2 * sum(math.comb(20, i) for i in range(4)) / 2**20),  # 0.002577...
])
def test_mcnemar_exact_p_values(only_a, only_b, expected):
    baseline, treatment = _pairs(both=7, only_a=only_a, only_b=only_b, neither=4)
    result = mcnemar_exact(baseline, treatment)
    assert (result.both, result.only_a, result.only_b, result.neither) == (7, only_a, only_b, 4)
    assert result.n_pairs == 11 + only_a + only_b
    assert result.p_value == pytest.approx(expected, rel=1e-12)


def test_mcnemar_agrees_with_scipy_binomtest():
    scipy_stats = pytest.importorskip("scipy.stats")
    for only_a, only_b in [(1, 9), (4, 11), (13, 20), (0, 1), (30, 12)]:
        baseline, treatment = _pairs(both=3, only_a=only_a, only_b=only_b, neither=2)
        expected = scipy_stats.binomtest(only_b, only_a + only_b, 0.5, alternative="two-sided").pvalue
        assert mcnemar_exact(baseline, treatment).p_value == pytest.approx(expected, rel=1e-9)


def test_mcnemar_rejects_unpaired_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        mcnemar_exact([True, False], [True])


def test_paired_bootstrap_difference_interval_and_p_value():
    # Treatment wins on 30 of 40 problems, never loses: a clear, paired improvement.
    baseline = [0.0] * 40
    treatment = [1.0] * 30 + [0.0] * 10
    result = paired_bootstrap(baseline, treatment, n_resamples=4000, seed=1)
    assert result.difference == pytest.approx(0.75)
    assert result.ci95[0] < 0.75 < result.ci95[1]
    # The normal approximation of the bootstrap distribution: sd = sqrt(p(1-p)/n) = 0.0685.
    assert result.ci95[0] == pytest.approx(0.75 - 1.96 * math.sqrt(0.75 * 0.25 / 40), abs=0.03)
    assert result.p_value < 0.001
    # Same seed, same answer; identical systems give no evidence of a difference.
    assert paired_bootstrap(baseline, treatment, n_resamples=4000, seed=1) == result
    same = paired_bootstrap([1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0], n_resamples=500)
    assert same.difference == 0.0 and same.p_value == 1.0


def test_paired_bootstrap_bad_input():
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap([1.0, 0.0], [1.0])
    with pytest.raises(ValueError, match="at least one pair"):
        paired_bootstrap([], [])
