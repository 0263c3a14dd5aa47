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


# -- what a 200 reply says: its usage and its content (issue 24, items 2 and 3) -----------------------

def _usage(backend: str, value) -> "callable":
    """An ``edit_reply`` putting ``value`` in the reply's input-token count."""
    def edit(reply: dict) -> dict:
        reply["usage"]["input_tokens" if backend == "anthropic" else "prompt_tokens"] = value
        return reply
    return edit


def _core(backend, server, monkeypatch, **kw):
    return anthropic_core(server, monkeypatch, **kw) if backend == "anthropic" else openai_core(server, **kw)


BAD_USAGE = [-100000, -1, float("nan"), float("inf"), 1.5, "abc", [3], {"n": 1}]
# The OpenAI SDK itself reads "12" as 12 and true as 1 (pydantic's lax mode): counts, not malformed.
BAD_USAGE_CASES = [(b, v) for b in ("anthropic", "openai") for v in BAD_USAGE] + [("anthropic", "12"), ("anthropic", True)]


@pytest.mark.parametrize("backend,value", BAD_USAGE_CASES, ids=[f"{b}-{v!r}" for b, v in BAD_USAGE_CASES])
def test_a_reply_with_bad_usage_is_malformed_never_a_number_and_never_cached(monkeypatch, backend, value):
    set_price("m", 1.0, 2.0)
    with FakeLLMServer(lambda p: "four: \\boxed{4}") as server:
        server.edit_reply = _usage(backend, value)
        core = _core(backend, server, monkeypatch, retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.001))
        with pytest.raises(CoreError) as err:
            core.complete(REQUEST)
        assert "usage" in str(err.value) and server.count() == 2  # malformed like a broken body: retried
        server.edit_reply = None
        response = core.complete(REQUEST)  # the bad reply was not cached: this one is paid
        assert server.count() == 3 and not response.cached and response.input_tokens > 0 and response.cost_usd > 0


@pytest.mark.parametrize("edit", [
    lambda r: {},  # a 200 with an empty JSON object
    lambda r: {k: v for k, v in r.items() if k != "content"},  # a message without content
    lambda r: {**r, "content": None},
], ids=["empty-object", "no-content", "content-null"])
def test_an_anthropic_reply_without_content_is_infra_and_never_cached(monkeypatch, edit):
    with FakeLLMServer(lambda p: "four: \\boxed{4}") as server:
        server.edit_reply = edit
        core = anthropic_core(server, monkeypatch, retry=RetryPolicy(max_attempts=1))
        with pytest.raises(CoreError, match="content"):
            core.complete(REQUEST)
        server.edit_reply = None
        assert core.complete(REQUEST).text == "four: \\boxed{4}" and server.count() == 2


@pytest.mark.parametrize("edit", [
    lambda r: {**r, "choices": [{"index": 0, "message": {"role": "assistant"}, "finish_reason": "stop"}]},
    lambda r: {**r, "choices": [{"index": 0, "message": {"role": "assistant", "content": None},
                                 "finish_reason": "stop"}]},
    lambda r: {**r, "choices": [{"index": 0, "finish_reason": "stop"}]},
    lambda r: {},
], ids=["no-content", "content-null", "no-message", "empty-object"])
def test_an_openai_reply_without_content_is_infra_and_never_cached(edit):
    with FakeLLMServer(lambda p: "four: \\boxed{4}") as server:
        server.edit_reply = edit
        core = openai_core(server, retry=RetryPolicy(max_attempts=1))
        with pytest.raises(CoreError, match="content|choices"):
            core.complete(REQUEST)
        server.edit_reply = None
        assert core.complete(REQUEST).text == "four: \\boxed{4}" and server.count() == 2


@pytest.mark.parametrize("backend", ["anthropic", "openai"])
def test_an_empty_answer_is_still_an_answer(monkeypatch, backend):
    # The bound of the rule above: content that is there but empty is the model's (wrong) answer.
    with FakeLLMServer(lambda p: "") as server:
        if backend == "anthropic":
            server.edit_reply = lambda r: {**r, "content": []}
        core = _core(backend, server, monkeypatch, retry=RetryPolicy(max_attempts=1))
        assert core.complete(REQUEST).text == ""


def test_a_refusal_is_the_answer_text(monkeypatch):
    # OpenAI states a refusal in message.refusal with content null: the model answered, with a refusal.
    with FakeLLMServer(lambda p: "") as server:
        server.edit_reply = lambda r: {**r, "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": None, "refusal": "I can't help with that."}}]}
        assert openai_core(server, retry=RetryPolicy(max_attempts=1)).complete(REQUEST).text == "I can't help with that."


def test_make_core_checks_its_retry_policy_up_front():
    with pytest.raises(ValueError, match="max_attempts"):
        make_core("openai:m@http://127.0.0.1:9/v1", cache=False, retry={"max_attempts": 0})
    with pytest.raises(TypeError, match="retry must be a RetryPolicy"):
        make_core("openai:m@http://127.0.0.1:9/v1", cache=False, retry="abc")
    assert make_core("openai:m@http://127.0.0.1:9/v1", cache=False, retry={"max_attempts": 2}).retry.max_attempts == 2
