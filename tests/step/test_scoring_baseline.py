"""The unguided baseline of ΔR: E[r(y_0)] as a mean over distinct draws when the core samples."""

from __future__ import annotations

import threading

import gymnasium as gym
import pytest
from support import GOOD_GUIDE, ScriptedSolver, gsm8k_golds
from fake_llm import FakeLLMServer

from gcop_env import RetryPolicy, make_core
from gcop_env.step.scoring import DEFAULT_STOCHASTIC_BASELINE_SAMPLES

FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.05)


class SampledUnguided(ScriptedSolver):
    """Guided: right. Unguided: right on every other call (a sampling core with p = 0.5)."""

    def __init__(self):
        super().__init__(gsm8k_golds())
        self.lock = threading.Lock()
        self.unguided_calls = 0

    def __call__(self, prompt: str) -> str:
        if "Suggested strategy:" in prompt or prompt.startswith("You review a strategy"):
            return super().__call__(prompt)
        with self.lock:
            self.unguided_calls += 1
            right = self.unguided_calls % 2 == 0
        gold = self._gold(prompt)
        return f"\\boxed{{{gold if right else int(float(gold)) + 1}}}"


def make_env(server, gsm8k_dir, core=None, **kwargs):
    core = core or make_core(f"openai:m@{server.openai_base_url}", retry=FAST_RETRY, timeout_s=5)
    return gym.make("GCoP-GSM8K-v0", core=core, split="test", data_files=str(gsm8k_dir), limit=5, gamma=0.0,
                    **kwargs)


def test_sampled_core_baseline_is_the_mean_of_distinct_draws(gsm8k_dir):
    solver = SampledUnguided()
    with FakeLLMServer(solver) as server:
        env = make_env(server, gsm8k_dir, temperature=0.7)
        env.reset(options={"index": 0})
        _, reward, _, _, info = env.step(GOOD_GUIDE)
        n = DEFAULT_STOCHASTIC_BASELINE_SAMPLES
        assert info["baseline_samples"] == n and solver.unguided_calls == n
        base = info["unguided_validation"]
        assert base["samples"] == n and sorted(base["rewards"]) == [0.0, 0.0, 1.0, 1.0]
        rc = info["reward_components"]
        # ΔR = R(guided) − E[r(y_0)] = 1 − 0.5, not 1 − (one frozen draw)
        assert rc["unguided_reward"] == 0.5 and rc["reward_delta"] == 0.5 and reward == pytest.approx(1.1)
        assert info["cost"]["baseline"]["calls"] == n and info["cost"]["baseline"]["cached_calls"] == 0
        # the same problem again in this env: the baseline is remembered, not paid again
        env.reset(options={"index": 0})
        _, _, _, _, again = env.step(GOOD_GUIDE)
        assert again["cost"]["baseline"]["calls"] == 0 and solver.unguided_calls == n
        env.close()
        # a new env on the same cache: each draw is its own cached sample, none is re-requested
        env = make_env(server, gsm8k_dir, temperature=0.7)
        env.reset(options={"index": 0})
        _, _, _, _, fresh = env.step(GOOD_GUIDE)
        assert fresh["cost"]["baseline"]["cached_calls"] == n and solver.unguided_calls == n
        assert sorted(fresh["unguided_validation"]["rewards"]) == [0.0, 0.0, 1.0, 1.0]
        env.close()


def test_deterministic_core_needs_one_draw_and_the_count_is_configurable(gsm8k_dir):
    solver = SampledUnguided()
    with FakeLLMServer(solver) as server:
        env = make_env(server, gsm8k_dir)  # temperature 0: greedy
        env.reset(options={"index": 1})
        _, _, _, _, info = env.step(GOOD_GUIDE)
        assert info["baseline_samples"] == 1 and solver.unguided_calls == 1
        assert info["unguided_validation"]["status"] == "fail"
        env.close()
        env = make_env(server, gsm8k_dir, temperature=1.0, baseline_samples=6)
        env.reset(options={"index": 2})
        _, _, _, _, info = env.step(GOOD_GUIDE)
        assert info["baseline_samples"] == 6 and info["unguided_validation"]["rewards"].count(1.0) == 3
        assert info["reward_components"]["unguided_reward"] == 0.5
        env.close()
        env = make_env(server, gsm8k_dir, kappa=0.0)
        env.reset(options={"index": 3})
        assert env.step(GOOD_GUIDE)[4]["baseline_samples"] == 0  # no baseline at all
        env.close()
        with pytest.raises(ValueError, match="baseline_samples must be an integer >= 1"):
            make_env(server, gsm8k_dir, baseline_samples=0)


def test_core_that_cannot_be_made_deterministic_gets_several_draws(gsm8k_dir):
    # a backend that does not send the temperature samples even when asked for 0: the core says so
    solver = SampledUnguided()
    with FakeLLMServer(solver) as server:
        core = make_core(f"openai:m@{server.openai_base_url}", retry=FAST_RETRY, timeout_s=5)
        core.is_deterministic = lambda sampling: False
        env = make_env(server, gsm8k_dir, core=core)
        env.reset(options={"index": 4})
        _, _, _, _, info = env.step(GOOD_GUIDE)
        assert info["baseline_samples"] == DEFAULT_STOCHASTIC_BASELINE_SAMPLES
        assert solver.unguided_calls == DEFAULT_STOCHASTIC_BASELINE_SAMPLES
        env.close()


def test_one_failed_draw_fails_the_step_as_infrastructure(gsm8k_dir):
    solver = SampledUnguided()
    calls = {"n": 0}

    def responder(prompt: str) -> str:
        if "Suggested strategy:" not in prompt:
            calls["n"] += 1
            if calls["n"] == 3:
                raise ConnectionError("down")
        return solver(prompt)

    with FakeLLMServer(responder) as server:
        env = make_env(server, gsm8k_dir, temperature=0.7,
                       core=make_core(f"openai:m@{server.openai_base_url}",
                                      retry=RetryPolicy(max_attempts=1), timeout_s=5))
        env.reset(options={"index": 0})
        _, _, _, _, info = env.step(GOOD_GUIDE)
        assert info["error_stage"] == "baseline" and not info["reward_is_task_outcome"]
        env.close()
