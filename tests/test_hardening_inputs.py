"""Bad input gets a clear error and nothing silently wrong: numbers, data files, strategies, usage."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import gymnasium as gym
import pytest
from support import GOOD_GUIDE, GSM8K_DIR, REPO_ROOT

import gcop_env  # noqa: F401 - registers the envs
from gcop_env import RewardConfig, StructureError, parse_guide_output
from gcop_env.cli.args import parse_config
from gcop_env.trainers.config import CurateConfig, GRPORunConfig, SFTRunConfig
from gcop_env.validators.data import DataError, load_rows
from gcop_env.validators.gsm8k import load_gsm8k

NAN, INF = float("nan"), float("inf")


# -- numbers: finite and in range, everywhere ----------------------------------------------------
@pytest.mark.parametrize("name", ["beta", "gamma", "kappa", "lam"])
@pytest.mark.parametrize("value", [NAN, INF, -INF, -0.1, True, "0.1", None])
def test_reward_weights_must_be_finite_non_negative_numbers(name, value):
    with pytest.raises(ValueError, match=name):
        RewardConfig(**{name: value})


@pytest.mark.parametrize("kwargs, field", [
    ({"beta": NAN}, "beta"), ({"beta": True}, "beta"), ({"lam": INF}, "lam"),
    ({"temperature": NAN}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": 1.5}, "max_tokens"),
    ({"max_action_chars": 0}, "max_action_chars"), ({"max_strategy_chars": -1}, "max_strategy_chars"),
    ({"max_observation_chars": True}, "max_observation_chars"), ({"limit": 0}, "limit"), ({"limit": 2.5}, "limit"),
    ({"judge_max_tokens": NAN}, "judge_max_tokens"),
])
def test_env_arguments_are_checked_before_any_work(kwargs, field):
    with pytest.raises(ValueError, match=field):
        gym.make("GCoP-GSM8K-v0", core="openai:m@http://127.0.0.1:9/v1", data_files=str(GSM8K_DIR), **kwargs)


@pytest.mark.parametrize("cls, field, value, valid", [
    (CurateConfig, "success_threshold", 2.0, "in [0, 1]"),
    (CurateConfig, "success_threshold", NAN, "finite"),
    (CurateConfig, "tau", -0.1, "in [0, 1]"),
    (CurateConfig, "k", 0, ">= 1"),
    (CurateConfig, "k", 2.5, "integer"),
    (CurateConfig, "eta", 0.0, "in (0, 1]"),
    (CurateConfig, "alpha", 1.0, "in (0, 1)"),
    (CurateConfig, "epsilon", INF, "finite"),
    (CurateConfig, "workers", 0, ">= 1"),
    (CurateConfig, "core_temperature", -1.0, "in [0, 2]"),
    (CurateConfig, "timeout_s", 0.0, "> 0"),
    (CurateConfig, "max_retries", 0, ">= 1"),
    (CurateConfig, "out", 3, "string"),
    (CurateConfig, "validator_options", "docker", "mapping"),
    (GRPORunConfig, "reward_beta", NAN, "finite"),
    (GRPORunConfig, "learning_rate", 0.0, "> 0"),
    (GRPORunConfig, "num_generations", 1, ">= 2"),
    (GRPORunConfig, "max_steps", 0, "-1"),
    (GRPORunConfig, "vllm_gpu_memory_utilization", 1.5, "in (0, 1]"),
    (GRPORunConfig, "use_vllm", "yes", "true or false"),
    (SFTRunConfig, "lora_dropout", 1.0, "in [0, 1)"),
    (SFTRunConfig, "min_q_hat", 1.5, "in [0, 1]"),
])
def test_config_fields_are_range_checked(cls, field, value, valid):
    with pytest.raises(ValueError, match=field) as info:
        cls(**{field: value})
    assert valid in str(info.value)


def test_defaults_of_every_config_are_valid():
    for cls in (CurateConfig, SFTRunConfig, GRPORunConfig):
        cls()


def _gcop(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "gcop_env.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, **kwargs)


@pytest.mark.parametrize("args, needle", [
    (["curate", "--k", "abc"], "argument --k: invalid int value"),
    (["curate", "--k", "0"], "k must be an integer >= 1"),
    (["curate", "--tau", "nan"], "tau must be a finite number in [0, 1]"),
    (["curate", "--success-threshold", "2"], "success_threshold must be in [0, 1]"),
    (["curate", "--task", "GSM9K"], "unknown task 'GSM9K'"),
    (["curate", "--validator-options", "{oops"], "not valid JSON"),
    (["grpo", "--guide", "/nonexistent/guide"], "the path does not exist"),
    (["grpo", "--reward-beta", "inf"], "reward_beta must be a finite number"),
    (["sft", "--learning-rate", "-1"], "learning_rate must be > 0"),
    (["sft", "--corpus", "/nonexistent/curated.jsonl"], "--corpus /nonexistent/curated.jsonl does not exist"),
    (["tasks", "--bogus"], "unrecognized arguments: --bogus"),
    (["score", "--task", "gsm8k", "--predictions", "x.jsonl", "--timeout", "nan"], "--timeout must be a finite"),
    (["score", "--task", "gsm8k", "--predictions", "/nonexistent.jsonl"], "does not exist"),
    (["score", "--task", "bogus", "--predictions", "x"], "invalid choice: 'bogus'"),
    (["bogus"], "unknown command 'bogus'"),
])
def test_usage_errors_are_one_line_with_exit_2(args, needle):
    result = _gcop(*args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    if args[0] != "bogus":  # (the unknown-command message adds the command list)
        assert result.stderr.strip().count("\n") == 0, result.stderr


@pytest.mark.parametrize("content, needle", [
    ({"kk": 3}, "unknown CurateConfig field(s): 'kk' (did you mean 'k'?)"),
    ({"k": "eight"}, "k must be an integer"),
    ({"tau": None}, "tau must be set"),
])
def test_bad_config_file_keys_are_usage_errors(tmp_path, content, needle):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(content))
    result = _gcop("curate", "--config", str(config))
    assert result.returncode == 2 and needle in result.stderr and result.stderr.count("\n") == 1


def test_unreadable_config_file_is_a_usage_error(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("k: [\n")
    with pytest.raises(SystemExit) as info:
        parse_config(CurateConfig, ["--config", str(config)], prog="gcop curate")
    assert info.value.code == 2


# -- reset options ------------------------------------------------------------------------------
@pytest.fixture
def env():
    e = gym.make("GCoP-GSM8K-v0", core="openai:m@http://127.0.0.1:9/v1", data_files=str(GSM8K_DIR), limit=5,
                 cache=False)
    yield e
    e.close()


@pytest.mark.parametrize("index", ["abc", 1.7, True, None, "1"])
def test_reset_index_must_be_an_integer(env, index):
    with pytest.raises(TypeError, match="'index' must be an integer in 0..4"):
        env.reset(options={"index": index})


def test_reset_index_accepts_numpy_integers(env):
    import numpy as np

    _, info = env.reset(options={"index": np.int64(3)})
    assert info["index"] == 3


# -- strategies with nothing visible --------------------------------------------------------------
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u00a0", "\u3000", "\u2003", "\u202f",
             "\u2028", "\u2029", "\u200e", "\u202e", "\u0000", "\t", "\U000e0020"]


@pytest.mark.parametrize("char", INVISIBLE)
def test_invisible_only_strategy_is_empty(char):
    parsed = parse_guide_output(f"<think>plan</think><strategy>{char * 3} {char}</strategy>")
    assert not parsed.structure_ok and parsed.error is StructureError.EMPTY_STRATEGY
    assert parse_guide_output(char * 5).error is StructureError.EMPTY_OUTPUT


def test_invisible_characters_outside_the_tags_are_not_stray_text():
    parsed = parse_guide_output("\ufeff\u200b<strategy>Add the two numbers.</strategy>\u2060\n")
    assert parsed.structure_ok and parsed.strategy == "Add the two numbers."


def test_zero_width_strategy_is_neither_paid_the_bonus_nor_sent_to_the_core(solver_server, gsm8k_dir):
    env = gym.make("GCoP-GSM8K-v0", core=f"openai:fake@{solver_server.openai_base_url}",
                   data_files=str(gsm8k_dir), limit=3, cache=False)
    env.reset(options={"index": 0})
    _, reward, _, _, info = env.step("<strategy>\u200b\u200b\u200b</strategy>")
    assert reward == 0.0 and info["structure_error"] == "empty_strategy" and solver_server.count() == 0
    env.close()


# -- lone surrogates: scored as malformed, never a crash -------------------------------------------
SURROGATE_OUTPUTS = [
    "<strategy>Add \ud800 them</strategy>",
    "<think>\udfff</think><strategy>Add them</strategy>",
    "\ud83d<strategy>Add them</strategy>",
    "\udc80" * 10,
]


@pytest.mark.parametrize("text", SURROGATE_OUTPUTS)
def test_lone_surrogate_is_invalid_text(text):
    parsed = parse_guide_output(text)
    assert not parsed.structure_ok and parsed.error is StructureError.INVALID_TEXT and "surrogate" in parsed.message


def test_lone_surrogate_in_a_step_is_malformed_and_calls_nothing(solver_server, gsm8k_dir):
    env = gym.make("GCoP-GSM8K-v0", core=f"openai:fake@{solver_server.openai_base_url}",
                   data_files=str(gsm8k_dir), limit=3)  # the default on-disk cache: its key never sees the text
    env.reset(options={"index": 1})
    _, reward, terminated, _, info = env.step(SURROGATE_OUTPUTS[0])
    assert terminated and reward == 0.0 and info["structure_error"] == "invalid_text"
    assert info["reward_is_task_outcome"] and solver_server.count() == 0
    env.reset(options={"index": 1})
    _, reward, *_ = env.step(GOOD_GUIDE)  # the env still works
    assert reward > 0 and solver_server.count() > 0
    env.close()


def test_one_surrogate_completion_does_not_crash_a_grpo_reward_batch(solver_server, gsm8k_dir):
    from gcop_env import get_task, make_core
    from gcop_env.step.scoring import GuideScorer
    from gcop_env.trainers.grpo import ShapedReward

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


# -- local data files: read directly, errors name the file and line ---------------------------------
GSM_ROW = {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7\n#### 7"}


def test_a_file_edited_in_place_with_same_size_and_mtime_is_reread(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(GSM_ROW) + "\n")
    stat = path.stat()
    assert load_gsm8k("test", data_files=str(path))[0].reference == "7"
    path.write_text(json.dumps({**GSM_ROW, "answer": "3 + 5 = 8\n#### 8"}) + "\n")  # same length
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert load_gsm8k("test", data_files=str(path))[0].reference == "8"


@pytest.mark.parametrize("content, needle", [
    (json.dumps(GSM_ROW).encode() + b"\n" + b'{"question": "caf\xe9", "answer": "#### 1"}\n', ": line 2 is not valid UTF-8"),
    (json.dumps(GSM_ROW).encode() + b"\n\n{oops\n", ": line 3 is not valid JSON"),
    (b'{"question": "\\ud800 hi", "answer": "#### 1"}\n', ": line 1 holds a lone surrogate"),
    (b"[1, 2]\n", ": line 1 must be a JSON object"),
])
def test_bad_jsonl_data_names_file_and_line(tmp_path, content, needle):
    path = tmp_path / "test.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_gsm8k("test", data_files=str(path))
    assert f"{path}{needle}" in str(info.value)


def test_other_local_formats_are_read_directly(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [GSM_ROW, {**GSM_ROW, "answer": "#### -3/4"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    (tmp_path / "d.csv").write_text('question,answer\n"Tom, 3 apples?","#### 7"\n')
    for name in ("a.json", "b.json", "c.parquet"):
        assert [p.reference for p in load_gsm8k("test", data_files=str(tmp_path / name))] == ["7", "-0.75"], name
    assert load_gsm8k("test", data_files=str(tmp_path / "d.csv"))[0].question == "Tom, 3 apples?"
    (tmp_path / "e.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="e.parquet: not a readable Parquet file"):
        load_rows("x", None, "test", str(tmp_path / "e.parquet"))
    (tmp_path / "f.csv").write_bytes(b"question,answer\nok,#### 1\n\xff,#### 2\n")
    with pytest.raises(DataError, match="f.csv: line 3 is not valid UTF-8"):
        load_rows("x", None, "test", str(tmp_path / "f.csv"))


def test_curate_checks_its_output_path_before_paying(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = _gcop("curate", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", "1",
                   "--teacher", "openai:t@http://127.0.0.1:9/v1", "--core", "openai:c@http://127.0.0.1:9/v1",
                   "--out", str(blocker / "curated.jsonl"))
    assert result.returncode == 2 and "is not writable" in result.stderr and "Traceback" not in result.stderr
