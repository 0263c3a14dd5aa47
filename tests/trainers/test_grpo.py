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


def test_re_running_a_finished_grpo_is_a_no_op_that_says_so(solver_server, gsm8k_dir, tmp_path, capsys,
                                                              tiny_gsm8k_guide):
    # Before: each re-run of a finished `--max-steps 2` run trained on (checkpoints 3, 4, ...), paid the
    # core again and rewrote summary.json with the new step count.
    pytest.importorskip("trl")
    import json

    from gcop_env.cli.train import grpo_cli

    out = tmp_path / "grpo"
    argv = ["--task", "GSM8K", "--data-files", str(gsm8k_dir), "--split", "test", "--limit", "4",
            "--guide", str(tiny_gsm8k_guide), "--output-dir", str(out),
            "--core", f"openai:fake-core@{solver_server.openai_base_url}", "--recipe", "advisor",
            "--num-generations", "2", "--per-device-train-batch-size", "2", "--max-completion-length", "8",
            "--max-steps", "2", "--save-steps", "1", "--use-cpu", "--no-preflight", "--eval-limit", "0",
            "--core-max-tokens", "32", "--report-to", "none"]
    assert grpo_cli(argv) == 0
    summary = (out / "summary.json").read_text()
    checkpoints = sorted(p.name for p in out.glob("checkpoint-*"))
    sent = solver_server.count()
    capsys.readouterr()
    assert grpo_cli(argv) == 0
    printed = capsys.readouterr()
    assert "already finished" in printed.out + printed.err
    assert solver_server.count() == sent and (out / "summary.json").read_text() == summary
    assert sorted(p.name for p in out.glob("checkpoint-*")) == checkpoints
    assert json.loads(summary)["steps"] == 2
    # other settings over a finished run: one line, nothing trained or paid
    assert grpo_cli([a if a != "2" else "3" for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_steps" in err[0] and "finished" in err[0]
    assert solver_server.count() == sent and (out / "summary.json").read_text() == summary
