"""The argument engine: flags and --config files resolved into a checked config, errors on one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from gcop_env.trainers.config import CurateConfig
from support import REPO_ROOT

from gcop_env.cli.args import parse_config


def _gcop(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "gcop_env.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, **kwargs)


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


def test_a_value_that_starts_with_a_dash_reaches_its_own_check(capsys):
    # issue 24, item 14: `--guide-price -1,2` was "expected one argument" (argparse took -1,2 for a flag)
    from gcop_env.cli.args import OneLineErrorParser

    parser = OneLineErrorParser(prog="t")
    parser.add_argument("--price")
    parser.add_argument("--flag", action="store_true")
    parser.add_argument("rest", nargs="*")
    assert parser.parse_args(["--price", "-1,2"]).price == "-1,2"
    assert parser.parse_args(["--price", "-inf", "--flag"]).price == "-inf"
    for lacking_a_value in (["--price", "--flag"], ["--price"]):  # a real flag is still a flag
        with pytest.raises(SystemExit):
            parser.parse_args(lacking_a_value)
    assert parser.parse_args(["--", "--price", "-1"]).rest == ["--price", "-1"]
