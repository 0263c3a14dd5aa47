"""Live defaults, prices and fail-fast on permanent errors, against loopback servers over the real SDKs."""

from __future__ import annotations

import json
import logging

import gymnasium as gym
import pytest
from support import GOOD_GUIDE, GSM8K_DIR
from fake_llm import FakeLLMServer, api_error, status

from gcop_env import CoreError, RetryPolicy, make_core
from gcop_env.cores import DEFAULT_CORE, DEFAULT_TEACHER, CoreRequest, FatalCoreError, Message, SamplingParams
from gcop_env.cores import pricing
from gcop_env.cores.models import LIFECYCLE, lifecycle, retired_successor
from gcop_env.cores.pricing import lookup_price, price_tokens

FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)
REQUEST = CoreRequest(messages=(Message("user", "What is 2 + 2?"),), sampling=SamplingParams(max_tokens=16))


def anthropic(server, monkeypatch, model="claude-haiku-4-5-20251001", **kw):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    return make_core(f"anthropic:{model}", retry=kw.pop("retry", FAST), **kw)


# -- defaults ----------------------------------------------------------------------------------
def test_defaults_are_current_priced_models():
    from gcop_env.envs.env import DEFAULT_CORE as env_default
    from gcop_env.trainers.config import CurateConfig, GRPORunConfig

    for spec in (DEFAULT_CORE, DEFAULT_TEACHER, env_default, CurateConfig().core, CurateConfig().teacher,
                 GRPORunConfig().core):
        backend, model = spec.split(":", 1)
        assert lifecycle(model) is None, f"default {spec} is retired or deprecated"
        assert lookup_price(backend, model) is not None, f"default {spec} has no price"
    # the paper's cores and the old teacher are known to be gone (or going), with successors
    assert retired_successor("anthropic", "claude-3-haiku-20240307") == DEFAULT_CORE
    assert retired_successor("anthropic", "claude-3-5-haiku-20241022") == DEFAULT_CORE
    assert lifecycle("claude-sonnet-4-5-20250929").status == "deprecated"
    assert {e.status for e in LIFECYCLE} == {"retired", "deprecated"}


def test_price_table_matches_dated_ids_only_and_tiers(caplog):
    assert price_tokens("anthropic", "claude-haiku-4-5-20251001", 10**6, 10**6)[0] == pytest.approx(6.0)
    assert price_tokens("anthropic", "claude-sonnet-5-5", 10**6, 10**6)[0] == pytest.approx(12.0)
    assert price_tokens("openai", "gpt-4o-mini-2024-07-18", 10**6, 0)[0] == pytest.approx(0.15)
    # Haiku 5.5: prompts over 100k tokens bill at the long-context rates
    assert price_tokens("anthropic", "claude-haiku-5-5", 100_000, 0)[0] == pytest.approx(0.01)
    assert price_tokens("anthropic", "claude-haiku-5-5", 100_001, 0)[0] == pytest.approx(100_001 * 0.5 / 1e6)
    # a new model is never priced as an older one with a similar name
    with caplog.at_level(logging.WARNING):
        assert price_tokens("openai", "gpt-5.9-preview", 10**6, 10**6) == (0.0, False)
        assert price_tokens("openai", "gpt-5.9-preview", 10**6, 10**6) == (0.0, False)
    assert sum("gpt-5.9-preview" in r.message and "incomplete" in r.message for r in caplog.records) == 1


def test_unpriced_model_is_marked_in_info_cost(solver_server, caplog):
    with caplog.at_level(logging.WARNING):
        core = make_core(f"openai:my-unlisted-model@{solver_server.openai_base_url}", retry=FAST)
    assert any("my-unlisted-model" in r.message for r in caplog.records)  # warned before any call
    env = gym.make("GCoP-GSM8K-v0", core=core, data_files=str(GSM8K_DIR), limit=3, gamma=0.0, kappa=0.0)
    env.reset(seed=0)
    info = env.step(GOOD_GUIDE)[-1]
    assert info["cost"]["core"]["priced"] is False and info["cost"]["priced"] is False
    assert info["cost"]["core"]["usd"] == 0.0 and info["cost"]["core"]["input_tokens"] > 0


# -- fail fast on permanent errors ---------------------------------------------------------------
PERMANENT = [
    (404, "not_found_error", "model: claude-haiku-4-5-20251001", "model_not_found"),
    (401, "authentication_error", "invalid x-api-key", "authentication"),
    (403, "permission_error", "Your API key does not have permission to use the specified resource.", "permission"),
    (400, "invalid_request_error", "temperature and top_p cannot both be specified for this model.",
     "invalid_request"),
]


@pytest.mark.parametrize("code, error_type, message, kind", PERMANENT, ids=[p[3] for p in PERMANENT])
def test_permanent_errors_are_fatal_and_not_retried(monkeypatch, code, error_type, message, kind):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(api_error(code, error_type, message))
        core = anthropic(server, monkeypatch, cache=False)
        with pytest.raises(FatalCoreError) as err:
            core.complete(REQUEST)
    assert server.count() == 1  # not retried
    e = err.value
    assert e.kind == kind and e.status == code and e.spec == "anthropic:claude-haiku-4-5-20251001"
    assert error_type in str(e) and message in str(e) and "gcop check" in str(e)


@pytest.mark.parametrize("code, kind", [(404, "model_not_found"), (401, "authentication"), (403, "permission"),
                                        (400, "invalid_request"), (422, "invalid_request")])
def test_permanent_errors_are_fatal_on_openai_compatible_servers(code, kind):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(api_error(code, "invalid_request_error", "The model `qwen-typo` does not exist"))
        core = make_core(f"openai:qwen-typo@{server.openai_base_url}", cache=False, retry=FAST)
        with pytest.raises(FatalCoreError) as err:
            core.complete(REQUEST)
    assert server.count() == 1 and err.value.kind == kind and "qwen-typo" in str(err.value)


