"""Cores over the real SDKs against fake servers: retries, faults, infra errors, cache, pricing."""

from __future__ import annotations

import time

import gymnasium as gym
import pytest
from support import GOOD_GUIDE
from fake_llm import FakeLLMServer, drop, malformed, slow, status

from gcop_env import CoreError, RetryPolicy, make_core, set_price
from gcop_env.cores import CoreRequest, Message, SamplingParams, parse_core_spec
from gcop_env.cores.pricing import price_tokens

FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)
REQUEST = CoreRequest(messages=(Message("user", "What is 2 + 2?"),), sampling=SamplingParams(max_tokens=16))


def anthropic_core(server, monkeypatch, **kw):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    return make_core("anthropic:claude-3-haiku-20240307", retry=kw.pop("retry", FAST), **kw)


def openai_core(server, **kw):
    return make_core(f"openai:m@{server.openai_base_url}", retry=kw.pop("retry", FAST), **kw)


@pytest.mark.parametrize("fault", [status(429, retry_after="0"), status(529), status(500), status(503),
                                   malformed(), drop()], ids=["429", "529", "500", "503", "malformed", "drop"])
@pytest.mark.parametrize("backend", ["anthropic", "openai"])
def test_transient_faults_are_retried(monkeypatch, backend, fault):
    with FakeLLMServer(lambda p: "four: \\boxed{4}") as server:
        server.faults.extend([fault, fault])
        core = anthropic_core(server, monkeypatch, cache=False) if backend == "anthropic" else openai_core(server, cache=False)
        response = core.complete(REQUEST)
    assert response.text == "four: \\boxed{4}"
    assert server.count() == 3  # two faults, then success


def test_timeout_is_retried(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(slow(3.0))
        core = openai_core(server, cache=False, timeout_s=0.5)
        assert core.complete(REQUEST).text == "ok"
    assert server.count() == 2


def test_retry_after_is_honoured(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(status(429, retry_after="1"))
        core = anthropic_core(server, monkeypatch, cache=False,
                              retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.001, jitter=0.0))
        start = time.monotonic()
        core.complete(REQUEST)
        assert time.monotonic() - start >= 0.95  # waited as told, not the 1 ms backoff


def test_exhausted_retries_raise_core_error_and_are_not_cached(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.extend([status(529)] * 4)
        core = anthropic_core(server, monkeypatch)
        with pytest.raises(CoreError) as err:
            core.complete(REQUEST)
        assert err.value.transient and err.value.attempts == 4 and "529" in str(err.value)
        assert server.count() == 4
        assert core.complete(REQUEST).text == "ok"  # the failure was not cached
        assert server.count() == 5


def test_permanent_errors_fail_at_once(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(status(401))
        core = anthropic_core(server, monkeypatch, cache=False)
        with pytest.raises(CoreError) as err:
            core.complete(REQUEST)
        assert not err.value.transient and server.count() == 1


def test_exhausted_retries_are_an_infra_error_in_the_env_never_a_wrong_answer(solver_server, gsm8k_dir, monkeypatch):
    solver_server.faults.extend([status(529)] * 4)
    core = anthropic_core(solver_server, monkeypatch)
    env = gym.make("GCoP-GSM8K-v0", core=core, data_files=str(gsm8k_dir), limit=20, gamma=0.0, kappa=0.0)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(GOOD_GUIDE)
    assert info["reward_is_task_outcome"] is False
    assert info["error_stage"] == "core" and "529" in info["error"]
    assert "validation" not in info  # nothing was scored
    assert reward == 0.0 and terminated
    env.reset(seed=0)  # the API is back: the same step now scores for real
    _, reward, _, _, info = env.step(GOOD_GUIDE)
    assert info["reward_is_task_outcome"] and info["reward_components"]["task_reward"] == 1.0


@pytest.mark.parametrize("failing_request, stage", [(2, "baseline"), (3, "judge")])
def test_baseline_and_judge_failures_are_infra_errors(solver_server, gsm8k_dir, monkeypatch, failing_request, stage):
    core = anthropic_core(solver_server, monkeypatch, retry=RetryPolicy(max_attempts=1))
    env = gym.make("GCoP-GSM8K-v0", core=core, data_files=str(gsm8k_dir), limit=20, gamma=0.5, kappa=0.5,
                   baseline_samples=1)
    env.reset(seed=0)
    # requests in order: 1 guided core, 2 unguided baseline (one draw), 3 judge
    solver_server.faults.extend([None] * (failing_request - 1) + [status(500)])
    _, reward, _, _, info = env.step(GOOD_GUIDE)
    assert info["reward_is_task_outcome"] is False and info["error_stage"] == stage
    assert reward == 0.0


def test_spec_parsing_and_errors():
    assert parse_core_spec("anthropic:claude-3-5-haiku-20241022") == ("anthropic", "claude-3-5-haiku-20241022", {})
    assert parse_core_spec("openai:qwen@http://127.0.0.1:8000/v1") == ("openai", "qwen", {"base_url": "http://127.0.0.1:8000/v1"})
    assert parse_core_spec("hf:/m?gguf_file=x.gguf") == ("hf", "/m", {"gguf_file": "x.gguf"})
    assert parse_core_spec("anthropic:c?api_version=2023-06-01")[2] == {"api_version": "2023-06-01"}
    for bad in ["claude", "gpt:4", "openai:", "hf:/m?foo=1", "openai:m@ftp://x"]:
        with pytest.raises(ValueError, match="core spec"):
            parse_core_spec(bad)


def test_price_table_and_overrides(monkeypatch):
    assert price_tokens("anthropic", "claude-3-haiku-20240307", 1_000_000, 1_000_000)[0] == pytest.approx(1.50)
    assert price_tokens("anthropic", "claude-3-5-haiku-20241022", 1_000_000, 0)[0] == pytest.approx(0.80)
    assert price_tokens("anthropic", "claude-sonnet-4-5-20250929", 0, 1_000_000)[0] == pytest.approx(15.0)
    assert price_tokens("hf", "anything", 10**6, 10**6) == (0.0, True)
    assert price_tokens("openai", "my-local-model", 10, 10) == (0.0, False)
    set_price("my-local-model", 1.0, 2.0)
    assert price_tokens("openai", "my-local-model", 10**6, 10**6)[0] == pytest.approx(3.0)
    monkeypatch.setenv("GCOP_PRICES", '{"other-model": [0.5, 0.5]}')
    assert price_tokens("openai", "other-model", 2 * 10**6, 0)[0] == pytest.approx(1.0)


def test_anthropic_legacy_api_version_sends_temperature(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        core = make_core("anthropic:claude-3-haiku-20240307?api_version=2023-06-01", cache=False, retry=FAST)
        core.complete(CoreRequest(messages=(Message("user", "hi"),), sampling=SamplingParams(temperature=0.6)))
        (req,) = server.requests
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert headers["anthropic-version"] == "2023-06-01" and req["body"]["temperature"] == 0.6


def test_sample_index_makes_distinct_cache_entries(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        core = openai_core(server)
        for k in (0, 1, 0, 1):
            core.complete(CoreRequest(messages=REQUEST.messages, sample_index=k))
        assert server.count() == 2 and core.cache_hits == 2
