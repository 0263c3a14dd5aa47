"""Rate limits shared by every caller of an endpoint, over the real SDKs against loopback servers.

The servers here enforce their own limit over a sliding window (as providers do, scaled down to a
second so that the tests are short) and answer 429 with ``retry-after`` beyond it. The tests count
what the server refused; none asserts a duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import gymnasium as gym
import pytest
from support import GOOD_GUIDE, REPO_ROOT
from fake_llm import FakeLLMServer, SlidingWindowLimit, status

from gcop_env import CoreError, RetryPolicy, make_core
from gcop_env.cores import CoreRequest, Message, RateLimits, SamplingParams
from gcop_env.cores.limits import (EndpointLimiter, Need, env_limits, estimate_input_tokens,
                                   parse_duration, parse_rate_headers, reset_limiters, retry_after_from_headers,
                                   set_max_concurrency)

RETRY = RetryPolicy(max_attempts=8, initial_backoff_s=0.01, max_backoff_s=0.05)
ANTHROPIC = "anthropic:claude-haiku-4-5-20251001"


@pytest.fixture(autouse=True)
def _fresh_limiters(monkeypatch):
    for var in ("GCOP_RPM", "GCOP_ITPM", "GCOP_OTPM", "GCOP_MAX_CONCURRENCY", "GCOP_RATE_LIMITS",
                "GCOP_RATE_LIMIT_DIR"):
        monkeypatch.delenv(var, raising=False)
    reset_limiters()
    yield
    reset_limiters()


def request(i: int, max_tokens: int = 16) -> CoreRequest:
    return CoreRequest(messages=(Message("user", f"question number {i}: what is {i} + {i}?"),),
                       sampling=SamplingParams(max_tokens=max_tokens))


def core_for(backend: str, server, monkeypatch, **kw):
    if backend == "anthropic":
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        return make_core(ANTHROPIC, cache=False, retry=kw.pop("retry", RETRY), **kw)
    return make_core(f"openai:m@{server.openai_base_url}", cache=False, retry=kw.pop("retry", RETRY), **kw)


def run_threads(core, n_requests: int, threads: int = 16) -> list:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: core.complete(request(i)), range(n_requests)))


# -- (a) a 16-thread run at the server's own limit gets no 429 ---------------------------------------

@pytest.mark.parametrize("backend", ["anthropic", "openai"])
def test_sixteen_threads_at_the_server_limit_get_no_429(monkeypatch, backend):
    gate = SlidingWindowLimit(limit=60, window_s=1.0)  # 60 requests per minute, the minute scaled to 1 s
    with FakeLLMServer(lambda p: "ok") as server:
        server.gate = gate
        core = core_for(backend, server, monkeypatch, limits=RateLimits(rpm=60, window_s=1.0))
        responses = run_threads(core, 150)
    assert [r.text for r in responses] == ["ok"] * 150
    assert gate.refused == 0 and gate.admitted == 150 and server.count() == 150
    assert gate.most_in_window >= 16  # the run went up to the limit, it was not merely slow
    stats = core.limiter.stats()
    assert stats.admitted == 150 and stats.waits.get("requests", 0) > 0 and stats.rate_limited == 0


def test_the_same_run_without_limits_is_refused_so_the_server_enforces(monkeypatch):
    gate = SlidingWindowLimit(limit=20, window_s=3.0)  # a long window: 40 requests cannot spread over it
    with FakeLLMServer(lambda p: "ok") as server:
        server.gate = gate
        core = core_for("openai", server, monkeypatch, retry=RetryPolicy(max_attempts=20, initial_backoff_s=0.01))
        responses = run_threads(core, 40)
    assert all(r.text == "ok" for r in responses)  # retries and the shared pause recover every request
    assert gate.refused > 0 and gate.admitted == 40
    stats = core.limiter.stats()
    assert stats.rate_limited == gate.refused and stats.pauses >= 1


def test_every_core_of_one_endpoint_shares_one_limiter(monkeypatch):
    """The env's core, the judge and a teacher built separately still count against one limit."""
    gate = SlidingWindowLimit(limit=12, window_s=1.0)
    with FakeLLMServer(lambda p: "ok") as server:
        server.gate = gate
        limits = RateLimits(rpm=12, window_s=1.0)
        cores = [core_for("anthropic", server, monkeypatch, limits=limits) for _ in range(3)]
        assert cores[0].limiter is cores[1].limiter is cores[2].limiter
        with ThreadPoolExecutor(12) as pool:
            texts = list(pool.map(lambda i: cores[i % 3].complete(request(i)).text, range(30)))
    assert texts == ["ok"] * 30 and gate.refused == 0 and gate.admitted == 30


