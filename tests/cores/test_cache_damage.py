"""A damaged, foreign, read-only or unwritable cache never stops a run and never loses a paid answer."""

from __future__ import annotations

import json
import logging
import os
import sqlite3

import pytest
from fake_llm import FakeLLMServer

from gcop_env import RetryPolicy, make_core
from gcop_env.cores.cache import ResponseCache
from gcop_env.cores import CoreRequest, Message, SamplingParams

REQUEST = CoreRequest(messages=(Message("user", "What is 2 + 2?"),), sampling=SamplingParams(max_tokens=16))
FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.01)
_real_connect = sqlite3.connect


def read_only_connect(path, *args, **kwargs):
    """SQLite's own read-only mode: every write fails as on a read-only file (the tests run as root,
    where chmod does not stop writes)."""
    kwargs.pop("check_same_thread", None)
    return _real_connect(f"file:{path}?mode=ro", *args, uri=True, check_same_thread=False, **kwargs)


def filled_cache(path, n=50):
    cache = ResponseCache(path)
    with FakeLLMServer(lambda p: "four") as server:
        core = make_core(f"openai:m@{server.openai_base_url}", cache=cache, retry=FAST)
        for i in range(n):
            core.complete(CoreRequest(messages=(Message("user", f"question {i} " + "x" * 200),)))
    cache.close()
    return path


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_schema", "overwritten_pages"])
def test_damaged_cache_is_moved_aside_and_a_fresh_one_started(tmp_path, caplog, damage):
    path = tmp_path / "responses.sqlite"
    if damage == "garbage":
        path.write_bytes(b"not a database, just bytes " * 400)
    elif damage == "wrong_schema":
        conn = _real_connect(path)
        conn.execute("CREATE TABLE responses (k TEXT, v BLOB)")
        conn.commit()
        conn.close()
    else:
        filled_cache(path)
        data = bytearray(path.read_bytes())
        if damage == "truncated":
            data = data[: len(data) // 3]
        else:  # scribble over every page after the first (the b-tree pages)
            for page in range(1, len(data) // 4096):
                data[page * 4096 + 8: page * 4096 + 200] = b"\xff" * 192
        path.write_bytes(bytes(data))
    original = path.read_bytes()
    with caplog.at_level(logging.WARNING):
        cache = ResponseCache(path)
    assert cache.enabled and cache.moved_aside is not None
    assert cache.moved_aside.read_bytes() == original  # kept, not deleted
    assert any("damaged" in r.message and str(cache.moved_aside) in r.message for r in caplog.records)
    with FakeLLMServer(lambda p: "four") as server:
        core = make_core(f"openai:m@{server.openai_base_url}", cache=cache, retry=FAST)
        assert core.complete(REQUEST).text == "four" and core.complete(REQUEST).cached
        assert server.count() == 1


def test_a_healthy_cache_is_kept(tmp_path):
    path = filled_cache(tmp_path / "responses.sqlite", n=5)
    cache = ResponseCache(path)
    assert cache.enabled and cache.moved_aside is None and len(cache) == 5


def test_read_only_cache_degrades_to_no_cache_with_one_warning(tmp_path, monkeypatch, caplog):
    path = filled_cache(tmp_path / "responses.sqlite", n=1)
    monkeypatch.setattr("gcop_env.cores.cache.sqlite3.connect", read_only_connect)
    with caplog.at_level(logging.WARNING):
        cache = ResponseCache(path)
        with FakeLLMServer(lambda p: "four") as server:
            core = make_core(f"openai:m@{server.openai_base_url}", cache=cache, retry=FAST)
            assert core.complete(REQUEST).text == "four"  # paid and returned, not a crash
            assert core.complete(REQUEST).text == "four"
            assert server.count() == 2  # no cache: each call is made
    assert not cache.enabled
    warnings = [r for r in caplog.records if "WITHOUT a cache" in r.message]
    assert len(warnings) == 1 and "readonly" in warnings[0].message.lower()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_file_by_permissions(tmp_path):
    path = filled_cache(tmp_path / "responses.sqlite", n=1)
    os.chmod(path, 0o444)
    assert not ResponseCache(path).enabled


def test_unwritable_cache_directory_degrades_to_no_cache(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING):
        cache = ResponseCache(blocker / "sub" / "responses.sqlite")  # the parent cannot be created
    assert not cache.enabled and cache.get("k") is None and cache.put("k", None) is False
    assert sum("WITHOUT a cache" in r.message for r in caplog.records) == 1


def test_a_failed_write_never_loses_the_paid_response(tmp_path, monkeypatch, caplog):
    cache = ResponseCache(tmp_path / "responses.sqlite")
    assert cache.enabled
    cache.close()
    monkeypatch.setattr("gcop_env.cores.cache.sqlite3.connect", read_only_connect)  # the disk turns read-only mid-run
    with caplog.at_level(logging.WARNING), FakeLLMServer(lambda p: "four") as server:
        core = make_core(f"openai:m@{server.openai_base_url}", cache=cache, retry=FAST)
        for i in range(3):
            response = core.complete(CoreRequest(messages=(Message("user", f"q{i}"),)))
            assert response.text == "four" and not response.cached
    assert cache.write_errors == 3 and core.calls == 3
    assert sum("writing to the cache failed" in r.message for r in caplog.records) == 1  # one warning, not three


@pytest.mark.parametrize("stored", [
    {"input_tokens": -100000}, {"output_tokens": float("nan")}, {"input_tokens": "abc"}, {"text": None},
    {"text": 17}, {"cost_usd": -12.0},
], ids=["negative-tokens", "nan-tokens", "tokens-not-a-number", "no-text", "text-not-a-string", "negative-cost"])
def test_a_cached_reply_that_is_not_a_valid_reply_is_a_miss(tmp_path, stored):
    # What an older version (or a hand edit) may have stored: replayed, it would turn into a negative
    # cost or a wrong answer on every later run. It is a miss: the call is paid again, and stored right.
    path = filled_cache(tmp_path / "responses.sqlite", n=0)
    cache = ResponseCache(path)
    with FakeLLMServer(lambda p: "four") as server:
        core = make_core(f"openai:m@{server.openai_base_url}", cache=cache, retry=FAST)
        key = core.request_key(REQUEST)
        good = core.complete(REQUEST)
        conn = sqlite3.connect(path)
        value = json.loads(conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()[0])
        value.update(stored)
        with conn:
            conn.execute("UPDATE responses SET value = ? WHERE key = ?", (json.dumps(value), key))
        conn.close()
        assert cache.get(key) is None
        again = core.complete(REQUEST)
        assert server.count() == 2 and not again.cached and again.input_tokens == good.input_tokens >= 0
        assert core.complete(REQUEST).cached and server.count() == 2
