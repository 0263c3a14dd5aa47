"""The GSM8K environment end to end, against fake Anthropic/OpenAI servers over real SDKs."""

from __future__ import annotations

import os

import gymnasium as gym
import pytest
from support import GOOD_GUIDE, ScriptedSolver, gsm8k_golds
from fake_llm import FakeLLMServer
from gymnasium.utils.env_checker import check_env

import gcop_env
from gcop_env import RetryPolicy, make_core
from gcop_env.step.scoring import DEFAULT_STOCHASTIC_BASELINE_SAMPLES as STOCHASTIC_DRAWS

FAST_RETRY = RetryPolicy(max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.05)


def make_env(server, gsm8k_dir, backend="anthropic", **kwargs):
    if backend == "anthropic":
        # the SDK's own environment variables, as a user would set them
        os.environ["ANTHROPIC_BASE_URL"], os.environ["ANTHROPIC_API_KEY"] = server.url, "test-key"
        core = make_core("anthropic:claude-haiku-4-5-20251001", retry=FAST_RETRY, timeout_s=5)
    else:
        core = make_core(f"openai:local-model@{server.openai_base_url}", retry=FAST_RETRY, timeout_s=5)
    kwargs.setdefault("limit", 20)
    return gym.make("GCoP-GSM8K-v0", core=core, split="test", data_files=str(gsm8k_dir), **kwargs)


@pytest.mark.parametrize("backend", ["anthropic", "openai"])
def test_good_strategy_is_rewarded(solver_server, gsm8k_dir, backend):
    env = make_env(solver_server, gsm8k_dir, backend, beta=0.1, gamma=0.5, kappa=0.5)
    obs, info = env.reset(seed=0)
    assert "<strategy>" in obs and env.unwrapped.problem.question in obs
    _, reward, terminated, truncated, info = env.step(GOOD_GUIDE)
    rc = info["reward_components"]
    assert terminated and not truncated
    assert info["reward_is_task_outcome"] and "error" not in info
    assert rc["structure_ok"] and rc["task_reward"] == 1.0
    assert rc["unguided_reward"] == 0.0 and rc["reward_delta"] == 1.0 and rc["harm_penalty"] == 0.0
    assert rc["judge_score"] == pytest.approx(0.7)  # (8 + 6) / 20
    assert reward == pytest.approx(1.0 + 0.1 + 0.5 * 0.7)
    assert rc["shaped"] == pytest.approx(reward)
    cost = info["cost"]
    # the default anthropic: path sends no temperature (the model samples), so ΔR's baseline is a mean of draws
    draws = STOCHASTIC_DRAWS if backend == "anthropic" else 1
    assert cost["core"]["calls"] == 1 and cost["baseline"]["calls"] == draws and cost["judge"]["calls"] == 1
    assert cost["core"]["input_tokens"] > 0 and cost["core"]["output_tokens"] > 0
    if backend == "anthropic":  # Claude Haiku 4.5: $1 / $5 per million tokens
        expected = (cost["core"]["input_tokens"] * 1.0 + cost["core"]["output_tokens"] * 5.0) / 1e6
        assert cost["core"]["usd"] == pytest.approx(expected)
    assert solver_server.count() == 2 + draws


def test_request_reaches_anthropic_api_with_guided_prompt(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir, gamma=0.0, kappa=0.0)
    env.reset(seed=1)
    env.step(GOOD_GUIDE)
    (req,) = solver_server.requests
    headers = {k.lower(): v for k, v in req["headers"].items()}
    assert req["path"] == "/v1/messages"
    assert headers.get("x-api-key") == "test-key" or headers.get("authorization") == "Bearer test-key"
    assert "temperature" not in req["body"]  # API version 2026-10-21 rejects sampling parameters
    content = req["body"]["messages"][0]["content"]
    assert "List every quantity" in content and "\\boxed{}" in content
    assert env.unwrapped.problem.question in content


@pytest.mark.parametrize("guide", [
    "", "just an answer: 42", "<strategy></strategy>", "<strategy>a</strategy><strategy>b</strategy>",
    "<think>unclosed <strategy>x</strategy>", "<strategy>x</strategy> trailing words",
    "<strategy>" + "x" * 5000 + "</strategy>",
])
def test_malformed_strategy_gets_zero_and_calls_nothing(solver_server, gsm8k_dir, guide):
    env = make_env(solver_server, gsm8k_dir, gamma=0.5, kappa=0.5)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(guide)
    assert reward == 0.0 and terminated
    assert info["structure_ok"] is False and info["structure_error"]
    assert info["reward_is_task_outcome"] is True
    assert info["cost"]["total_usd"] == 0.0 and info["cost"]["total_tokens"] == 0
    assert solver_server.count() == 0


