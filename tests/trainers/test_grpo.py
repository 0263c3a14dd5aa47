"""GRPO's shaped reward function (trainers/grpo.py) on bad completions."""

from __future__ import annotations

import math

import pytest
from support import GOOD_GUIDE, SURROGATE_OUTPUTS

import gcop_env  # noqa: F401 - registers the envs
from gcop_env import RewardConfig


def test_one_surrogate_completion_does_not_crash_a_grpo_reward_batch(solver_server, gsm8k_dir):
    from gcop_env.trainers.grpo import ShapedReward

    from gcop_env import get_task, make_core
    from gcop_env.step.scoring import GuideScorer

    problems = get_task("GSM8K").load("test", data_files=str(gsm8k_dir))[:2]
    scorer = GuideScorer(get_task("GSM8K").validator(), make_core(f"openai:fake@{solver_server.openai_base_url}"),
                         reward=RewardConfig(beta=0.1, gamma=0.0, kappa=0.0))
    reward = ShapedReward(scorer, problems)
    completions = [[{"role": "assistant", "content": GOOD_GUIDE}], [{"role": "assistant", "content": SURROGATE_OUTPUTS[1]}],
                   [{"role": "assistant", "content": SURROGATE_OUTPUTS[3]}], [{"role": "assistant", "content": GOOD_GUIDE}]]
    ids = [problems[0].task_id, problems[0].task_id, problems[1].task_id, problems[1].task_id]
    rewards = reward(prompts=[None] * 4, completions=completions, task_id=ids)
    assert rewards[1] == 0.0 and rewards[2] == 0.0  # malformed, scored
    assert rewards[0] == pytest.approx(1.1) and rewards[3] == pytest.approx(1.1)
    assert all(r is not None and math.isfinite(r) for r in rewards)
