"""``gcop grpo --max-turns N`` (issue 20): multi-turn GRPO on CPU through TRL's rollout_func with the tiny
guide and a fake core: every term logged per turn, each turn's tokens carry that turn's advantage, the
observation tokens stay out of the loss, and a rollout hit by an infrastructure failure leaves the batch."""

from __future__ import annotations

import json
import random
import threading

import pytest
from support import GSM8K_DIR, gsm8k_golds

from gcop_env import RewardConfig, get_task, make_core
from gcop_env.cores.base import (
    Core,
    CoreError,
    CoreRequest,
    CoreResponse,
    SamplingParams,
)
from gcop_env.step.credit import group_advantages
from gcop_env.step.scoring import GuideScorer
from gcop_env.utils.fields import config_from_dict

pytest.importorskip("trl")
torch = pytest.importorskip("torch")


class CoinCore(Core):
    """An in-process core for GSM8K: right with probability ``p`` (seeded), and on demand it fails (an
    infrastructure error) whenever its prompt holds the previous attempt of problem ``fail_on``."""

    backend, model = "fake", "coin"

    def __init__(self, p: float = 0.4, fail_on: str | None = None):
        self.golds = gsm8k_golds(6)
        self.rng = random.Random(0)
        self.lock = threading.Lock()
        self.p, self.fail_on = p, fail_on

    def complete(self, request: CoreRequest) -> CoreResponse:
        prompt = request.messages[-1].content
        question, gold = next((q, g) for q, g in self.golds.items() if q in prompt)
        if self.fail_on and self.fail_on in question and "Your previous attempt" in prompt:
            raise CoreError("the fake API is down")
        with self.lock:
            right = self.rng.random() < self.p
        answer = gold if right else str(int(gold) + 1)
        return CoreResponse(text=f"so \\boxed{{{answer}}}", input_tokens=20, output_tokens=5, latency_s=0.0,
                            backend="fake", model="coin")


def _config(guide, tmp_path, **extra):
    from gcop_env.trainers.config import GRPORunConfig

    values = {"task": "GSM8K", "data_files": str(GSM8K_DIR), "split": "test", "limit": 2, "guide": str(guide),
              "output_dir": str(tmp_path / "grpo"), "recipe": "advisor", "max_steps": 1, "num_generations": 2,
              "per_device_train_batch_size": 4, "max_completion_length": 8, "eval_limit": 0, "use_cpu": True,
              "preflight": False, "max_turns": 2, "learning_rate": 1e-3, "save_steps": 10, "cache": "off"}
    values.update(extra)
    return config_from_dict(GRPORunConfig, values)


def _scorer(core: Core) -> GuideScorer:
    task = get_task("GSM8K")
    return GuideScorer(task.validator(), make_core(core, cache=False), reward=RewardConfig(0.0, 0.0, 0.0, 0.0),
                       sampling=SamplingParams(), structure_required=False)


