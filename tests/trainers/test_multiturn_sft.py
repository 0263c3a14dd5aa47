"""``gcop curate``'s refinement rounds become multi-turn SFT examples (issue 20) whose observations are
exactly what the multi-turn env shows after the same failed turn, and ``gcop sft`` trains on them."""

from __future__ import annotations

import json

import gymnasium as gym
import pytest
from gcop_env.trainers.sft import revision_example, sft_examples
from support import GSM8K_DIR, curate_argv

import gcop_env  # noqa: F401
from gcop_env.cli.train import curate_cli
from gcop_env.step.prompts import guide_prompt


def test_refinement_chains_become_revision_examples_that_read_like_the_env(curation_world, tmp_path):
    out = tmp_path / "curated.jsonl"
    assert curate_cli(curate_argv(curation_world.server, out)) == 0
    rows = {curation_world.role(r["question"]): r for r in map(json.loads, out.read_text().splitlines())}
    # 2: a HARMFUL draw, refined; 4: a malformed draw, refined; 3: hopeless (never accepted)
    refined = rows[2]
    first = refined["rounds"][0]
    assert {"guide_output", "core_output", "feedback"} <= set(first) and "HARMFUL" in first["guide_output"]
    assert first["feedback"].startswith("The solver's final answer was") and "wrong" in first["feedback"]
    gold = next(g for q, g in curation_world.solver.golds.items() if q == refined["question"])
    assert gold not in first["feedback"]  # the env's feedback, not the teacher's (which shows the checker's gold)
    assert "guide_output" in rows[4]["rounds"][0] and "core_output" not in rows[4]["rounds"][0]

    examples = sft_examples(out, revision_turns=True, max_turns=3)
    revisions = [e for e in examples if e["turns"] > 1]
    assert sorted(e["problem_id"] for e in revisions) == sorted([rows[2]["problem_id"], rows[4]["problem_id"]])
    assert len(examples) == 4 + 2  # every accepted row's single-turn example, plus the two revisions
    assert len(sft_examples(out)) == 4  # revision_turns off: as before
    example = revision_example(refined, max_turns=3)
    assert [m["role"] for m in example["prompt"]] == ["user", "assistant", "user"]
    assert example["prompt"][0]["content"] == guide_prompt(refined["question"])
    assert example["completion"] == [{"role": "assistant", "content": refined["guide_output"]}]

    # the same failed turn in the env gives exactly the example's revision observation
    env = gym.make("GCoP-GSM8K-v0", core=f"openai:fake-core@{curation_world.server.openai_base_url}", split="test",
                   data_files=str(GSM8K_DIR), limit=6, max_turns=3, gamma=0.0, kappa=0.0, temperature=0.7)
    env.reset(options={"task_id": refined["problem_id"]})
    observation, *_ = env.step(first["guide_output"])
    assert observation == example["prompt"][2]["content"]
    env.reset(options={"task_id": rows[4]["problem_id"]})
    observation, *_ = env.step(rows[4]["rounds"][0]["guide_output"])  # the malformed reply
    assert observation == revision_example(rows[4], max_turns=3)["prompt"][2]["content"]
    env.close()
    assert revision_example(refined, max_turns=1) is None and revision_example(rows[3]) is None


def test_sft_trains_the_revision_turns(curation_world, tmp_path, tiny_gsm8k_guide):
    from gcop_env.cli.train import sft_cli

    pytest.importorskip("trl")
    out = tmp_path / "curated.jsonl"
    assert curate_cli(curate_argv(curation_world.server, out)) == 0
    sft_dir = tmp_path / "sft"
    assert sft_cli(["--corpus", str(out), "--guide", str(tiny_gsm8k_guide), "--output-dir", str(sft_dir),
                    "--max-steps", "3", "--per-device-train-batch-size", "2", "--save-steps", "50",
                    "--max-length", "2048"]) == 0
    summary = json.loads((sft_dir / "summary.json").read_text())
    assert summary["examples"] == 6 and summary["metrics"]["revision_examples"] == 2