def test_harm_penalty_when_guidance_hurts(gsm8k_dir):
    solver = ScriptedSolver(gsm8k_golds(), unguided_correct=True)
    with FakeLLMServer(solver) as server:
        env = make_env(server, gsm8k_dir, beta=0.1, gamma=0.0, kappa=0.5)
        env.reset(seed=0)
        _, reward, _, _, info = env.step("<strategy>Do it the HARMFUL way.</strategy>")
    rc = info["reward_components"]
    assert rc["task_reward"] == 0.0 and rc["unguided_reward"] == 1.0
    assert rc["reward_delta"] == -1.0 and rc["harm_penalty"] == pytest.approx(0.5)
    assert reward == pytest.approx(0.1 - 0.5)
    assert server.count() == 1 + STOCHASTIC_DRAWS  # guided + the baseline draws, no judge (gamma = 0)


def test_baseline_runs_once_per_problem_and_judge_off_when_gamma_zero(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir, gamma=0.0, kappa=0.5, cache=False)
    for i in range(3):
        env.reset(options={"task_id": "gsm8k/test/3"})
        _, _, _, _, info = env.step(GOOD_GUIDE.replace("step by step", f"step by step ({i})"))
        assert info["cost"]["baseline"]["calls"] == (STOCHASTIC_DRAWS if i == 0 else 0)
        assert info["cost"]["judge"]["calls"] == 0
    assert solver_server.count() == 3 + STOCHASTIC_DRAWS  # three guided calls, one baseline (its draws)


def test_kappa_zero_means_no_baseline_calls(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir, gamma=0.0, kappa=0.0)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(GOOD_GUIDE)
    assert info["reward_components"]["unguided_reward"] is None
    assert solver_server.count() == 1 and reward == pytest.approx(1.1)


def test_leaky_strategy_gets_judge_zero(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir, gamma=0.5, kappa=0.0)
    env.reset(options={"task_id": "gsm8k/test/0"})
    gold = env.unwrapped.problem.reference
    # the deterministic check: the gold number is in the strategy. J = 0 is known, so the judge is
    # not asked (and not paid): the only requests are the guided core call and the baseline
    before = solver_server.count()
    _, _, _, _, info = env.step(f"<strategy>Work it out; it comes to {gold}.</strategy>")
    assert info["judge"]["deterministic_leak"] and info["reward_components"]["judge_score"] == 0.0
    assert not info["judge"]["llm_called"] and info["reward_components"]["leak"]
    judge_cost = {k: v for k, v in info["cost"]["judge"].items() if k != "priced"}
    assert judge_cost == {"calls": 0, "cached_calls": 0, "input_tokens": 0, "output_tokens": 0,
                                     "usd": 0.0, "spent_usd": 0.0, "latency_s": 0.0}
    prompts = [solver_server._last_user_text(r["body"]["messages"]) for r in solver_server.requests[before:]]
    assert not any(p.startswith("You review a strategy") for p in prompts)
    assert solver_server.count() - before == 1  # the guided core call only (kappa = 0: no baseline)
    # the LLM judge's flag
    env.reset(options={"task_id": "gsm8k/test/0"})
    _, _, _, _, info = env.step("<strategy>A LEAKY strategy with no numbers.</strategy>")
    assert info["judge"]["llm_leak"] and not info["judge"]["deterministic_leak"]
    assert info["reward_components"]["judge_score"] == 0.0 and info["reward_components"]["leak"]


def test_unparseable_judge_reply_scores_zero_and_says_so(gsm8k_dir):
    solver = ScriptedSolver(gsm8k_golds(), judge_reply="I like it a lot!")
    with FakeLLMServer(solver) as server:
        env = make_env(server, gsm8k_dir, gamma=0.5, kappa=0.0)
        env.reset(seed=0)
        _, reward, _, _, info = env.step(GOOD_GUIDE)
    assert info["judge"]["parsed"] is False and info["reward_components"]["judge_score"] == 0.0
    assert reward == pytest.approx(1.1)


def test_cache_makes_a_rerun_free(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir, gamma=0.5, kappa=0.5)
    env.reset(seed=5)
    _, first_reward, _, _, first = env.step(GOOD_GUIDE)
    calls_after_first = solver_server.count()
    assert calls_after_first == 2 + STOCHASTIC_DRAWS and first["cost"]["total_spent_usd"] > 0
    env2 = make_env(solver_server, gsm8k_dir, gamma=0.5, kappa=0.5)  # a new run, same cache dir
    env2.reset(seed=5)
    _, second_reward, _, _, second = env2.step(GOOD_GUIDE)
    assert solver_server.count() == calls_after_first  # not one more request
    assert second_reward == first_reward
    assert second["cost"]["total_spent_usd"] == 0.0
    assert second["cost"]["core"]["cached_calls"] == 1 and second["cost"]["judge"]["cached_calls"] == 1
    assert second["cost"]["total_usd"] == pytest.approx(first["cost"]["total_usd"])  # nominal cost for λ·T


