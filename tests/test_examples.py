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


def test_multiturn_grpo_loop_example_updates_each_turn_by_its_advantage(fake_llm, tiny_gsm8k_guide, monkeypatch):
    """examples/multiturn_grpo_loop.py with the tiny guide, whose sampling is scripted (an untrained model
    never writes a strategy): a coin decides between a malformed reply and the right move for the turn
    (turn 1: a plan; later: avoid the number the feedback called wrong), so groups differ and the
    per-turn advantages move the weights."""
    import random
    import runpy

    import torch
    from support import GSM8K_DIR, MT_FIRST, FeedbackSolver, reviser
    from transformers import AutoModelForCausalLM, AutoTokenizer

    server = fake_llm(FeedbackSolver())
    tokenizer = AutoTokenizer.from_pretrained(tiny_gsm8k_guide)
    model = AutoModelForCausalLM.from_pretrained(tiny_gsm8k_guide)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    coin = random.Random(0)

    def scripted_generate(input_ids, attention_mask=None, **_):
        prompt = tokenizer.decode(input_ids[0])
        if coin.random() < 0.4:
            reply = "no tags, just words"
        else:
            told = prompt.rfind("The solver's final answer was")  # the last feedback that named a number
            reply = reviser(prompt[told:]) if told >= 0 else MT_FIRST
        ids = tokenizer(reply + "<|im_end|>", add_special_tokens=False, return_tensors="pt")["input_ids"]
        return torch.cat([input_ids, ids], dim=1)

    monkeypatch.setattr(model, "generate", scripted_generate)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: model)
    main = runpy.run_path(str(EXAMPLES / "multiturn_grpo_loop.py"))["main"]
    history = main(["--guide", str(tiny_gsm8k_guide), "--core", f"openai:solver@{server.openai_base_url}",
                    "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", "2", "--steps", "3",
                    "--group", "4", "--lr", "1e-2"])
    assert len(history) == 3 and all(h["scored"] == 4 and h["infra_skipped"] == 0 for h in history)
    assert sum(h["solved"] for h in history) > 0 and any(h["mean_turns"] > 1 for h in history)
    assert sum(h["turn1_success"] for h in history) == 0  # turn 1 never solves: only a revision can
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
