"""Guide recipes: recorded by `gcop sft` / `gcop grpo`, read back for the report; the Advisor recipe."""

from __future__ import annotations

import json

import pytest
from support import GOOD_GUIDE, GSM8K_DIR, gsm8k_golds, write_curated
from tiny_guide import build_tiny_guide

from gcop_env import RewardConfig, get_task, make_core
from gcop_env.cores.base import SamplingParams
from gcop_env.recipe import RECIPE_FILE, Recipe, RecipeError, read_recipe, read_recipe_details, write_recipe
from gcop_env.step.scoring import GuideScorer
from gcop_env.cli.args import parse_config
from gcop_env.trainers.config import GRPORunConfig
from gcop_env.utils.fields import config_from_dict


def test_read_recipe_of_plain_trained_and_checkpoint_dirs(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert read_recipe(plain) == "None" and read_recipe("Qwen/Qwen3-1.7B") == "None"
    trained = tmp_path / "grpo"
    write_recipe(trained, Recipe.EXECTUNE, command="grpo", base_guide="runs/sft", base_recipe="SFT")
    (trained / "checkpoint-50").mkdir()
    assert read_recipe(trained) == "ExecTune" and read_recipe(f"hf:{trained}") == "ExecTune"
    assert read_recipe(trained / "checkpoint-50") == "ExecTune"
    details = read_recipe_details(trained)
    assert details["base_recipe"] == "SFT" and details["structure_required"] is True
    write_recipe(tmp_path / "adv", Recipe.ADVISOR)
    assert read_recipe_details(tmp_path / "adv")["structure_required"] is False


@pytest.mark.parametrize("content", ["{broken", '{"recipe": "RLHF"}', '["SFT"]'])
def test_a_broken_recipe_record_is_a_clear_error(tmp_path, content):
    (tmp_path / RECIPE_FILE).write_text(content)
    with pytest.raises(RecipeError, match=f"{RECIPE_FILE} is not a valid recipe record"):
        read_recipe(tmp_path)


def test_advisor_config_zeroes_the_shaping_weights_and_refuses_explicit_ones():
    config = parse_config(GRPORunConfig, ["--recipe", "advisor"], prog="gcop grpo")
    reward = config.reward_config()
    assert (reward.beta, reward.gamma, reward.kappa, reward.lam) == (0, 0, 0, 0)
    assert parse_config(GRPORunConfig, [], prog="gcop grpo").reward_config() == RewardConfig()
    with pytest.raises(ValueError, match="task reward alone.*drop --reward-kappa 0.9"):
        config_from_dict(GRPORunConfig, {"recipe": "advisor", "reward_kappa": 0.9})
    with pytest.raises(SystemExit):  # on the command line: a one-line usage error (exit 2)
        parse_config(GRPORunConfig, ["--recipe", "advisor", "--reward-kappa", "0.9"], prog="gcop grpo")
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        parse_config(GRPORunConfig, ["--recipe", "rlhf"], prog="gcop grpo")


def test_scorer_without_structure_passes_the_whole_output_as_advice(solver_server, gsm8k_dir):
    task = get_task("GSM8K")
    problem = task.load("test", data_files=str(gsm8k_dir))[0]
    core = make_core(f"openai:fake-core@{solver_server.openai_base_url}", timeout_s=10)
    scorer = GuideScorer(task.validator(), core, reward=RewardConfig(beta=0, gamma=0, kappa=0),
                         sampling=SamplingParams(), structure_required=False)
    advice = "Just add the amounts up, no tags at all."
    outcome = scorer.score(problem, f"  {advice}\n")
    assert outcome.parsed.structure_ok and outcome.parsed.strategy == advice
    assert outcome.reward == 1.0 and outcome.components.bonus == 0.0  # R alone
    prompt = solver_server._last_user_text(solver_server.requests[-1]["body"]["messages"])
    assert f"Suggested strategy:\n{advice}" in prompt
    before = solver_server.count()
    empty = scorer.score(problem, "   ")
    assert not empty.parsed.structure_ok and empty.reward == 0.0 and solver_server.count() == before
    # the same output under the structure requirement is malformed and costs no core call
    strict = GuideScorer(task.validator(), core, reward=RewardConfig(beta=0, gamma=0, kappa=0))
    assert strict.score(problem, advice).parsed.structure_ok is False and solver_server.count() == before


def test_sft_then_advisor_grpo_record_their_recipes(solver_server, tmp_path):
    pytest.importorskip("trl")
    from gcop_env.cli.train import grpo_cli, sft_cli

    golds = gsm8k_golds(4)
    tiny = build_tiny_guide(tmp_path / "tiny", list(golds), [GOOD_GUIDE] * 3)
    assert read_recipe(tiny) == "None"
    corpus = write_curated(tmp_path / "curated.jsonl", golds)
    sft_dir = tmp_path / "sft"
    assert sft_cli(["--corpus", str(corpus), "--guide", str(tiny), "--output-dir", str(sft_dir), "--max-steps", "2",
                    "--per-device-train-batch-size", "2", "--save-steps", "10"]) == 0
    assert read_recipe(sft_dir) == "SFT"
    assert read_recipe_details(sft_dir)["base_recipe"] == "None"

    advisor_dir = tmp_path / "advisor"
    before = solver_server.count()
    assert grpo_cli(["--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", "2",
                     "--core", f"openai:fake-core@{solver_server.openai_base_url}", "--guide", str(sft_dir),
                     "--output-dir", str(advisor_dir), "--recipe", "advisor", "--max-steps", "1",
                     "--num-generations", "2", "--per-device-train-batch-size", "2",
                     "--max-completion-length", "16", "--max-retries", "1", "--save-steps", "10",
                     "--no-preflight", "--eval-limit", "0"]) == 0
    details = read_recipe_details(advisor_dir)
    assert details["recipe"] == "Advisor" and details["base_recipe"] == "SFT" and details["structure_required"] is False
    assert (details["reward"]["beta"], details["reward"]["gamma"], details["reward"]["kappa"]) == (0, 0, 0)
    summary = json.loads((advisor_dir / "summary.json").read_text())
    # 16 tokens of a barely trained guide are rarely a well-formed strategy, but every non-empty
    # output is advice: the core was called for each (no judge, no baseline calls: γ = κ = 0).
    completions = summary["metrics"]["completions"]
    new_requests = solver_server.requests[before:]
    prompts = [solver_server._last_user_text(r["body"]["messages"]) for r in new_requests]
    assert completions == 2 and all("Suggested strategy:" in p for p in prompts)
    assert len(prompts) == round(summary["metrics"]["mean_structure_ok"] * completions) >= 1
    # 16 tokens cannot hold a closed <think>…</think><strategy>…</strategy>: this advice would be
    # malformed under the ExecTune recipe, and it still reached the core.
    from gcop_env.step.strategy import parse_guide_output
    advice = [p.split("Suggested strategy:\n", 1)[1].split("\n\nReason step by step")[0] for p in prompts]
    assert not any(parse_guide_output(a).structure_ok for a in advice)
