"""Cache keys identify the endpoint, the API version and the weights; the sampling in a key is the
sampling really sent; identical concurrent requests are made once; the hf core keeps the global RNG."""

from __future__ import annotations

import copy
import os
import pickle
import threading
import time

import pytest
from fake_llm import FakeLLMServer

from gcop_env import RetryPolicy, make_core
from gcop_env.cores.cache import ResponseCache, request_key
from gcop_env.cores import CoreRequest, Message, SamplingParams

FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.01)


def ask(text: str, **sampling) -> CoreRequest:
    return CoreRequest(messages=(Message("user", text),), sampling=SamplingParams(max_tokens=16, **sampling))


def test_two_servers_under_one_model_name_never_share_answers(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    with FakeLLMServer(lambda p: "answer from A") as a, FakeLLMServer(lambda p: "answer from B") as b:
        core_a = make_core(f"openai:same-model@{a.openai_base_url}", cache=cache, retry=FAST)
        core_b = make_core(f"openai:same-model@{b.openai_base_url}", cache=cache, retry=FAST)
        assert core_a.complete(ask("q")).text == "answer from A"
        assert core_b.complete(ask("q")).text == "answer from B"
        # both are cached, separately: asking again pays nothing and keeps the answers apart
        assert core_a.complete(ask("q")).text == "answer from A"
        assert core_b.complete(ask("q")).text == "answer from B"
        assert (a.count(), b.count()) == (1, 1) and len(cache) == 2


def test_base_url_from_the_environment_is_part_of_the_key(tmp_path, monkeypatch):
    cache = ResponseCache(tmp_path / "c.sqlite")
    with FakeLLMServer(lambda p: "A") as a, FakeLLMServer(lambda p: "B") as b:
        monkeypatch.setenv("OPENAI_BASE_URL", a.openai_base_url)
        assert make_core("openai:m", cache=cache, retry=FAST).complete(ask("q")).text == "A"
        monkeypatch.setenv("OPENAI_BASE_URL", b.openai_base_url)
        assert make_core("openai:m", cache=cache, retry=FAST).complete(ask("q")).text == "B"
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", a.url)
        assert make_core("anthropic:claude-haiku-4-5", cache=cache, retry=FAST).complete(ask("q")).text == "A"
        monkeypatch.setenv("ANTHROPIC_BASE_URL", b.url)
        assert make_core("anthropic:claude-haiku-4-5", cache=cache, retry=FAST).complete(ask("q")).text == "B"
    assert len(cache) == 4


def test_api_version_variants_do_not_share_answers(tmp_path, monkeypatch):
    answers = iter(["default version", "legacy version", "unexpected third call"])
    with FakeLLMServer(lambda p: next(answers)) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        default = make_core("anthropic:claude-haiku-4-5", retry=FAST)
        legacy = make_core("anthropic:claude-haiku-4-5?api_version=2023-06-01", retry=FAST)
        assert default.complete(ask("q")).text == "default version"
        assert legacy.complete(ask("q")).text == "legacy version"
        assert default.complete(ask("q")).text == "default version" and server.count() == 2


def test_sampling_not_sent_is_not_in_the_key_and_responses_show_what_was_sent(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        core = make_core("anthropic:claude-haiku-4-5", retry=FAST)
        cold = core.complete(ask("q", temperature=0.0))
        warm = core.complete(ask("q", temperature=0.9))  # the API version cannot apply either temperature
        assert server.count() == 1 and warm.cached
        body = server.requests[0]["body"]
        assert "temperature" not in body and "top_p" not in body
        assert cold.sampling == {"max_tokens": 16}
        assert not core.is_deterministic(SamplingParams(temperature=0.0))

        legacy = make_core("anthropic:claude-haiku-4-5?api_version=2023-06-01", retry=FAST)
        assert legacy.complete(ask("q", temperature=0.0)).sampling == {"max_tokens": 16, "temperature": 0.0}
        assert legacy.complete(ask("q", temperature=0.9)).sampling == {"max_tokens": 16, "temperature": 0.9}
        assert server.count() == 3  # the legacy version sends temperature, so it keys on it
        assert server.requests[-1]["body"]["temperature"] == 0.9
        assert legacy.is_deterministic(SamplingParams(temperature=0.0))
        assert not legacy.is_deterministic(SamplingParams(temperature=0.7))

        openai_core = make_core(f"openai:m@{server.openai_base_url}", retry=FAST)
        response = openai_core.complete(ask("q", temperature=0.0, top_p=0.5))
        assert response.sampling == {"temperature": 0.0, "top_p": 0.5, "max_tokens": 16}
        assert openai_core.is_deterministic(SamplingParams(temperature=0.0))


def test_info_shows_the_sampling_actually_sent(solver_server, monkeypatch, gsm8k_dir):
    import gymnasium as gym
    from support import GOOD_GUIDE

    monkeypatch.setenv("ANTHROPIC_BASE_URL", solver_server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    env = gym.make("GCoP-GSM8K-v0", core="anthropic:claude-haiku-4-5", data_files=str(gsm8k_dir), limit=3,
                   gamma=0.0, kappa=0.0, temperature=0.7, retry=FAST)
    env.reset(seed=0)
    info = env.step(GOOD_GUIDE)[-1]
    assert info["core_sampling"] == {"max_tokens": 1024}  # temperature 0.7 asked, not sent


def test_identical_concurrent_requests_are_made_once():
    gate = threading.Event()

    def slow_answer(prompt):
        gate.wait(10)
        return "shared answer"

    with FakeLLMServer(slow_answer) as server:
        core = make_core(f"openai:m@{server.openai_base_url}", retry=FAST)
        results: list = [None] * 16
        errors: list = []

        def worker(i):
            try:
                results[i] = core.complete(ask("the same question"))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while server.count() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # give the other 15 time to arrive while the first call is still open
        gate.set()
        for t in threads:
            t.join(20)
    assert not errors and server.count() == 1
    assert all(r.text == "shared answer" for r in results)
    assert sum(not r.cached for r in results) == 1 and core.calls == 1 and core.cache_hits == 15
    assert sum(r.spent_usd for r in results) == results[0].cost_usd  # paid once


def test_a_failed_inflight_call_fails_its_waiters_and_is_not_cached():
    from fake_llm import status

    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.extend([status(500)] * 2)
        core = make_core(f"openai:m@{server.openai_base_url}", retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.2))
        outcomes: list = []

        def worker():
            try:
                outcomes.append(core.complete(ask("q")).text)
            except Exception as exc:  # noqa: BLE001
                outcomes.append(type(exc).__name__)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert server.count() == 2 and outcomes == ["CoreError"] * 4
        assert core.complete(ask("q")).text == "ok"  # nothing was cached


def test_lone_surrogates_never_crash_the_cache(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    bad = CoreRequest(messages=(Message("user", "strategy \ud800 with a lone surrogate"),))
    other = CoreRequest(messages=(Message("user", "strategy \udfff with a lone surrogate"),))
    key = request_key("openai", "m", bad, "v1")
    assert key != request_key("openai", "m", other, "v1") and len(key) == 64
    from gcop_env.cores import CoreResponse

    response = CoreResponse(text="echo \ud800", input_tokens=1, output_tokens=1, latency_s=0.0, backend="openai",
                            model="m")
    assert cache.put(key, response)
    assert cache.get(key).text == "echo \ud800"


def test_counters_are_exact_under_threads_and_close_closes_every_connection(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")

    def worker():
        for i in range(200):
            cache.get(f"missing-{i}")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.misses == 1600
    connections = list(cache._connections)
    assert len(connections) >= 8  # one per thread
    cache.close()
    import sqlite3

    for conn in connections:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    assert cache.get("missing-0") is None  # usable again after close


def test_cores_and_caches_pickle_and_copy(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    core = make_core("openai:m@http://127.0.0.1:9/v1", cache=cache, retry=FAST)
    clone = pickle.loads(pickle.dumps(core))
    assert clone.spec == core.spec and clone.cache.path == cache.path
    assert clone.request_key(ask("q")) == core.request_key(ask("q"))
    assert copy.deepcopy(core) is core  # gym.make copies share one core


# -- hf: weights fingerprint and a local generator ------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("transformers")
    from tiny_guide import build_tiny_guide

    return build_tiny_guide(tmp_path_factory.mktemp("tiny") / "m", ["What is 1 + 1?", "What is 2 + 3?"])


def test_hf_key_changes_when_the_weights_are_retrained_in_place(tiny_model, tmp_path):
    from gcop_env.cores.hf_core import weights_fingerprint

    import shutil

    path = shutil.copytree(tiny_model, tmp_path / "ckpt")
    before = make_core(f"hf:{path}", cache=False).request_key(ask("q"))
    assert make_core(f"hf:{path}", cache=False).request_key(ask("q")) == before  # stable
    weights = next(path.glob("*.safetensors"))
    data = weights.read_bytes()
    weights.write_bytes(data)  # "retrained": same size, new mtime
    os.utime(weights, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    assert make_core(f"hf:{path}", cache=False).request_key(ask("q")) != before
    assert weights_fingerprint("org/not-downloaded") == weights_fingerprint("org/not-downloaded")


def test_hf_sampling_uses_a_local_generator_not_the_global_rng(tiny_model):
    import torch

    core = make_core(f"hf:{tiny_model}", cache=False)
    request = CoreRequest(messages=(Message("user", "What is 1 + 1?"),),
                          sampling=SamplingParams(temperature=1.0, max_tokens=12))
    core.complete(request)  # load once, outside the measured span
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    first = core.complete(request).text
    second = core.complete(request).text
    after = torch.rand(4)
    assert torch.equal(after, expected), "the hf core moved the global RNG"
    assert first == second  # same sample_index, same sample
    others = {core.complete(CoreRequest(messages=request.messages, sampling=request.sampling, sample_index=i)).text
              for i in range(1, 6)}
    assert len(others | {first}) > 1  # distinct sample indices give distinct samples
    greedy = SamplingParams(temperature=0.0, max_tokens=12)
    assert core.is_deterministic(greedy) and core.sent_sampling(greedy)["do_sample"] is False


def test_a_lone_surrogate_in_the_guide_text_never_crashes_a_step(solver_server, gsm8k_dir):
    import gymnasium as gym
    from support import GOOD_GUIDE

    env = gym.make("GCoP-GSM8K-v0", core=f"openai:m@{solver_server.openai_base_url}", data_files=str(gsm8k_dir),
                   limit=2, gamma=0.0, kappa=0.0, retry=FAST)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(GOOD_GUIDE.replace("<strategy>", "<strategy>\ud800 "))
    assert terminated and isinstance(reward, float)  # scored, rejected or an infra error: a defined result


def test_any_str_gives_a_key_and_round_trips_through_the_cache(tmp_path):
    import random

    from gcop_env.cores import CoreResponse

    rng = random.Random(7)
    cache = ResponseCache(tmp_path / "c.sqlite")
    keys = set()
    for i in range(2000):  # code points from the whole range, lone surrogates and NUL included
        text = "".join(chr(rng.choice([rng.randrange(0x110000), rng.randrange(0xD800, 0xE000), 0])) for _ in range(20))
        key = request_key("openai", "m", CoreRequest(messages=(Message("user", text),), system=text[:3]), "v1")
        assert len(key) == 64 and key == request_key("openai", "m", CoreRequest(
            messages=(Message("user", text),), system=text[:3]), "v1")
        keys.add(key)
        if i % 20 == 0:
            assert cache.put(key, CoreResponse(text=text, input_tokens=1, output_tokens=1, latency_s=0.0,
                                               backend="openai", model="m"))
            assert cache.get(key).text == text
    assert len(keys) == 2000
