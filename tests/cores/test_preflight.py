"""``gcop check`` and the preflight that curate / grpo run before spending anything."""

from __future__ import annotations

import json
import socket

import pytest
from support import GSM8K_DIR
from fake_llm import FakeLLMServer, api_error
from support import curate_argv

from gcop_env.cores.preflight import CheckStatus, PreflightFailed, check_spec, preflight
from gcop_env.cli import main
from gcop_env.cores import DEFAULT_CORE, SamplingParams


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_reports_model_sampling_and_price(capsys):
    with FakeLLMServer(lambda p: "OK") as server:
        code = main(["check", f"openai:gpt-4o-mini@{server.openai_base_url}", "--temperature", "0.7"])
        (request,) = server.requests
    out = capsys.readouterr().out
    assert code == 0 and "OK" in out and "model id: gpt-4o-mini" in out
    assert "sampling: accepted" in out and "$0.15 / $0.6 per MTok" in out
    assert request["body"]["temperature"] == 0.7 and request["body"]["max_tokens"] <= 16  # tiny, and the run's sampling


def test_check_says_when_sampling_is_not_sent(monkeypatch):
    with FakeLLMServer(lambda p: "OK") as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        result = check_spec("anthropic:claude-haiku-4-5-20251001", SamplingParams(temperature=0.7))
        legacy = check_spec("anthropic:claude-haiku-4-5-20251001?api_version=2023-06-01", SamplingParams(temperature=0.7))
    assert result.ok and result.sampling_accepted is None and "api_version=2023-06-01" in result.sampling_note
    assert result.price_per_mtok == (1.0, 5.0) and result.lifecycle is None
    assert legacy.ok and legacy.sampling_accepted is True and legacy.sampling_sent["temperature"] == 0.7


def test_check_finds_a_retired_model_and_a_refused_temperature(monkeypatch, capsys):
    with FakeLLMServer(lambda p: "OK") as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        server.faults.append(api_error(404, "not_found_error", "model: claude-3-haiku-20240307"))
        code = main(["check", "anthropic:claude-3-haiku-20240307"])
        server.faults.append(api_error(400, "invalid_request_error",
                                       "temperature: values other than the default are not supported by this model"))
        refused = check_spec("anthropic:claude-haiku-5-5?api_version=2023-06-01", SamplingParams(temperature=0.7))
    out = capsys.readouterr().out
    assert code == 1 and "CONFIG_ERROR" in out and f"use {DEFAULT_CORE}" in out and "retired on 2026-04-20" in out
    assert refused.status is CheckStatus.CONFIG_ERROR and refused.sampling_accepted is False


@pytest.mark.parametrize("backend,edit", [
    ("anthropic", lambda r: {}),
    ("anthropic", lambda r: {**r, "usage": {"input_tokens": -100000, "output_tokens": 1}}),
    ("openai", lambda r: {**r, "choices": [{"index": 0, "message": {"role": "assistant"}, "finish_reason": "stop"}]}),
    ("openai", lambda r: {**r, "usage": {"prompt_tokens": "many", "completion_tokens": 1}}),
], ids=["anthropic-empty", "anthropic-negative-usage", "openai-no-content", "openai-usage-not-a-number"])
def test_check_fails_a_server_whose_200_replies_are_malformed(monkeypatch, capsys, backend, edit):
    with FakeLLMServer(lambda p: "OK") as server:
        server.edit_reply = edit
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        spec = "anthropic:claude-haiku-4-5-20251001" if backend == "anthropic" else f"openai:m@{server.openai_base_url}"
        code = main(["check", spec])
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert code == 1 and not first.endswith(": OK") and "malformed" in first


def test_check_unreachable_and_bad_specs():
    results = preflight([f"openai:m@http://127.0.0.1:{free_port()}/v1", "gpt-4o", "hf:/no/such/model"],
                        timeout_s=2)
    assert [r.status for r in results] == [CheckStatus.UNREACHABLE, CheckStatus.BAD_SPEC, CheckStatus.CONFIG_ERROR]
    assert all(not r.ok and r.message for r in results)


def test_curate_preflight_stops_a_retired_teacher_before_anything_is_spent(monkeypatch, tmp_path, capsys):
    with FakeLLMServer(lambda p: "OK") as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        server.faults.append(api_error(404, "not_found_error", "model: claude-sonnet-4-20250514"))
        code = main(["curate", "--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", "3",
                     "--teacher", "anthropic:claude-sonnet-4-20250514", "--core", DEFAULT_CORE,
                     "--out", str(tmp_path / "c.jsonl")])
        prompts = [r["body"]["messages"][-1]["content"] for r in server.requests]
    err = capsys.readouterr().err
    assert code == 1 and "preflight failed" in err and "claude-sonnet-5-5" in err and "Traceback" not in err
    assert len(prompts) == 2 and all("single word OK" in p for p in prompts)  # one tiny call per spec, no curation
    out = tmp_path / "c.jsonl"  # curate checks --out is writable up front (it may leave it empty): no row in it
    assert not out.exists() or out.read_text() == ""


def test_grpo_preflight_runs_before_the_guide_loads(monkeypatch, tmp_path):
    from gcop_env.trainers.config import GRPORunConfig
    from gcop_env.trainers.grpo import train_grpo

    with FakeLLMServer(lambda p: "OK") as server:
        server.faults.append(api_error(401, "authentication_error", "invalid x-api-key"))
        config = GRPORunConfig(core=f"openai:m@{server.openai_base_url}", guide=str(tmp_path / "no-guide"),
                               data_files=str(GSM8K_DIR), split="test", limit=2, output_dir=str(tmp_path / "g"),
                               reward_gamma=0.0)
        with pytest.raises(PreflightFailed, match="authentication_error"):
            train_grpo(config)  # a missing guide would fail later: the preflight stopped it first
        assert server.count() == 1


def test_curate_summary_records_the_sampling_sent(curation_world, tmp_path):
    from gcop_env.cli.train import curate_cli

    out = tmp_path / "curated.jsonl"
    assert curate_cli(curate_argv(curation_world.server, out, limit=2)) == 0
    sampling = json.loads((tmp_path / "curated.summary.json").read_text())["sampling"]
    assert sampling["core"]["sent"]["temperature"] == 0.7 and sampling["core"]["deterministic"] is False
    assert sampling["teacher"]["requested"]["temperature"] == 0.7
