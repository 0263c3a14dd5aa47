"""The examples in examples/ run as a user would run them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fake_llm import FakeLLMServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def capital_solver(prompt: str) -> str:
    if "capital of France" in prompt:
        return "It is \\boxed{Paris}."
    if "capital of Canada" in prompt:
        return "Surely \\boxed{Toronto}."  # wrong
    match = re.search(r"capital of (\w+)", prompt)
    answers = {"Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima"}
    return f"\\boxed{{{answers[match.group(1)]}}}" if match else "?"


def test_custom_task_example_runs(tmp_path):
    with FakeLLMServer(capital_solver) as server:
        out = subprocess.run([sys.executable, str(EXAMPLES / "custom_task.py"), f"openai:m@{server.openai_base_url}"],
                             capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                                "GCOP_CACHE_DIR": str(tmp_path)})
        assert out.returncode == 0, out.stderr[-2000:]
        # 5 guided calls and 5 unguided baselines (kappa defaults on), judge off
        assert server.count() == 10
    # 4 right (1 + beta 0.1 - harm 0), Canada wrong but no worse than unguided Toronto: 0.1
    assert "mean shaped reward: 0.900" in out.stdout
    assert out.stdout.count("reward=1.10") == 4 and "Canada   reward=0.10" in out.stdout


def test_custom_task_in_process_with_check_env(tmp_path):
    import importlib.util

    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env

    spec = importlib.util.spec_from_file_location("custom_task", EXAMPLES / "custom_task.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with FakeLLMServer(capital_solver) as server:
        env = gym.make("GCoP-Capitals-v0", core=f"openai:m@{server.openai_base_url}", gamma=0.0, kappa=0.0)
        check_env(env.unwrapped)
        env.reset(options={"task_id": "capital/peru"})
        assert env.step("<strategy>Think of Lima's neighbours.</strategy>")[1] == 1.1  # leak only affects J