# -- (b) 429 storms through the env: no step lost, none scored wrong --------------------------------

def _gsm8k_envs(server, gsm8k_dir, n, monkeypatch, retry=RETRY):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    core = make_core(ANTHROPIC, retry=retry, timeout_s=5)
    return [gym.make("GCoP-GSM8K-v0", core=core, split="test", data_files=str(gsm8k_dir), limit=20, kappa=0.0)
            for _ in range(n)], core


def _step_all(envs, steps_per_env):
    def episode(i):
        env, out = envs[i], []
        for k in range(steps_per_env):
            env.reset(seed=i * steps_per_env + k)
            _, reward, terminated, _, info = env.step(GOOD_GUIDE)
            out.append((terminated, info))
        return out
    with ThreadPoolExecutor(len(envs)) as pool:
        return [step for steps in pool.map(episode, range(len(envs))) for step in steps]


def test_a_429_storm_loses_no_step_and_scores_none_wrong(solver_server, gsm8k_dir, monkeypatch):
    solver_server.faults.extend([status(429, retry_after="0.2")] * 40)
    envs, core = _gsm8k_envs(solver_server, gsm8k_dir, 8, monkeypatch)
    steps = _step_all(envs, 4)
    assert len(steps) == 32 and all(terminated for terminated, _ in steps)
    for _, info in steps:  # every step is a task outcome, and the (always right) core's answer is right
        assert info["reward_is_task_outcome"] and "error" not in info
        assert info["reward_components"]["task_reward"] == 1.0
    stats = core.limiter.stats()
    assert stats.rate_limited == 40 and stats.pauses >= 1 and stats.waits.get("paused", 0) >= 1
    assert solver_server.count() == stats.admitted  # every attempt the limiter let through reached the server


def test_a_storm_longer_than_the_retries_is_an_infra_error_never_a_wrong_answer(solver_server, gsm8k_dir,
                                                                                 monkeypatch):
    refusing = threading.Event()
    refusing.set()
    solver_server.gate = lambda: status(429, retry_after="0.01") if refusing.is_set() else None
    envs, core = _gsm8k_envs(solver_server, gsm8k_dir, 4, monkeypatch,
                             retry=RetryPolicy(max_attempts=3, initial_backoff_s=0.01))
    steps = _step_all(envs, 2)
    assert len(steps) == 8
    for terminated, info in steps:
        assert terminated and not info["reward_is_task_outcome"]
        # the core never answered, so nothing was validated: the 0.0 beside it is no verdict
        assert "429" in info["error"] and info["error_stage"] == "core" and "validation" not in info
    refusing.clear()
    again = _step_all(envs, 2)  # the same problems once the storm is over: every one scored, right
    assert all(info["reward_is_task_outcome"] and info["reward_components"]["task_reward"] == 1.0 for _, info in again)


def test_a_429_pauses_every_caller_of_the_endpoint(monkeypatch):
    """One caller is refused (and gives up at once); the next caller, another core, waits out the
    retry-after instead of being refused too."""
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(status(429, retry_after="1.5"))
        first = core_for("anthropic", server, monkeypatch, retry=RetryPolicy(max_attempts=1))
        second = core_for("anthropic", server, monkeypatch)
        with pytest.raises(CoreError):
            first.complete(request(1))
        assert second.complete(request(2)).text == "ok"
    assert server.count() == 2  # the second caller was not refused: it waited
    stats = second.limiter.stats()
    assert stats.rate_limited == 1 and stats.pauses == 1 and stats.waits == {"paused": 1}


# -- (c) the providers' rate-limit headers ---------------------------------------------------------

