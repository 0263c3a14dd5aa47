"""TRL ``environment_factory`` adapter, against the installed TRL with a tiny guide on CPU."""

from __future__ import annotations

import inspect
import os

import gymnasium as gym
import pytest
from support import GOOD_GUIDE, REPO_ROOT
from fake_llm import status

import gcop_env  # noqa: F401 - registers the environments
from gcop_env import RetryPolicy

trl = pytest.importorskip("trl")
pytest.importorskip("torch")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from gcop_env.adapters.trl import GuideEnvironment, TRLAdapter  # noqa: E402

ONE_TRY = RetryPolicy(max_attempts=1)

# ChatML that renders tool calls and tool replies: what TRL asks of a template for environment_factory
TOOL_CHATML = (
    "{% if tools %}<|im_start|>system\nTools: {{ tools | tojson }}<|im_end|>\n{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' and message.get('tool_calls') %}<|im_start|>assistant\n"
    "{{ message['content'] or '' }}{% for call in message['tool_calls'] %}<tool_call>{\"name\": \""
    "{{ call['function']['name'] }}\", \"arguments\": {{ call['function']['arguments'] | tojson }}}</tool_call>"
    "{% endfor %}<|im_end|>\n"
    "{% else %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def make_env(server, gsm8k_dir, **kwargs):
    kwargs.setdefault("cache", False)
    return gym.make("GCoP-GSM8K-v0", core=f"openai:solver@{server.openai_base_url}", split="test",
                    data_files=str(gsm8k_dir), limit=4, beta=0.1, gamma=0.0, kappa=0.0, retry=ONE_TRY, **kwargs)


def test_environment_has_reset_as_its_only_public_method():
    public = [name for name, _ in inspect.getmembers(GuideEnvironment, predicate=inspect.isfunction)
              if not name.startswith("_")]
    assert public == ["reset"]  # TRL would offer any other public method to the model as a tool


def test_reset_reads_the_row_and_refuses_a_row_without_task_id(solver_server, gsm8k_dir):
    adapter = TRLAdapter(make_env(solver_server, gsm8k_dir))
    row = adapter.dataset()[2]
    environment = adapter.environment_factory()
    assert environment.reset(**row) is None  # the row's prompt is the guide prompt already
    assert environment.problem.task_id == row["task_id"] and environment.problem.question in row["prompt"][0]["content"]
    with pytest.raises(KeyError, match="no 'task_id' column"):
        environment.reset(prompt=row["prompt"])
    with pytest.raises(KeyError, match="not among the env's 4 problems"):
        environment.reset(task_id="gsm8k/test/9999")


def test_reward_scores_environments_with_fresh_samples_and_leaves_out_outages(solver_server, gsm8k_dir):
    adapter = TRLAdapter(make_env(solver_server, gsm8k_dir, temperature=0.8, cache=None), stream=0)
    row = adapter.dataset()[0]
    environments = [adapter.environment_factory() for _ in range(3)]
    for environment in environments:
        environment.reset(**row)
    logged = {}
    completions = [[{"role": "assistant", "content": GOOD_GUIDE}]] * 2 + [[{"role": "assistant", "content": "junk"}]]
    rewards = adapter.reward([row["prompt"]] * 3, completions, environments=environments, task_id=[row["task_id"]] * 3,
                             log_metric=logged.__setitem__)
    assert rewards == pytest.approx([1.1, 1.1, 0.0])
    assert solver_server.count() == 2  # the group's two identical replies drew two core samples
    assert logged["gcop/structure_ok"] == pytest.approx(2 / 3) and logged["gcop/infra_error_rate"] == 0.0
    # the next batch continues the sample sequence; an outage is None and does not use up its sample
    # (one reply: steps of a batch take their samples as they run, so in a batch of two the other
    # reply may already have reused the failed one's sample)
    solver_server.faults.append(status(500))
    rewards = adapter.reward([row["prompt"]], completions[:1], environments=environments[:1],
                             log_metric=logged.__setitem__)
    assert rewards == [None] and logged["gcop/infra_error_rate"] == 1.0
    assert solver_server.count() == 3
    assert [len(v) for v in adapter.env.unwrapped.sample_counter._returned.values()] == [1]  # kept for a later batch
    rewards = adapter.reward([row["prompt"]] * 2, completions[:2], environments=environments[:2])
    assert rewards == pytest.approx([1.1, 1.1]) and solver_server.count() == 5  # the kept sample and the next one
    assert not any(adapter.env.unwrapped.sample_counter._returned.values())
    assert {r["body"]["temperature"] for r in solver_server.requests} == {0.8}
    # a re-run (a new adapter on the same cache) replays the first batch from the cache
    rerun = TRLAdapter(make_env(solver_server, gsm8k_dir, temperature=0.8, cache=None), stream=0)
    envs2 = [rerun.environment_factory() for _ in range(2)]
    for environment in envs2:
        environment.reset(**row)
    assert rerun.reward([row["prompt"]] * 2, completions[:2], environments=envs2) == pytest.approx([1.1, 1.1])
    assert solver_server.count() == 5


class RecordingEnvironment(GuideEnvironment):
    resets: list = []

    def reset(self, task_id=None, **row):
        RecordingEnvironment.resets.append((id(self), task_id, row["prompt"][0]["content"]))
        return super().reset(task_id, **row)


def grpo_config(tmp_path):
    from trl import GRPOConfig

    return GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=1, num_generations=2, per_device_train_batch_size=4,
                      max_completion_length=8, logging_steps=1, report_to="none", use_cpu=True, save_strategy="no",
                      learning_rate=1e-3, seed=0)


