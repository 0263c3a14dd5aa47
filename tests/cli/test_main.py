"""The `gcop` command: a usage error of any sub-command is one line on stderr with exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import REPO_ROOT


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
    (["sandbox", "bogus"], "invalid choice: 'bogus'"),
    (["demo", "--problems", "0"], "--problems must be an integer >= 1"),
    (["eval", "--core-only", "--out", "o", "--guide-samples", "0"], "guide_samples must be an integer >= 1"),
    (["eval", "--core-only"], "the following arguments are required: --out"),
])
def test_usage_errors_are_one_line_with_exit_2(args, needle):
    result = _gcop(*args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr
    if args[0] != "bogus":  # (the unknown-command message adds the command list)
        assert result.stderr.strip().count("\n") == 0, result.stderr