def test_anthropic_headers_are_parsed():
    now = datetime(2026, 11, 30, 1, 0, 0, tzinfo=timezone.utc)
    headers = {"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "7",
               "anthropic-ratelimit-requests-reset": "2026-11-30T01:00:12Z",
               "Anthropic-RateLimit-Input-Tokens-Limit": "50000", "anthropic-ratelimit-input-tokens-remaining": "0",
               "anthropic-ratelimit-input-tokens-reset": "2026-11-30T01:00:01.500000+00:00",
               "anthropic-ratelimit-output-tokens-limit": "10000",
               "anthropic-ratelimit-output-tokens-remaining": "9000",
               "anthropic-ratelimit-output-tokens-reset": "2026-11-30T01:00:06Z", "retry-after": "3"}
    quotas = parse_rate_headers(headers, now=now.timestamp())
    assert set(quotas) == {"requests", "input_tokens", "output_tokens"}
    assert (quotas["requests"].limit, quotas["requests"].remaining, quotas["requests"].reset_after_s) == (50, 7, 12)
    assert quotas["input_tokens"].remaining == 0 and quotas["input_tokens"].reset_after_s == pytest.approx(1.5)
    assert quotas["output_tokens"].reset_after_s == pytest.approx(6)


def test_openai_headers_are_parsed():
    headers = {"x-ratelimit-limit-requests": "500", "x-ratelimit-remaining-requests": "499",
               "x-ratelimit-reset-requests": "120ms", "x-ratelimit-limit-tokens": "30000",
               "x-ratelimit-remaining-tokens": "12", "x-ratelimit-reset-tokens": "6m0s"}
    quotas = parse_rate_headers(headers)
    assert set(quotas) == {"requests", "tokens"}
    assert (quotas["requests"].limit, quotas["requests"].remaining) == (500, 499)
    assert quotas["requests"].reset_after_s == pytest.approx(0.12)
    assert quotas["tokens"].reset_after_s == pytest.approx(360)
    assert parse_duration("1h2m3.5s") == pytest.approx(3723.5) and parse_duration("2s") == 2
    assert parse_duration("soon") is None and parse_rate_headers({"content-type": "x"}) == {}


