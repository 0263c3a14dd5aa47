"""The code environments end to end: fake core over the OpenAI SDK, real validators and sandboxes."""

from __future__ import annotations

import gymnasium as gym
import pytest
from _sandbox_support import require_docker
from support import KODCODE_SAMPLE, solver_for
from fake_llm import FakeLLMServer, status
from gymnasium.utils.env_checker import check_env

from gcop_env import RetryPolicy, make_core
from gcop_env.validators.humaneval import load_humaneval
from gcop_env.validators.kodcode import load_kodcode

GUIDE = "<think>Edge cases first.</think><strategy>Handle empty input, then loop once and keep a running result.</strategy>"


@pytest.mark.parametrize("sandbox", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_kodcode_env_rewards_the_reference_solution(sandbox):
    if sandbox == "docker":
        require_docker()
    problems = load_kodcode("all", data_files=str(KODCODE_SAMPLE))[:6]
    broken = {problems[1].task_id}
    with FakeLLMServer(solver_for(problems, broken)) as server:
        env = gym.make("GCoP-KodCode-v0", core=f"openai:coder@{server.openai_base_url}", split="all",
                       data_files=str(KODCODE_SAMPLE), limit=6, sandbox=sandbox, beta=0.1, gamma=0.5, kappa=0.5)
        rewards = {}
        for p in problems:
            env.reset(options={"task_id": p.task_id})
            _, reward, _, _, info = env.step(GUIDE)
            assert info["reward_is_task_outcome"], info.get("error")
            rewards[p.task_id] = (reward, info)
        env.close()
    for task_id, (reward, info) in rewards.items():
        rc = info["reward_components"]
        assert rc["unguided_reward"] == 0.0 and rc["judge_score"] == pytest.approx(0.5)
        if task_id in broken:
            assert info["validation"]["status"] in ("fail", "error") and reward == pytest.approx(0.1 + 0.25)
        else:
            assert info["validation"]["status"] == "pass" and reward == pytest.approx(1.0 + 0.1 + 0.25)


def test_humaneval_env_offline_and_check_env():
    problems = load_humaneval("test")
    assert len(problems) == 164
    with FakeLLMServer(solver_for(problems[:3])) as server:
        env = gym.make("GCoP-HumanEval-v0", core=f"openai:coder@{server.openai_base_url}", sandbox="process",
                       gamma=0.0, kappa=0.0, limit=3)
        check_env(env.unwrapped)
        env.reset(options={"task_id": problems[0].task_id})
        _, reward, _, _, info = env.step(GUIDE)
        assert info["validation"]["status"] == "pass" and reward == pytest.approx(1.1)
        env.close()


def test_kodcode_check_env_and_malformed_costs_nothing():
    with FakeLLMServer(lambda p: "```python\npass\n```") as server:
        env = gym.make("GCoP-KodCode-v0", core=f"openai:coder@{server.openai_base_url}", split="all",
                       data_files=str(KODCODE_SAMPLE), sandbox="process", limit=5)
        check_env(env.unwrapped)
        env.reset(seed=3)
        _, reward, _, _, info = env.step("```python\ndef f(): return 1\n```")
        assert reward == 0.0 and not info["structure_ok"] and server.count() == 0
        env.close()


def test_code_env_api_failure_is_infra_not_a_fail():
    problems = load_kodcode("all", data_files=str(KODCODE_SAMPLE))[:2]
    with FakeLLMServer(solver_for(problems)) as server:
        server.faults.extend([status(503)] * 2)
        core = make_core(f"openai:coder@{server.openai_base_url}", retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01))
        env = gym.make("GCoP-KodCode-v0", core=core, split="all", data_files=str(KODCODE_SAMPLE), sandbox="process",
                       limit=2, gamma=0.0, kappa=0.0)
        env.reset(options={"task_id": problems[0].task_id})
        _, _, _, _, info = env.step(GUIDE)
        env.close()
    assert info["reward_is_task_outcome"] is False and "validation" not in info


def test_unknown_validator_option_is_a_clear_error():
    with pytest.raises(TypeError, match="sandbx.*did you mean 'sandbox'"):
        gym.make("GCoP-KodCode-v0", core="openai:m@http://127.0.0.1:1/v1", split="all",
                 data_files=str(KODCODE_SAMPLE), sandbx="docker")
