"""The `gcop` command: a usage error of any sub-command is one line on stderr with exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import REPO_ROOT


def _gcop(*args, cwd=REPO_ROOT, **kwargs):
    return subprocess.run([sys.executable, "-m", "gcop_env.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, **kwargs)


@pytest.mark.parametrize("args, needle", [
    (["curate", "--k", "abc"], "argument --k: invalid int value"),
    (["curate", "--k", "0"], "k must be an integer >= 1"),
    (["curate", "--tau", "nan"], "tau must be a finite number in [0, 1]"),
    (["curate", "--success-threshold", "2"], "success_threshold must be in [0, 1]"),
    (["curate", "--task", "GSM9K"], "unknown task 'GSM9K'"),
    (["curate", "--validator-options", "{oops"], "not valid JSON"),
    (["grpo", "--guide", "/nonexistent/guide"], "--guide /nonexistent/guide does not exist"),
    (["grpo", "--reward-beta", "inf"], "reward_beta must be a finite number"),
    (["sft", "--learning-rate", "-1"], "learning_rate must be > 0"),
    (["sft", "--corpus", "/nonexistent/curated.jsonl"], "--corpus /nonexistent/curated.jsonl does not exist"),
    (["tasks", "--bogus"], "unrecognized arguments: --bogus"),
    (["score", "--task", "gsm8k", "--predictions", "x.jsonl", "--timeout", "nan"], "--timeout must be a finite"),
    (["score", "--task", "gsm8k", "--predictions", "/nonexistent.jsonl"], "does not exist"),
    (["score", "--task", "bogus", "--predictions", "x"], "invalid choice: 'bogus'"),
    (["bogus"], "unknown command 'bogus'"),
    # the commands that used a plain ArgumentParser before (a usage dump, not one line)
    (["report", "run-dir"], "the following arguments are required: --out"),
    (["check", "m", "--temperature", "x"], "argument --temperature: invalid float value"),
    (["check", "m", "--top-p", "2"], "--top-p must be in (0, 1]"),
    (["check", "m", "--top-p", "5"], "--top-p must be in (0, 1]"),
    (["check", "m", "--temperature", "nan"], "--temperature must be a finite number >= 0"),
    (["check", "m", "--temperature", "-1"], "--temperature must be >= 0"),
    (["sandbox", "bogus"], "invalid choice: 'bogus'"),
    (["demo", "--problems", "0"], "--problems must be an integer >= 1"),
    (["eval", "--core-only", "--out", "o", "--guide-samples", "0"], "guide_samples must be an integer >= 1"),
    (["eval", "--core-only"], "the following arguments are required: --out"),
    # an empty output path was the current directory (issue 24, item 14)
    (["curate", "--out", ""], "--out is empty; give a file path"),
    (["sft", "--output-dir", ""], "output_dir is empty"),
    (["grpo", "--output-dir", ""], "output_dir is empty"),
    (["eval", "--core-only", "--out", ""], "--out is empty"),
])
def test_usage_errors_are_one_line_with_exit_2(args, needle):
    result = _gcop(*args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    if args[0] != "bogus":  # (the unknown-command message adds the command list)
        assert result.stderr.strip().count("\n") == 0, result.stderr


# -- the environment the commands read (issue 24, item 12): each was a traceback ---------------------------

@pytest.mark.parametrize("setting, needle", [
    ("GCOP_RPM=abc", "GCOP_RPM='abc' is not a number"),
    ("GCOP_RPM=inf", "GCOP_RPM='inf' must be a finite number >= 1"),
    ("GCOP_RPM=nan", "GCOP_RPM='nan' must be a finite number >= 1"),
    ("GCOP_ITPM=-1", "GCOP_ITPM='-1' must be a finite number >= 1"),
    ("GCOP_OTPM=0.5", "GCOP_OTPM='0.5' must be a finite number >= 1"),
    ("GCOP_RATE_LIMITS=garbage", "invalid GCOP_RATE_LIMITS entry 'garbage'"),
    ("GCOP_RATE_LIMITS=openai:m=rpm:inf", "rpm must be a finite number >= 1"),
    ("GCOP_RATE_LIMITS=openai:m=rpm:-3", "rpm must be a finite number >= 1"),
    ("GCOP_MAX_CONCURRENCY=inf", "GCOP_MAX_CONCURRENCY='inf' must be a whole number >= 1"),
    ("GCOP_MAX_CONCURRENCY=nan", "GCOP_MAX_CONCURRENCY='nan' must be a whole number >= 1"),
    ("GCOP_MAX_CONCURRENCY=-1", "GCOP_MAX_CONCURRENCY='-1' must be a whole number >= 1"),
    ("GCOP_MAX_CONCURRENCY=0.5", "GCOP_MAX_CONCURRENCY='0.5' must be a whole number >= 1"),
    ("GCOP_RATE_LIMIT_DIR=" + str(REPO_ROOT / "pyproject.toml"), "is a file; point it at a directory"),
    ('GCOP_PRICES={"m": [-1, 2]}', "GCOP_PRICES must be a JSON object"),
    ('GCOP_PRICES={"m": ["nan", 2]}', "GCOP_PRICES must be a JSON object"),
    ("RANK=abc", "RANK='abc' must be a whole number >= 0"),
])
@pytest.mark.parametrize("command", [["eval", "--core-only", "--out", "o", "--core", "openai:m@http://127.0.0.1:9/v1"],
                                     ["check", "openai:m@http://127.0.0.1:9/v1"]], ids=["eval", "check"])
def test_a_malformed_environment_variable_is_one_line_with_exit_2(tmp_path, setting, needle, command):
    import os

    variable, _, value = setting.partition("=")
    result = _gcop(*command, env=dict(os.environ, **{variable: value}), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.parametrize("variable, value", [("GCOP_RPM", "0"), ("GCOP_RPM", "0.0"), ("GCOP_RPM", "off"),
                                             ("GCOP_RATE_LIMITS", "openai:m=rpm:0"), ("GCOP_MAX_CONCURRENCY", "0")])
def test_zero_means_no_limit_as_the_readme_says(monkeypatch, variable, value):
    from gcop_env.cores import check_environment, make_core
    from gcop_env.cores.limits import reset_limiters

    monkeypatch.setenv(variable, value)
    reset_limiters()
    check_environment()
    core = make_core("openai:m@http://127.0.0.1:9/v1", cache=False)
    assert core.limiter.limits.rpm is None
    reset_limiters()