@pytest.mark.parametrize("backend", ["anthropic", "openai"])
def test_spent_quota_in_a_success_headers_holds_the_next_request_until_the_reset(monkeypatch, backend):
    """The server says, on a successful reply, that no request is left for 1 s: the next request
    waits for the reset instead of being sent and refused."""
    def quota():
        if backend == "anthropic":
            reset = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
            return {"anthropic-ratelimit-requests-limit": "1", "anthropic-ratelimit-requests-remaining": "0",
                    "anthropic-ratelimit-requests-reset": reset}
        return {"x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "1s"}

    with FakeLLMServer(lambda p: "ok") as server:
        server.reply_headers = quota
        core = core_for(backend, server, monkeypatch)  # no configured limit: the headers alone slow it down
        assert core.complete(request(1)).text == "ok"
        assert core.complete(request(2)).text == "ok"
    stats = core.limiter.stats()
    assert stats.headers_seen == 2 and stats.waits == {"server_requests": 1} and server.count() == 2


def test_a_429_without_retry_after_pauses_until_the_quota_resets(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(status(429, x_ratelimit_remaining_requests="0", x_ratelimit_reset_requests="1s"))
        core = core_for("openai", server, monkeypatch)
        assert core.complete(request(1)).text == "ok"
    stats = core.limiter.stats()
    assert stats.rate_limited == 1 and stats.waits == {"paused": 1} and server.count() == 2


# -- what a server says may be garbage: retry-after and quota headers (issue 24, item 8) -----------------

def test_retry_after_is_clamped_and_non_finite_values_are_absent():
    assert retry_after_from_headers({"retry-after": "-5"}) == 0.0
    assert retry_after_from_headers({"retry-after-ms": "-100"}) == 0.0
    for garbage in ("nan", "NaN", "-inf", "inf", "Infinity", "1e999"):
        assert retry_after_from_headers({"retry-after": garbage}) is None, garbage
        assert retry_after_from_headers({"retry-after-ms": garbage}) is None, garbage
    assert retry_after_from_headers({"retry-after-ms": "nan", "retry-after": "2"}) == 2.0  # the next one counts
    assert retry_after_from_headers({"retry-after": "1.5"}) == 1.5


def test_quota_headers_with_garbage_numbers_are_left_out():
    headers = {"x-ratelimit-limit-requests": "nan", "x-ratelimit-remaining-requests": "-inf",
               "x-ratelimit-reset-requests": "nan", "x-ratelimit-remaining-tokens": "5",
               "x-ratelimit-reset-tokens": "-3s"}
    quotas = parse_rate_headers(headers)
    assert quotas["requests"].limit is None and quotas["requests"].remaining is None
    assert quotas["requests"].reset_after_s is None
    assert quotas["tokens"].remaining == 5 and quotas["tokens"].reset_after_s in (None, 0.0)
    assert parse_duration("nan") is None and parse_duration("-5") is None and parse_duration("inf") is None


@pytest.mark.parametrize("value", ["-5", "nan", "-inf", "inf", "1e999"])
@pytest.mark.parametrize("backend", ["anthropic", "openai"])
def test_a_429_with_a_garbage_retry_after_is_retried_not_a_crash(monkeypatch, backend, value):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(status(429, retry_after=value))
        core = core_for(backend, server, monkeypatch)
        start = time.monotonic()
        assert core.complete(request(1)).text == "ok"
    assert server.count() == 2 and time.monotonic() - start < 30  # waited a backoff (or the 1 s pause), no more
    assert core.limiter.stats().rate_limited == 1


def test_env_step_and_check_survive_a_garbage_retry_after(solver_server, gsm8k_dir, monkeypatch, capsys):
    from gcop_env.cli import main

    solver_server.faults.extend([status(429, retry_after="nan"), status(429, retry_after="-5")])
    env = gym.make("GCoP-GSM8K-v0", core=f"openai:m@{solver_server.openai_base_url}", data_files=str(gsm8k_dir),
                   limit=2, gamma=0.0, kappa=0.0, retry=RETRY)
    env.reset(seed=0)
    _, _, _, _, info = env.step(GOOD_GUIDE)
    assert info["reward_is_task_outcome"] and info["reward_components"]["task_reward"] == 1.0
    with FakeLLMServer(lambda p: "OK") as server:
        server.faults.append(status(429, retry_after="-inf"))
        assert main(["check", f"openai:m@{server.openai_base_url}"]) == 0 and server.count() == 2


# -- tokens: estimated before, settled after ---------------------------------------------------------

def test_tokens_are_reserved_then_settled_to_the_reported_usage(monkeypatch):
    with FakeLLMServer(lambda p: "one two three") as server:
        core = core_for("openai", server, monkeypatch, limits=RateLimits(itpm=10_000, otpm=10_000))
        req = request(7, max_tokens=500)
        ticket, _, _ = core.limiter.try_acquire(Need.of(req))
        assert ticket.booked == {"input_tokens": estimate_input_tokens(req), "output_tokens": 500}
        core.limiter.settle(ticket, {"input_tokens": 0, "output_tokens": 0})
        response = core.complete(req)
    booked = core.limiter.in_window()
    # the fake server counts words: the booking is the usage it reported, not the estimate or max_tokens
    assert booked["input_tokens"] == response.input_tokens == 8 and booked["output_tokens"] == response.output_tokens == 3
    assert booked["in_flight"] == 0


def test_a_failed_attempt_keeps_its_request_and_frees_the_output_it_never_generated(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(status(500))
        core = core_for("openai", server, monkeypatch, limits=RateLimits(rpm=100, otpm=10_000),
                        retry=RetryPolicy(max_attempts=1))
        with pytest.raises(CoreError):
            core.complete(request(1, max_tokens=400))
    assert core.limiter.in_window() == {"requests": 1, "output_tokens": 0, "in_flight": 0}


def test_sliding_window_with_an_injected_clock():
    now = [1000.0]
    limiter = EndpointLimiter("test", RateLimits(rpm=3, itpm=100, window_s=60), clock=lambda: now[0])
    tickets = [limiter.try_acquire(Need(10, 0))[0] for _ in range(3)]
    assert all(tickets)
    ticket, wait, reason = limiter.try_acquire(Need(10, 0))
    assert ticket is None and reason == "requests" and wait is None  # held until one of the three is answered
    now[0] += 30
    for t in tickets:  # answered 30 s later: the entries now leave the window at 1090, not 1060
        limiter.settle(t, {"input_tokens": 10, "output_tokens": 0})
    now[0] = 1061
    ticket, wait, reason = limiter.try_acquire(Need(10, 0))
    assert reason == "requests" and 29 <= wait <= 29.2
    now[0] = 1090.2
    fourth = limiter.try_acquire(Need(10, 0))[0]
    assert fourth is not None
    limiter.settle(fourth, {"input_tokens": 10, "output_tokens": 0})
    # an input estimate over the whole limit is capped at it, so it waits for an empty window, not forever
    assert limiter.try_acquire(Need(1000, 0))[2] == "input_tokens"
    now[0] = 1200
    assert limiter.try_acquire(Need(1000, 0))[0].booked["input_tokens"] == 100


def test_concurrency_caps_per_endpoint_and_per_process(monkeypatch):
    in_flight, peak, lock = [0], [0], threading.Lock()

    def responder(prompt):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.02)
        with lock:
            in_flight[0] -= 1
        return "ok"

    with FakeLLMServer(responder) as server:
        core = core_for("openai", server, monkeypatch, limits=RateLimits(max_concurrency=3))
        run_threads(core, 30)
        assert peak[0] == 3 and core.limiter.stats().waits.get("concurrency", 0) > 0
        peak[0] = 0
        reset_limiters()
        set_max_concurrency(2)
        other = core_for("anthropic", server, monkeypatch)
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda i: (other if i % 2 else core).complete(request(100 + i)), range(30)))
        assert peak[0] == 2  # two endpoints, one process-wide cap


