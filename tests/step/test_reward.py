"""The shaped reward's weights: finite, non-negative numbers, refused otherwise."""

from __future__ import annotations

import pytest

from gcop_env import RewardConfig

NAN, INF = float("nan"), float("inf")


# -- numbers: finite and in range, everywhere ----------------------------------------------------
@pytest.mark.parametrize("name", ["beta", "gamma", "kappa", "lam"])
@pytest.mark.parametrize("value", [NAN, INF, -INF, -0.1, True, "0.1", None])
def test_reward_weights_must_be_finite_non_negative_numbers(name, value):
    with pytest.raises(ValueError, match=name):
        RewardConfig(**{name: value})
