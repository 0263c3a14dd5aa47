"""``env.step`` draws a fresh core sample for a repeated (problem, strategy) when the core samples,
and a re-run of the same script replays the cached sequence, against a loopback server."""

from __future__ import annotations

import gymnasium as gym
import pytest
from support import GOOD_GUIDE
from fake_llm import status

import gcop_env  # noqa: F401 - registers the environments
from gcop_env import RetryPolicy

FAST_RETRY = RetryPolicy(max_attempts=1, initial_backoff_s=0.01, max_backoff_s=0.02)
OTHER_THINKING = GOOD_GUIDE.replace("Find the quantities", "Different thoughts, same strategy")


def make_env(server, gsm8k_dir, **kwargs):
    return gym.make("GCoP-GSM8K-v0", core=f"openai:solver@{server.openai_base_url}", split="test",
                    data_files=str(gsm8k_dir), limit=20, gamma=0.0, kappa=0.0, retry=FAST_RETRY, **kwargs)


def run_script(env, guides, index=0):
    """Step the same problem once per guide; returns each step's core sample index and paid calls."""
    seen = []
    for guide in guides:
        env.reset(options={"index": index})
        info = env.step(guide)[4]
        assert info["reward_is_task_outcome"], info.get("error")
        seen.append((info["core_sample_index"], info["cost"]["core"]["calls"] - info["cost"]["core"]["cached_calls"]))
    return seen


def test_sampling_core_gets_fresh_samples_and_a_rerun_replays_them(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir, temperature=0.8)
    assert env.unwrapped.core_samples()
    # three identical steps: three real calls; the same strategy with other thinking is the same request
    guides = [GOOD_GUIDE, GOOD_GUIDE, OTHER_THINKING]
    assert run_script(env, guides) == [(0, 1), (1, 1), (2, 1)]
    assert solver_server.count() == 3
    assert [r["body"]["temperature"] for r in solver_server.requests] == [0.8] * 3
    # a fresh env (a re-run of the script) replays the same sequence from the cache: no call
    rerun = make_env(solver_server, gsm8k_dir, temperature=0.8)
    assert run_script(rerun, guides) == [(0, 0), (1, 0), (2, 0)]
    assert solver_server.count() == 3
    # ... and a fourth step is a new sample
    assert run_script(rerun, [GOOD_GUIDE]) == [(3, 1)]
    # counters are per (problem, strategy): another problem starts at sample 0
    assert run_script(rerun, [GOOD_GUIDE], index=5) == [(0, 1)]


def test_greedy_core_asks_once(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir, temperature=0.0)
    assert not env.unwrapped.core_samples()
    assert run_script(env, [GOOD_GUIDE] * 3) == [(0, 1), (0, 0), (0, 0)]
    assert solver_server.count() == 1


def test_a_core_that_is_not_deterministic_at_temperature_0_gets_fresh_samples(solver_server, gsm8k_dir, monkeypatch):
    env = make_env(solver_server, gsm8k_dir, temperature=0.0)
    core = env.unwrapped.core
    monkeypatch.setattr(core, "is_deterministic", lambda sampling: False, raising=False)
    assert run_script(env, [GOOD_GUIDE] * 2) == [(0, 1), (1, 1)]


def test_seeded_envs_draw_different_sample_streams(solver_server, gsm8k_dir):
    """The sub-envs of a vector env are seeded seed + i: they must not all draw sample 0."""
    envs = gym.make_vec("GCoP-GSM8K-v0", num_envs=3, vectorization_mode="sync", core=f"openai:solver@{solver_server.openai_base_url}",
                        split="test", data_files=str(gsm8k_dir), limit=20, gamma=0.0, kappa=0.0, temperature=0.8,
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    envs.reset(seed=7, options={"index": 4})
    infos = envs.step([GOOD_GUIDE] * 3)[4]["final_info"]
    indices = list(infos["core_sample_index"])
    assert len(set(indices)) == 3
    assert solver_server.count() == 3  # three independent samples, not one call and two cache hits
    envs.close()


def test_an_infra_failure_does_not_use_up_the_sample(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir, temperature=0.8)
    solver_server.faults.append(status(500))
    env.reset(options={"index": 0})
    info = env.step(GOOD_GUIDE)[4]
    assert not info["reward_is_task_outcome"] and info["core_sample_index"] == 0
    assert run_script(env, [GOOD_GUIDE, GOOD_GUIDE]) == [(0, 1), (1, 1)]


@pytest.mark.parametrize("guide", ["no strategy", "<strategy></strategy>"])
def test_malformed_steps_draw_no_sample(solver_server, gsm8k_dir, guide):
    env = make_env(solver_server, gsm8k_dir, temperature=0.8)
    env.reset(options={"index": 0})
    assert "core_sample_index" not in env.step(guide)[4]
    assert run_script(env, [GOOD_GUIDE]) == [(0, 1)]


def test_sample_counter_hands_out_each_number_once_across_threads_and_reuses_returned_ones():
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    from gcop_env.envs.env import SampleCounter

    counter = SampleCounter()
    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(lambda _: counter.take(("p", "s")), range(800)))
    assert sorted(numbers) == list(range(800))
    counter.give_back(("p", "s"), 5)
    clone = pickle.loads(pickle.dumps(counter))
    assert counter.take(("p", "s")) == 5 and counter.take(("p", "s")) == 800
    assert clone.take(("p", "s")) == 5 and counter.take(("other", "s")) == 0
