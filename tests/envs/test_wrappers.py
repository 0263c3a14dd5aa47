"""Infra-failed steps are retried, masked or dropped, never counted as a 0 outcome; vector envs with
SAME_STEP autoreset keep every step's full info."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from support import GOOD_GUIDE
from fake_llm import status

import gcop_env  # noqa: F401 - registers the environments
from gcop_env import RetryPolicy
from gcop_env.envs.wrappers import EpisodeStatistics, InfraAware, InfraStepDropped

ONE_TRY = RetryPolicy(max_attempts=1)  # the core gives up at once: each fault is an infra failure


def make_env(server, gsm8k_dir, **kwargs):
    kwargs.setdefault("cache", False)  # every step reaches the server, so queued faults line up with steps
    return gym.make("GCoP-GSM8K-v0", core=f"openai:solver@{server.openai_base_url}", split="test",
                    data_files=str(gsm8k_dir), limit=20, beta=0.1, gamma=0.0, kappa=0.0, retry=ONE_TRY, **kwargs)


def play(env, n, index=0):
    results = []
    for _ in range(n):
        env.reset(options={"index": index})
        results.append(env.step(GOOD_GUIDE))
    return results


def test_plain_statistics_count_an_outage_as_a_zero_and_ours_do_not(solver_server, gsm8k_dir):
    plain = gym.wrappers.RecordEpisodeStatistics(make_env(solver_server, gsm8k_dir))
    ours = EpisodeStatistics(InfraAware(make_env(solver_server, gsm8k_dir), policy="mask"))
    for env in (plain, ours):
        solver_server.faults.extend([None, status(500), None])
        play(env, 3, index=0)
    assert list(plain.return_queue) == pytest.approx([1.1, 0.0, 1.1])  # the problem this module solves
    assert list(ours.return_queue) == pytest.approx([1.1, 1.1])
    assert ours.episode_count == 2 and ours.infra_episode_count == 1


def test_mask_truncates_and_flags_the_step(solver_server, gsm8k_dir):
    env = EpisodeStatistics(InfraAware(make_env(solver_server, gsm8k_dir), policy="mask", masked_reward=0.0))
    solver_server.faults.append(status(503))
    _, reward, terminated, truncated, info = play(env, 1)[0]
    assert reward == 0.0 and not terminated and truncated
    assert info["infra_masked"] and info["error_stage"] == "core" and "episode" not in info
    _, reward, terminated, truncated, info = play(env, 1)[0]
    assert reward == pytest.approx(1.1) and terminated and not truncated and "infra_masked" not in info
    assert info["episode"]["r"] == pytest.approx(1.1)
    assert env.env.masked_steps == 1


def test_retry_steps_again_until_the_core_answers(solver_server, gsm8k_dir):
    env = InfraAware(make_env(solver_server, gsm8k_dir, temperature=0.8), policy="retry", retries=3, backoff_s=0.0)
    solver_server.faults.extend([status(500), status(429)])
    _, reward, terminated, _, info = play(env, 1)[0]
    assert reward == pytest.approx(1.1) and terminated and info["reward_is_task_outcome"]
    assert info["infra_attempts"] == 3 and env.infra_failures == 2
    assert info["core_sample_index"] == 0  # the failed attempts did not use up the sample
    assert solver_server.count() == 3


def test_retry_reuses_the_cached_core_answer_when_validation_failed(solver_server, gsm8k_dir, monkeypatch):
    env = InfraAware(make_env(solver_server, gsm8k_dir, cache=True), policy="retry", retries=2, backoff_s=0.0)
    validator = env.unwrapped.validator
    real_validate, calls = validator.validate, []

    def flaky_validate(problem, output):
        calls.append(output)
        if len(calls) == 1:
            raise ConnectionError("sandbox unreachable")
        return real_validate(problem, output)

    monkeypatch.setattr(validator, "validate", flaky_validate)
    _, reward, _, _, info = play(env, 1)[0]
    assert reward == pytest.approx(1.1) and info["infra_attempts"] == 2
    assert len(calls) == 2 and solver_server.count() == 1  # the second attempt got the core answer from the cache


def test_retries_exhausted_then_drop_raises(solver_server, gsm8k_dir):
    env = InfraAware(make_env(solver_server, gsm8k_dir), policy="retry", retries=1, backoff_s=0.0, then="drop")
    solver_server.faults.extend([status(500), status(500)])
    env.reset(options={"index": 0})
    with pytest.raises(InfraStepDropped, match="core failed") as caught:
        env.step(GOOD_GUIDE)
    assert caught.value.info["reward_is_task_outcome"] is False and caught.value.info["infra_attempts"] == 2
    assert env.dropped_steps == 1


def test_drop_policy_raises_at_once(solver_server, gsm8k_dir):
    env = InfraAware(make_env(solver_server, gsm8k_dir), policy="drop")
    solver_server.faults.append(status(500))
    env.reset(options={"index": 0})
    with pytest.raises(InfraStepDropped):
        env.step(GOOD_GUIDE)
    assert solver_server.count() == 1


def test_bad_policy_is_refused():
    with pytest.raises(ValueError, match="'retry', 'mask'|is not a valid InfraPolicy"):
        InfraAware(gym.make("CartPole-v1"), policy="ignore")
    with pytest.raises(ValueError, match="'mask' or 'drop'"):
        InfraAware(gym.make("CartPole-v1"), policy="retry", then="retry")


@pytest.mark.parametrize("kwargs, words", [
    ({"retries": "2"}, "retries"), ({"retries": 1.5}, "retries"), ({"retries": True}, "retries"),
    ({"retries": -1}, "retries"), ({"backoff_s": float("nan")}, "backoff_s"), ({"backoff_s": -1.0}, "backoff_s"),
    ({"backoff_s": float("inf")}, "backoff_s"), ({"masked_reward": float("nan")}, "masked_reward"),
    ({"masked_reward": "0"}, "masked_reward"),
])
def test_bad_numbers_are_refused_with_their_name(kwargs, words):
    # Before: retries="2" was a TypeError from a comparison; NaN backoffs and masked rewards were taken.
    with pytest.raises(ValueError, match=words):
        InfraAware(gym.make("CartPole-v1"), policy="retry", **kwargs)


def make_vec(server, gsm8k_dir, mode, **kwargs):
    return gym.make_vec("GCoP-GSM8K-v0", num_envs=2, vectorization_mode="sync",
                        core=f"openai:solver@{server.openai_base_url}", split="test", data_files=str(gsm8k_dir),
                        limit=20, beta=0.1, gamma=0.0, kappa=0.0, retry=ONE_TRY, cache=False,
                        vector_kwargs={"autoreset_mode": mode}, **kwargs)


def test_same_step_autoreset_gives_a_real_reward_and_full_info_every_step(solver_server, gsm8k_dir):
    envs = make_vec(solver_server, gsm8k_dir, gym.vector.AutoresetMode.SAME_STEP,
                    wrappers=[lambda env: EpisodeStatistics(InfraAware(env, policy="mask"))])
    _, reset_infos = envs.reset(seed=0)
    task_ids = list(reset_infos["task_id"])
    solver_server.faults.extend([None, status(500)])  # the second sub-env's first core call fails
    for step in range(3):
        next_obs, rewards, terminated, truncated, infos = envs.step([GOOD_GUIDE, GOOD_GUIDE])
        final = infos["final_info"]
        assert list(infos["_final_info"]) == [True, True]  # every sub-env finished a real step
        assert list(final["task_id"]) == task_ids  # the info of the step, not of the reset after it
        assert list(final["reward_components"]["structure_ok"]) == [True, True]
        assert "cost" in final and "validation" in final
        task_ids = list(infos["task_id"])  # the reset's info: the next problems
        if step == 0:
            assert list(rewards) == pytest.approx([1.1, 0.0]) and list(truncated) == [False, True]
            assert list(final["infra_masked"]) == [False, True] and list(final["_infra_masked"]) == [False, True]
            assert list(final["_episode"]) == [True, False]  # the masked episode has no statistics
        else:
            assert list(rewards) == pytest.approx([1.1, 1.1]) and all(terminated)
        assert all(isinstance(o, str) and "<strategy>" in o for o in next_obs)  # the next problems' prompts
    stats = [envs.envs[i] for i in range(2)]
    assert [s.episode_count for s in stats] == [3, 2] and [s.infra_episode_count for s in stats] == [0, 1]
    envs.close()


def test_next_step_autoreset_wastes_every_other_step(solver_server, gsm8k_dir):
    """Why the README advises SAME_STEP: with NEXT_STEP the step after an episode only resets."""
    envs = make_vec(solver_server, gsm8k_dir, gym.vector.AutoresetMode.NEXT_STEP)
    envs.reset(seed=0)
    first = envs.step([GOOD_GUIDE, GOOD_GUIDE])
    second = envs.step([GOOD_GUIDE, GOOD_GUIDE])
    assert np.all(first[1] > 1.0) and np.all(second[1] == 0.0)
    assert "reward_components" not in second[4]  # a reset, not a step: nothing was scored
    assert solver_server.count() == 2
    envs.close()