def test_grpo_max_turns_2_runs_steps_on_cpu_with_every_term_logged_per_turn(fake_llm, tmp_path, tiny_gsm8k_guide):
    from gcop_env.cli.train import grpo_cli

    golds = gsm8k_golds(6)
    rng = random.Random(1)

    def coin(prompt: str) -> str:
        gold = next(g for q, g in golds.items() if q in prompt)
        return f"so \\boxed{{{gold if rng.random() < 0.4 else int(gold) + 1}}}"

    server = fake_llm(coin)
    out = tmp_path / "grpo"
    code = grpo_cli(["--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", "2",
                     "--core", f"openai:fake-core@{server.openai_base_url}", "--guide", str(tiny_gsm8k_guide),
                     "--output-dir", str(out), "--recipe", "advisor", "--max-steps", "2", "--num-generations", "4",
                     "--per-device-train-batch-size", "4", "--max-completion-length", "12", "--eval-limit", "2",
                     "--use-cpu", "--no-preflight", "--max-turns", "2", "--learning-rate", "1e-3"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["metrics"]
    assert summary["steps"] == 2 and metrics["completions"] == 8 and metrics["infra_errors"] == 0
    logged = {k for entry in summary["log_history"] for k in entry}
    for t in (1, 2):
        for term in ("task_reward", "judge_score", "reward_delta", "harm_penalty", "cost", "shaped", "reward",
                     "credit", "success", "reached", "advantage", "advantage_abs"):
            assert f"gcop/turn{t}/{term}" in logged, (t, term)
    for name in ("episode_return", "episode_turns", "episode_success", "infra_error_rate", "cost_usd",
                 "context_cut_rate"):
        assert f"gcop/{name}" in logged, name
    assert 1.0 <= metrics["mean_episode_turns"] <= 2.0 and metrics["mean_turn1/reached"] == 1.0
    assert {"eval_solved_after_turn1", "eval_solved_after_turn2", "eval_turns_mean"} <= set(metrics)
    recipe = json.loads((out / "gcop_recipe.json").read_text())
    assert recipe["max_turns"] == 2 and recipe["credit"] == "improvement"
    # the revision turns reached the core: it saw the revision prompts' strategies (the guide's turn 2)
    assert metrics["mean_turn2/reached"] == pytest.approx(1 - metrics["mean_turn1/success"])


@pytest.mark.parametrize("credit", ["improvement", "final"])
def test_each_turns_tokens_get_their_turns_advantage_and_observations_stay_out_of_the_loss(
        tmp_path, tiny_gsm8k_guide, credit):
    from gcop_env.trainers.multiturn_grpo import (
        build_multiturn_grpo_trainer,
        user_suffix_ids,
    )

    config = _config(tiny_gsm8k_guide, tmp_path, credit=credit, num_generations=4, per_device_train_batch_size=8)
    trainer, reward = build_multiturn_grpo_trainer(config, _scorer(CoinCore(p=0.4)))
    trainer.model.train()
    rows = list(trainer.train_dataset)
    inputs = [dict(rows[i // 4]) for i in range(8)]  # two problems, a group of 4 rollouts each
    output = trainer._generate_and_score_completions(inputs)
    records = trainer.rollout_func.last
    assert len(records) == 8 and all(r.scored for r in records)
    assert any(len(r.episode.turns) == 2 for r in records)  # some first turns failed and were revised
    advantages, tool_mask = output["advantages"], output["tool_mask"]
    assert advantages.shape == output["completion_ids"].shape
    expected = group_advantages([r.credits for r in records[:4]], credit) + \
        group_advantages([r.credits for r in records[4:]], credit)
    tokenizer = trainer.processing_class
    for row, (record, values) in enumerate(zip(records, expected)):
        for (start, end), value in zip(record.spans, values):
            assert torch.allclose(advantages[row, start:end], torch.tensor(value, dtype=torch.float32))
            assert tool_mask[row, start:end].eq(1).all()  # the guide's tokens are in the loss
        if len(record.spans) == 2:
            gap = slice(record.spans[0][1], record.spans[1][0])
            assert tool_mask[row, gap].eq(0).all() and advantages[row, gap].eq(0).all()
            observation = tokenizer.decode(output["completion_ids"][row, gap])
            assert record.episode.turns[1].observation in observation  # the revision prompt, out of the loss
            suffix = user_suffix_ids(tokenizer, record.episode.turns[1].observation)
            assert output["completion_ids"][row, gap].tolist()[-len(suffix):] == suffix
        if credit == "final":
            assert len(set(values)) == 1  # every turn of an episode shares its value's advantage
    if credit == "improvement":
        # turn 1 is normalised within its group exactly as single-turn GRPO normalises the shaped reward
        first = torch.tensor([r.episode.turns[0].shaped for r in records[:4]])
        trl_style = (first - first.mean()) / (first.std() + 1e-4)  # TRL's scale_rewards="group"
        assert [v[0] for v in expected[:4]] == pytest.approx(trl_style.tolist(), abs=1e-6)
    reward.close()


def test_a_rollout_with_an_infra_failure_on_turn_2_leaves_the_loss(tmp_path, tiny_gsm8k_guide):
    from gcop_env.trainers.multiturn_grpo import build_multiturn_grpo_trainer

    question = next(iter(gsm8k_golds(1)))
    core = CoinCore(p=0.0, fail_on=question)  # every first turn fails; problem 0's second turns hit an outage
    config = _config(tiny_gsm8k_guide, tmp_path, core_history="previous")
    trainer, reward = build_multiturn_grpo_trainer(config, _scorer(core))
    trainer.model.train()
    rows = list(trainer.train_dataset)
    inputs = [dict(rows[i // 2]) for i in range(4)]
    output = trainer._generate_and_score_completions(inputs)
    records = trainer.rollout_func.last
    failed = [r for r in records if not r.scored]
    assert [r.task_id for r in failed] == [rows[0]["task_id"]] * 2
    assert all(r.error_stage == "core" and len(r.spans) == 2 for r in failed)  # turn 1 was fine, turn 2 failed
    assert output["completion_ids"].shape[0] == 2  # both rollouts of problem 0 left the batch (and the loss)
    assert trainer.dropped_unscored == 2
    assert reward.totals.infra_errors == 2 and reward.totals.completions == 4
    reward.close()