# -- configuration --------------------------------------------------------------------------------

def test_environment_variables_and_per_spec_overrides(monkeypatch):
    monkeypatch.setenv("GCOP_RPM", "50")
    monkeypatch.setenv("GCOP_OTPM", "8000")
    monkeypatch.setenv("GCOP_RATE_LIMITS", f"{ANTHROPIC}=rpm:5,itpm:40000,concurrency:4;"
                       "anthropic:claude-x?api_version=2023-06-01=off;openai:m@http://127.0.0.1:9/v1=rpm:7")
    assert env_limits("openai:gpt", "openai:gpt") == RateLimits(rpm=50, otpm=8000)
    assert env_limits(ANTHROPIC, ANTHROPIC) == RateLimits(rpm=5, itpm=40000, otpm=8000, max_concurrency=4)
    assert env_limits("anthropic:claude-x?api_version=2023-06-01", "anthropic:claude-x") == RateLimits()
    assert env_limits("openai:m@http://127.0.0.1:9/v1", "openai:m").rpm == 7
    core = make_core("openai:m@http://127.0.0.1:9/v1", cache=False)
    assert core.limiter.limits.rpm == 7
    assert make_core("openai:m@http://127.0.0.1:9/v1", cache=False, limits=RateLimits(rpm=3)).limiter.limits.rpm == 3
    assert make_core("hf:/nowhere", cache=False).limiter.limits == RateLimits()  # local models: not from GCOP_RPM


@pytest.mark.parametrize("variable, value, words", [
    ("GCOP_RATE_LIMITS", "anthropic:m=rpm:fast", "invalid number"),
    ("GCOP_RATE_LIMITS", "anthropic:m=rps:5", "expected KEY:VALUE"),
    ("GCOP_RATE_LIMITS", "rpm:5", "expected SPEC="),
    ("GCOP_RPM", "lots", "is not a number"),
    ("GCOP_MAX_CONCURRENCY", "2.5", "whole number"),
])
def test_bad_settings_say_what_is_wrong(monkeypatch, variable, value, words):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=words):
        make_core("anthropic:m", cache=False)
    with pytest.raises(ValueError, match="must be a number >= 1"):
        RateLimits(rpm=0)


def test_a_misspelt_env_kwarg_field_names_the_valid_ones(gsm8k_dir):
    with pytest.raises(ValueError, match="unknown rate limit field.*'rps'.*valid: rpm"):
        gym.make("GCoP-GSM8K-v0", core="openai:m@http://127.0.0.1:9/v1", data_files=str(gsm8k_dir), limit=1,
                 rate_limits={"rps": 5})


def test_a_second_core_tightens_the_shared_limits(monkeypatch):
    a = make_core("openai:m@http://127.0.0.1:9/v1", cache=False, limits=RateLimits(rpm=10, itpm=500))
    b = make_core("openai:m@http://127.0.0.1:9/v1", cache=False, limits=RateLimits(rpm=20, otpm=300))
    assert a.limiter is b.limiter and a.limiter.limits == RateLimits(rpm=10, itpm=500, otpm=300)
    with pytest.raises(ValueError, match="another window"):
        make_core("openai:m@http://127.0.0.1:9/v1", cache=False, limits=RateLimits(rpm=5, window_s=1))


