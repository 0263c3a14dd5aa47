"""The trainers' configs: every field checked (type, finiteness, range) with the valid range in the error."""

from __future__ import annotations

import pytest
from gcop_env.trainers.config import CurateConfig, GRPORunConfig, SFTRunConfig

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("cls, field, value, valid", [
    (CurateConfig, "success_threshold", 2.0, "in [0, 1]"),
    (CurateConfig, "success_threshold", NAN, "finite"),
    (CurateConfig, "tau", -0.1, "in [0, 1]"),
    (CurateConfig, "k", 0, ">= 1"),
    (CurateConfig, "k", 2.5, "integer"),
    (CurateConfig, "eta", 0.0, "in (0, 1]"),
    (CurateConfig, "alpha", 1.0, "in (0, 1)"),
    (CurateConfig, "epsilon", INF, "finite"),
    (CurateConfig, "workers", 0, ">= 1"),
    (CurateConfig, "core_temperature", -1.0, "in [0, 2]"),
    (CurateConfig, "timeout_s", 0.0, "> 0"),
    (CurateConfig, "max_retries", 0, ">= 1"),
    (CurateConfig, "out", 3, "string"),
    (CurateConfig, "validator_options", "docker", "mapping"),
    (GRPORunConfig, "reward_beta", NAN, "finite"),
    (GRPORunConfig, "learning_rate", 0.0, "> 0"),
    (GRPORunConfig, "num_generations", 1, ">= 2"),
    (GRPORunConfig, "max_steps", 0, "-1"),
    (GRPORunConfig, "vllm_gpu_memory_utilization", 1.5, "in (0, 1]"),
    (GRPORunConfig, "use_vllm", "yes", "true or false"),
    (SFTRunConfig, "lora_dropout", 1.0, "in [0, 1)"),
    (SFTRunConfig, "min_q_hat", 1.5, "in [0, 1]"),
])
def test_config_fields_are_range_checked(cls, field, value, valid):
    with pytest.raises(ValueError, match=field) as info:
        cls(**{field: value})
    assert valid in str(info.value)


def test_defaults_of_every_config_are_valid():
    for cls in (CurateConfig, SFTRunConfig, GRPORunConfig):
        cls()