def test_cache_off_pays_again(solver_server, gsm8k_dir):
    for _ in range(2):
        env = make_env(solver_server, gsm8k_dir, gamma=0.0, kappa=0.0, cache=False)
        env.reset(seed=5)
        env.step(GOOD_GUIDE)
    assert solver_server.count() == 2


def test_cost_penalty_in_tokens(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir, gamma=0.0, kappa=0.0, lam=0.01, cost_unit="tokens")
    env.reset(seed=0)
    _, reward, _, _, info = env.step(GOOD_GUIDE)
    tokens = info["cost"]["core"]["input_tokens"] + info["cost"]["core"]["output_tokens"]
    rc = info["reward_components"]
    assert rc["cost"] == pytest.approx(tokens / 1000) and rc["cost_penalty"] == pytest.approx(0.01 * tokens / 1000)
    assert reward == pytest.approx(1.1 - 0.01 * tokens / 1000)


def test_reset_is_deterministic_and_selects_by_task_id(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir)
    ids = [env.reset(seed=s)[1]["task_id"] for s in (0, 1, 2)]
    assert ids == [env.reset(seed=s)[1]["task_id"] for s in (0, 1, 2)]
    obs, info = env.reset(options={"task_id": "gsm8k/test/7"})
    assert info["task_id"] == "gsm8k/test/7"
    with pytest.raises(KeyError, match="gsm8k/test/7"):
        env.reset(options={"task_id": "gsm8k/test/70"})  # outside limit=20; a close match is suggested
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"problem": 1})


def test_check_env_passes(solver_server, gsm8k_dir):
    for spec in gcop_env.registered_tasks():
        if spec.name != "GSM8K":
            continue  # code tasks are checked in their own tests
        env = make_env(solver_server, gsm8k_dir).unwrapped
        check_env(env, skip_render_check=False)


def test_spaces_accept_any_unicode_text(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir, max_action_chars=100)
    text = "<think>ça va — 中文 ∑</think><strategy>Add: x + y, then ×2!</strategy>"
    assert env.action_space.contains(text)
    assert not env.action_space.contains("x" * 101) and not env.action_space.contains(b"bytes")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    env.reset(seed=0)
    _, reward, _, _, info = env.step("<strategy>" + "y" * 200 + "</strategy>")
    assert info["structure_error"] == "output_too_long" and reward == 0.0 and solver_server.count() == 0


def test_unknown_kwarg_and_unknown_id_give_clear_errors(gsm8k_dir):
    with pytest.raises(TypeError, match="temprature.*did you mean 'temperature'"):
        gym.make("GCoP-GSM8K-v0", core="openai:m@http://127.0.0.1:1/v1", data_files=str(gsm8k_dir), temprature=0.5)
    with pytest.raises(gym.error.NameNotFound):
        gym.make("GCoP-GSM8X-v0")
    with pytest.raises(ValueError, match="expected one of"):
        gym.make("GCoP-GSM8K-v0", core="claude-3-haiku", data_files=str(gsm8k_dir))


def test_make_with_module_prefix_imports_the_package(tmp_path, gsm8k_dir):
    import subprocess
    import sys

    code = ("import gymnasium as gym\n"
            f"env = gym.make('gcop_env:GCoP-GSM8K-v0', core='openai:m@http://127.0.0.1:1/v1', data_files={str(gsm8k_dir)!r}, limit=3)\n"
            "print(env.reset(seed=0)[1]['task_id'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("gsm8k/test/")


def test_step_before_reset_is_an_error(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir).unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(GOOD_GUIDE)


def test_crashing_validator_is_an_infra_error_not_a_zero(solver_server, gsm8k_dir):
    from gcop_env.validators.gsm8k import GSM8KValidator

    env = make_env(solver_server, gsm8k_dir, gamma=0.0, kappa=0.0)
    env.reset(seed=0)

    def explode(problem, output):
        raise OSError("disk full")
    env.unwrapped.validator.validate = explode
    _, reward, _, _, info = env.step(GOOD_GUIDE)
    assert info["reward_is_task_outcome"] is False and info["error_stage"] == "validation"
    assert "disk full" in info["error"] and isinstance(env.unwrapped.validator, GSM8KValidator)