def test_retired_model_error_names_the_successor(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(api_error(404, "not_found_error", "model: claude-3-5-haiku-20241022"))
        core = anthropic(server, monkeypatch, model="claude-3-5-haiku-20241022", cache=False)
        with pytest.raises(FatalCoreError) as err:
            core.complete(REQUEST)
    assert err.value.successor == DEFAULT_CORE
    assert f"use {DEFAULT_CORE} instead" in str(err.value) and "not_found_error" in str(err.value)


def test_a_prompt_over_the_context_window_is_a_per_step_error_not_fatal(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.append(api_error(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"))
        core = anthropic(server, monkeypatch, cache=False)
        with pytest.raises(CoreError) as err:
            core.complete(REQUEST)
    assert not isinstance(err.value, FatalCoreError) and not err.value.transient and server.count() == 1


def test_transient_errors_keep_the_retry_policy(monkeypatch):
    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.extend([status(529), status(503)])
        core = anthropic(server, monkeypatch, cache=False)
        assert core.complete(REQUEST).text == "ok"
    assert server.count() == 3


def test_fatal_error_stops_env_step_instead_of_an_infra_step(solver_server, monkeypatch):
    core = anthropic(solver_server, monkeypatch, model="claude-3-5-haiku-20241022")
    env = gym.make("GCoP-GSM8K-v0", core=core, data_files=str(GSM8K_DIR), limit=5, gamma=0.5, kappa=0.5)
    env.reset(seed=0)
    solver_server.faults.append(api_error(404, "not_found_error", "model: claude-3-5-haiku-20241022"))
    with pytest.raises(FatalCoreError, match="claude-haiku-4-5"):
        env.step(GOOD_GUIDE)
    assert solver_server.count() == 1  # stopped at the first call: no baseline, no judge


@pytest.mark.parametrize("failing_request, role", [(2, "baseline"), (3, "judge")])
def test_fatal_error_of_baseline_or_judge_stops_the_step(solver_server, monkeypatch, failing_request, role):
    core = anthropic(solver_server, monkeypatch)
    env = gym.make("GCoP-GSM8K-v0", core=core, data_files=str(GSM8K_DIR), limit=5, gamma=0.5, kappa=0.5)
    env.reset(seed=0)
    solver_server.faults.extend([None] * (failing_request - 1) + [api_error(401, "authentication_error", "bad key")])
    with pytest.raises(FatalCoreError, match="authentication_error"):
        env.step(GOOD_GUIDE)


def test_fatal_error_stops_grpo_reward_batch(solver_server, monkeypatch):
    from gcop_env.step.scoring import GuideScorer
    from gcop_env.envs.tasks import get_task
    from gcop_env.trainers.grpo import ShapedReward

    core = anthropic(solver_server, monkeypatch)
    task = get_task("GSM8K")
    problems = task.load(split="test", data_files=str(GSM8K_DIR))[:4]
    reward = ShapedReward(GuideScorer(task.validator(), core), problems, max_workers=4)
    solver_server.faults.extend([api_error(403, "permission_error", "no access")] * 8)
    with pytest.raises(FatalCoreError, match="permission_error"):
        reward(prompts=[""] * 4, completions=[GOOD_GUIDE] * 4, task_id=[p.task_id for p in problems])


def test_fatal_error_stops_curate_with_one_clear_message(monkeypatch, tmp_path, capsys):
    from gcop_env.cli import main

    with FakeLLMServer(lambda p: "ok") as server:
        server.faults.extend([api_error(404, "not_found_error", "model: claude-3-5-sonnet-20241022")] * 50)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        code = main(["curate", "--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test",
                     "--limit", "8", "--workers", "2", "--teacher", "anthropic:claude-3-5-sonnet-20241022",
                     "--core", DEFAULT_CORE, "--out", str(tmp_path / "c.jsonl"), "--preflight", "false"])
        requests = server.count()
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "anthropic:claude-3-5-sonnet-20241022" in err and "not_found_error" in err and "claude-sonnet-5-5" in err
    # a problem sends its M = 4 teacher draws at once: at most M per worker (2) plus one problem's M in a race;
    # the other queued problems were cancelled (all 8 would have sent 32)
    assert requests <= (2 + 1) * 4
    assert not (tmp_path / "c.jsonl").exists() or not (tmp_path / "c.jsonl").read_text().strip()


def test_gcop_prices_env_is_used_for_unlisted_models(monkeypatch):
    monkeypatch.setenv("GCOP_PRICES", json.dumps({"house-model": [1.0, 2.0]}))
    assert price_tokens("openai", "house-model-2026-01-01", 10**6, 10**6) == (pytest.approx(3.0), True)
    assert pricing.lookup_price("hf", "anything") == (0.0, 0.0)


@pytest.mark.parametrize("model, status", [
    ("claude-sonnet-4-20250514", "retired"), ("claude-sonnet-4-0", "retired"), ("claude-opus-4-1-20250805", "retired"),
    ("claude-3-5-sonnet-latest", "retired"), ("claude-3-7-sonnet-20250219", "retired"),
    ("claude-sonnet-4-5", "deprecated"), ("claude-sonnet-4-6", None), ("claude-opus-4-5-20251101", None),
    ("claude-haiku-4-5-20251001", None), ("claude-sonnet-5-5", None), ("claude-haiku-5-5", None),
])
def test_lifecycle_table_matches_dated_ids_and_aliases(model, status):
    entry = lifecycle(model)
    assert (entry.status if entry else None) == status
    if status:
        backend, successor = entry.successor.split(":", 1)
        assert lifecycle(successor) is None and lookup_price(backend, successor) is not None
