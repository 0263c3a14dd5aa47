"""The env's arguments and reset options are checked before any work, with errors that name them."""

from __future__ import annotations

import gymnasium as gym
import pytest
from support import GSM8K_DIR

import gcop_env  # noqa: F401 - registers the envs

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("kwargs, field", [
    ({"beta": NAN}, "beta"), ({"beta": True}, "beta"), ({"lam": INF}, "lam"),
    ({"temperature": NAN}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": 1.5}, "max_tokens"),
    ({"max_action_chars": 0}, "max_action_chars"), ({"max_strategy_chars": -1}, "max_strategy_chars"),
    ({"max_observation_chars": True}, "max_observation_chars"), ({"limit": 0}, "limit"), ({"limit": 2.5}, "limit"),
    ({"judge_max_tokens": NAN}, "judge_max_tokens"),
])
def test_env_arguments_are_checked_before_any_work(kwargs, field):
    with pytest.raises(ValueError, match=field):
        gym.make("GCoP-GSM8K-v0", core="openai:m@http://127.0.0.1:9/v1", data_files=str(GSM8K_DIR), **kwargs)


@pytest.mark.parametrize("retry, words", [
    ({"max_attempts": 0}, "max_attempts"), ({"max_attempts": -2}, "max_attempts"),
    ({"max_attempts": "abc"}, "max_attempts"), ({"max_attempts": 2.5}, "max_attempts"),
    ({"max_attempts": True}, "max_attempts"), ({"initial_backoff_s": NAN}, "initial_backoff_s"),
    ({"max_backoff_s": -1}, "max_backoff_s"), ({"multiplier": 0.5}, "multiplier"), ({"jitter": 2}, "jitter"),
    ({"max_retry_after_s": INF}, "max_retry_after_s"), ({"max_attemps": 3}, "max_attemps"),
    ("abc", "retry"), (3, "retry"),
])
def test_a_bad_retry_policy_is_refused_by_gym_make(retry, words):
    # Before: gym.make accepted it and every step then failed with AssertionError("unreachable").
    with pytest.raises((ValueError, TypeError), match=words):
        gym.make("GCoP-GSM8K-v0", core="openai:m@http://127.0.0.1:9/v1", data_files=str(GSM8K_DIR), retry=retry)


def test_a_good_retry_policy_as_a_dict_round_trips():
    env = gym.make("GCoP-GSM8K-v0", core="openai:m@http://127.0.0.1:9/v1", data_files=str(GSM8K_DIR), limit=1,
                   cache=False, retry={"max_attempts": 2, "initial_backoff_s": 0.5})
    assert env.unwrapped.core.retry.max_attempts == 2 and env.unwrapped.core.retry.initial_backoff_s == 0.5
    env.close()


# -- reset options ------------------------------------------------------------------------------
@pytest.fixture
def env():
    e = gym.make("GCoP-GSM8K-v0", core="openai:m@http://127.0.0.1:9/v1", data_files=str(GSM8K_DIR), limit=5,
                 cache=False)
    yield e
    e.close()


@pytest.mark.parametrize("index", ["abc", 1.7, True, None, "1"])
def test_reset_index_must_be_an_integer(env, index):
    with pytest.raises(TypeError, match="'index' must be an integer in 0..4"):
        env.reset(options={"index": index})


def test_reset_index_accepts_numpy_integers(env):
    import numpy as np

    _, info = env.reset(options={"index": np.int64(3)})
    assert info["index"] == 3