def test_env_kwarg_reaches_the_core_and_round_trips_through_the_spec(solver_server, gsm8k_dir):
    env = gym.make("GCoP-GSM8K-v0", core=f"openai:m@{solver_server.openai_base_url}", data_files=str(gsm8k_dir),
                   limit=3, rate_limits=RateLimits(rpm=90, otpm=9000))
    assert env.unwrapped.core.limiter.limits == RateLimits(rpm=90, otpm=9000)
    spec = json.loads(env.spec.to_json())
    assert spec["kwargs"]["rate_limits"]["rpm"] == 90
    again = gym.make(gym.envs.registration.EnvSpec.from_json(env.spec.to_json()))
    assert again.unwrapped.core.limiter.limits == RateLimits(rpm=90, otpm=9000)


def test_a_pickled_core_finds_the_same_limiter(monkeypatch):
    import pickle

    core = make_core("openai:m@http://127.0.0.1:9/v1", cache=False, limits=RateLimits(rpm=10))
    assert pickle.loads(pickle.dumps(core)).limiter is core.limiter


# -- (d) across processes --------------------------------------------------------------------------

WORKER = r"""
import os, sys, time
from concurrent.futures import ThreadPoolExecutor
from gcop_env import RetryPolicy, make_core
from gcop_env.cores import CoreRequest, Message, RateLimits, SamplingParams
url, shared, worker, go, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
limits = RateLimits(rpm=12, window_s=window, shared_dir=shared or None)
core = make_core(f"openai:m@{url}", cache=False, limits=limits,
                 retry=RetryPolicy(max_attempts=30, initial_backoff_s=0.01, max_backoff_s=0.1))
open(go + f".ready{worker}", "w").close()
while not os.path.exists(go):
    time.sleep(0.01)
def one(i):
    req = CoreRequest(messages=(Message("user", f"worker {worker} question {i}"),), sampling=SamplingParams(max_tokens=8))
    return core.complete(req).text
with ThreadPoolExecutor(4) as pool:
    texts = list(pool.map(one, range(12)))
print(sum(t == "ok" for t in texts), core.limiter.stats().rate_limited)
"""