def test_grpo_trains_through_environment_factory_with_a_tool_template(solver_server, gsm8k_dir, tiny_gsm8k_guide, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_gsm8k_guide)
    tokenizer.chat_template = TOOL_CHATML
    adapter = TRLAdapter(make_env(solver_server, gsm8k_dir))
    kwargs = adapter.trainer_kwargs(tokenizer)
    assert set(kwargs) == {"environment_factory", "reward_funcs"}
    problems = {p.task_id: p for p in adapter.problems}
    kwargs["environment_factory"] = lambda: RecordingEnvironment(problems)
    RecordingEnvironment.resets.clear()
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_gsm8k_guide), args=grpo_config(tmp_path),
                          processing_class=tokenizer, train_dataset=adapter.dataset(), **kwargs)
    assert trainer.tools == []  # no method of the environment became a tool
    trainer.train()
    # one reset per rollout, each from its row: a GRPO group (2 rollouts of a row) shares one problem
    resets = RecordingEnvironment.resets
    assert len(resets) == 4 and len({r[0] for r in resets}) == 4
    for _, task_id, prompt in resets:
        assert problems[task_id].question in prompt
    groups = [{r[1] for r in resets[i:i + 2]} for i in (0, 2)]
    assert all(len(g) == 1 for g in groups)
    step_log = next(e for e in trainer.state.log_history if "gcop/structure_ok" in e)
    assert adapter.reward.totals.completions == 4 and "gcop/infra_error_rate" in step_log


def test_plain_template_falls_back_to_the_reward_function(solver_server, gsm8k_dir, tiny_gsm8k_guide, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_gsm8k_guide)  # plain ChatML: no tool calls
    adapter = TRLAdapter(make_env(solver_server, gsm8k_dir))
    model = AutoModelForCausalLM.from_pretrained(tiny_gsm8k_guide)
    with pytest.raises(ValueError, match="does not support tool calling"):  # TRL's rule, which the adapter follows
        GRPOTrainer(model=model, args=grpo_config(tmp_path), processing_class=tokenizer,
                    train_dataset=adapter.dataset(), environment_factory=adapter.environment_factory,
                    reward_funcs=[adapter.reward])
    kwargs = adapter.trainer_kwargs(tokenizer)
    assert set(kwargs) == {"reward_funcs"}
    trainer = GRPOTrainer(model=model, args=grpo_config(tmp_path), processing_class=tokenizer,
                          train_dataset=adapter.dataset(), **kwargs)
    trainer.train()
    assert adapter.reward.totals.completions == 4


def test_trl_examples_print_their_metrics(solver_server, gsm8k_dir, tiny_gsm8k_guide, tmp_path, capsys):
    import runpy

    common = ["--guide", str(tiny_gsm8k_guide), "--core", f"openai:fake-core@{solver_server.openai_base_url}",
              "--data-files", str(gsm8k_dir), "--split", "test", "--limit", "2", "--max-steps", "1",
              "--num-generations", "2", "--max-completion-length", "8"]
    for example in ("trl_grpo.py", "trl_environment.py"):
        main = runpy.run_path(str(REPO_ROOT / "examples" / example))["main"]
        main(common + ["--output-dir", str(tmp_path / example)])
        out = capsys.readouterr().out
        assert "step 1: {" in out and "'gcop/structure_ok': " in out and "'gcop/infra_error_rate': 0.0" in out, out
        assert "run: 2 completions scored, 0 infrastructure errors" in out, out


def test_a_multi_turn_env_trains_through_rollout_func(fake_llm, gsm8k_dir, tiny_gsm8k_guide, tmp_path):
    """A plain GRPOTrainer with the adapter's rollout_func: each rollout is a multi-turn episode (the
    untrained guide's replies are malformed, so every episode runs all its turns)."""
    from support import FeedbackSolver
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    server = fake_llm(FeedbackSolver())
    env = gym.make("GCoP-GSM8K-v0", core=f"openai:solver@{server.openai_base_url}", split="test",
                   data_files=str(gsm8k_dir), limit=2, max_turns=2, gamma=0.0, kappa=0.0)
    adapter = TRLAdapter(env)
    tokenizer = AutoTokenizer.from_pretrained(tiny_gsm8k_guide)
    kwargs = adapter.trainer_kwargs(tokenizer)
    assert set(kwargs) == {"rollout_func", "reward_funcs"}
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_gsm8k_guide), args=grpo_config(tmp_path),
                          processing_class=tokenizer, train_dataset=adapter.dataset(), **kwargs)
    trainer.train()
    records = adapter.rollout.last
    assert len(records) == 4 and all(r.scored and len(r.episode.turns) == 2 for r in records)
    assert all("not one well-formed strategy" in r.episode.turns[1].observation for r in records)
    step_log = next(e for e in trainer.state.log_history if "gcop/turn2/reached" in e)
    assert step_log["gcop/turn2/reached"] == 1.0 and adapter.episode_reward.totals.completions == 4
    env.close()