def _run_workers(tmp_path, url, shared_dir, window_s, n=3):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs = [subprocess.Popen([sys.executable, str(script), url, shared_dir, str(w), str(go), str(window_s)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(n)]
    deadline = time.monotonic() + 120  # start-up only (imports); generous, so it cannot flake
    while not all((tmp_path / f"go.ready{w}").exists() for w in range(n)):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a worker did not start"
        time.sleep(0.05)
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    return [tuple(int(x) for x in out.split()) for out, _ in outputs]


def test_processes_share_one_limit_through_a_ledger_file(tmp_path):
    gate = SlidingWindowLimit(limit=12, window_s=1.0)
    with FakeLLMServer(lambda p: "ok") as server:
        server.gate = gate
        results = _run_workers(tmp_path, server.openai_base_url, str(tmp_path / "ledger"), 1.0)
    assert results == [(12, 0)] * 3  # each worker: 12 answers, no 429 seen
    assert gate.refused == 0 and gate.admitted == 36
    assert gate.most_in_window > 4  # more than one worker's 4 threads: the processes did overlap
    assert list((tmp_path / "ledger").glob("ratelimit-*.json"))


def test_processes_without_a_shared_ledger_overrun_the_server(tmp_path):
    """The control: each process keeps to the limit alone, so together they exceed it."""
    gate = SlidingWindowLimit(limit=12, window_s=3.0)  # long: 3 x 12 first requests cannot spread over it
    with FakeLLMServer(lambda p: "ok") as server:
        server.gate = gate
        results = _run_workers(tmp_path, server.openai_base_url, "", 3.0)
    assert [answered for answered, _ in results] == [12] * 3  # retries still recover every request
    assert gate.refused > 0


CHILD = r"""
import sys
from gcop_env.cores.limits import EndpointLimiter, Need, RateLimits
limiter = EndpointLimiter("crash-test", RateLimits(max_concurrency=1, shared_dir=sys.argv[1]))
assert limiter.try_acquire(Need(1, 1))[0] is not None
print("booked", flush=True)
sys.stdin.readline()  # hold the request "in flight" until killed
"""


def test_a_killed_process_does_not_hold_its_requests_in_flight_forever(tmp_path):
    shared = str(tmp_path / "ledger")
    child = subprocess.Popen([sys.executable, "-c", CHILD, shared], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    try:
        assert child.stdout.readline().strip() == "booked"
        limiter = EndpointLimiter("crash-test", RateLimits(max_concurrency=1, shared_dir=shared))
        assert limiter.try_acquire(Need(1, 1))[2] == "concurrency"  # the child's request holds the one slot
    finally:
        child.kill()
        child.wait(timeout=60)
    ticket, _, reason = limiter.try_acquire(Need(1, 1))
    assert ticket is not None and reason is None


def _ledger_with_pending(tmp_path, key: str, tickets: list[str]) -> EndpointLimiter:
    """A shared limiter of one request in flight whose ledger already holds ``tickets`` (as another process
    would have left them)."""
    limiter = EndpointLimiter(key, RateLimits(max_concurrency=1, shared_dir=str(tmp_path)))
    limiter.settle(limiter.try_acquire(Need(1, 1))[0], {"input_tokens": 1, "output_tokens": 1})  # makes the file
    (ledger,) = tmp_path.glob("ratelimit-*.json")
    state = json.loads(ledger.read_text())
    state["pending"] = {ticket: {"requests": 1} for ticket in tickets}
    ledger.write_text(json.dumps(state))
    return limiter


def test_a_booking_whose_pid_was_reused_is_dropped(tmp_path):
    # issue 24, item 7: pid 1 is alive (this container's init), but it is not the process that booked:
    # its start time differs. Before, the booking was kept for ever and every admission waited.
    from gcop_env.cores.limits.ledger import _NAMESPACE, process_start

    assert process_start(1) not in (None, "12345")
    limiter = _ledger_with_pending(tmp_path, "reused", [f"1:{_NAMESPACE}:12345:{time.time():.3f}:99:1"])
    ticket, _, reason = limiter.try_acquire(Need(1, 1))
    assert ticket is not None and reason is None


def test_bookings_expire_by_age_and_a_live_one_is_kept(tmp_path):
    from gcop_env.cores.limits.ledger import _NAMESPACE, MAX_PENDING_AGE_S, process_start

    now = time.time()
    old_elsewhere = f"4242:other-namespace:1:{now - MAX_PENDING_AGE_S - 1:.3f}:1:1"  # another container, too old
    limiter = _ledger_with_pending(tmp_path / "a", "aged", [old_elsewhere, "1:2:3"])  # and one in an older form
    assert limiter.try_acquire(Need(1, 1))[0] is not None
    live = f"{os.getppid()}:{_NAMESPACE}:{process_start(os.getppid())}:{now:.3f}:1:1"  # a live process, booked now
    young_elsewhere = f"4242:other-namespace:1:{now:.3f}:1:1"
    for i, ticket in enumerate((live, young_elsewhere)):
        limiter = _ledger_with_pending(tmp_path / f"k{i}", "kept", [ticket])
        assert limiter.try_acquire(Need(1, 1))[2] == "concurrency"


@pytest.mark.parametrize("state", [
    {"ledger": [], "pending": {}, "paused_until": 0.0, "server": {}},
    {"ledger": {"requests": {}, "input_tokens": {}, "output_tokens": {}}, "pending": {"x": 5}, "paused_until": 0.0,
     "server": {}},
    {"ledger": {"requests": {"1": "a"}, "input_tokens": {}, "output_tokens": {}}, "pending": {}, "paused_until": 0.0,
     "server": {}},
    {"ledger": {"requests": {}, "input_tokens": {}, "output_tokens": {}}, "pending": {}, "paused_until": "soon",
     "server": {}},
    {"ledger": {"requests": {}, "input_tokens": {}, "output_tokens": {}}, "pending": {}, "paused_until": 0.0,
     "server": {"requests": 3}},
], ids=["ledger-list", "pending-number", "slot-string", "paused-string", "server-number"])
def test_a_ledger_of_the_wrong_shape_starts_afresh(tmp_path, caplog, state):
    # issue 24, item 14: valid JSON of another shape was an infra error on every step, for ever
    limiter = EndpointLimiter("shape", RateLimits(rpm=5, shared_dir=str(tmp_path)))
    limiter.settle(limiter.try_acquire(Need(1, 1))[0], {"input_tokens": 1, "output_tokens": 1})
    (ledger,) = tmp_path.glob("ratelimit-*.json")
    ledger.write_text(json.dumps(state))
    assert limiter.try_acquire(Need(1, 1))[0] is not None and "unreadable" in caplog.text
    assert limiter.try_acquire(Need(1, 1))[0] is not None  # and the next admission too


def test_the_first_sigterm_ends_a_wait_on_a_booking_that_never_settles(tmp_path, gsm8k_dir):
    """A run waiting on the shared ledger (here: a booking this test holds and never settles) stops at the
    first SIGTERM, as it does when it is working: exit 130, nothing sent. Before, it took three signals."""
    with FakeLLMServer(lambda p: "\\boxed{1}") as server:
        spec = f"openai:gpt-4o-mini@{server.openai_base_url}"
        shared = tmp_path / "ledger"
        holder = EndpointLimiter(f"openai:gpt-4o-mini@{server.openai_base_url}",
                                 RateLimits(max_concurrency=1, shared_dir=str(shared)))
        assert holder.try_acquire(Need(1, 1))[0] is not None  # held for the whole test
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), GCOP_RATE_LIMIT_DIR=str(shared),
                   GCOP_RATE_LIMITS=f"{spec}=concurrency:1")
        out = tmp_path / "o"
        proc = subprocess.Popen([sys.executable, "-m", "gcop_env.cli", "eval", "--task", "GSM8K", "--data-files",
                                 str(gsm8k_dir), "--core", spec, "--core-only", "--limit", "2", "--no-progress",
                                 "--no-preflight", "--out", str(out)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.time() + 120
            while time.time() < deadline and not (out / "run_config.json").exists():
                time.sleep(0.1)
            time.sleep(1.0)  # well into its wait for the one slot
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, err
        assert server.count() == 0 and "Traceback" not in err
        records = out / "records.jsonl"
        assert not records.exists() or records.read_text() == ""  # a call that never started is not a row


def test_the_first_signal_ends_a_long_retry_backoff(monkeypatch):
    from gcop_env.cores.base import CallInterrupted
    from gcop_env.utils.interrupt import stop_on_signal

    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(status(429, retry_after="100"))
        core = core_for("openai", server, monkeypatch)
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
        start = time.monotonic()
        with stop_on_signal(announce=lambda text: None):
            timer.start()
            with pytest.raises(CallInterrupted, match="backoff"):
                core.complete(request(1))  # before: slept the whole 100 s first
        timer.join()
    assert time.monotonic() - start < 30 and server.count() == 1


def test_a_damaged_ledger_file_starts_afresh(tmp_path, caplog):
    limiter = EndpointLimiter("damaged", RateLimits(rpm=5, shared_dir=str(tmp_path)))
    limiter.settle(limiter.try_acquire(Need(1, 1))[0], {"input_tokens": 1, "output_tokens": 1})
    (ledger,) = tmp_path.glob("ratelimit-*.json")
    assert json.loads(ledger.read_text())["ledger"]["requests"]
    ledger.write_text('{"ledger": {"requests": [1, 2')  # a crash mid-write
    assert limiter.try_acquire(Need(1, 1))[0] is not None
    assert "unreadable" in caplog.text and limiter.in_window()["requests"] == 1


def test_an_unusable_ledger_is_an_infra_error_before_the_call_and_never_loses_a_paid_answer(tmp_path, caplog):
    limiter = EndpointLimiter("unusable", RateLimits(rpm=5, shared_dir=str(tmp_path)))
    ticket = limiter.try_acquire(Need(1, 1))[0]
    limiter._store.path.unlink()
    limiter._store.path.mkdir()  # the ledger's name is now a directory: it cannot be opened
    limiter.settle(ticket, {"input_tokens": 1, "output_tokens": 1})  # after a paid call: a warning, no error
    assert "could not be updated" in caplog.text
    with pytest.raises(CoreError, match="cannot be used.*GCOP_RATE_LIMIT_DIR") as err:
        limiter.try_acquire(Need(1, 1))
    assert not err.value.transient
