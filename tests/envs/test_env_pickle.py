"""A made env survives pickle, cloudpickle and deepcopy (Ray, multiprocessing, async vector envs),
and ``env.spec.to_json()`` round-trips through ``gym.make``."""

from __future__ import annotations

import copy
import multiprocessing
import pickle

import cloudpickle
import gymnasium as gym
import pytest
from support import GOOD_GUIDE, KODCODE_SAMPLE
from gymnasium.envs.registration import EnvSpec

import gcop_env  # noqa: F401 - registers the environments
from gcop_env import RetryPolicy, make_core

FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.02)


def make_env(server, gsm8k_dir, **kwargs):
    kwargs.setdefault("core", f"openai:solver@{server.openai_base_url}")
    return gym.make("GCoP-GSM8K-v0", split="test", data_files=str(gsm8k_dir), limit=20, gamma=0.5, kappa=0.5,
                    retry=FAST_RETRY, **kwargs)


def step_first_problem(env):
    env.reset(options={"index": 0})
    return env.step(GOOD_GUIDE)


@pytest.mark.parametrize("dumps, loads", [(pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)],
                         ids=["pickle", "cloudpickle"])
def test_pickled_env_steps_and_shares_nothing(solver_server, gsm8k_dir, dumps, loads):
    env = make_env(solver_server, gsm8k_dir)
    _, first_reward, _, _, info = step_first_problem(env)  # the SDK client, SQLite connection and locks now exist
    assert info["reward_is_task_outcome"] and first_reward > 1.0
    clone = loads(dumps(env))
    original, copied = env.unwrapped, clone.unwrapped
    assert copied.core is not original.core and copied.core.inner is not original.core.inner
    assert copied.core.inner._client is None  # a new client is made on first use
    assert copied.core.cache is not original.core.cache and copied.core.cache.path == original.core.cache.path
    assert copied.scorer._locks_guard is not original.scorer._locks_guard
    # the copy steps on its own: a new problem calls the server, a known one comes from the shared cache file
    before = solver_server.count()
    copied.reset(options={"index": 1})
    _, reward, _, _, info = copied.step(GOOD_GUIDE)
    assert info["reward_is_task_outcome"] and reward > 1.0
    assert solver_server.count() == before + 3  # guided core, baseline, judge
    _, reward_again, _, _, info = step_first_problem(clone)
    assert reward_again == pytest.approx(first_reward) and info["cost"]["core"]["cached_calls"] == 1
    assert solver_server.count() == before + 3
    # the original is untouched and still works
    assert step_first_problem(env)[1] == pytest.approx(first_reward)
    env.close()
    clone.close()


def test_deepcopy_copies_episode_state_and_shares_the_core(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir)
    step_first_problem(env)
    clone = copy.deepcopy(env)
    original, copied = env.unwrapped, clone.unwrapped
    # the core (a thread-safe connection) and its cache are shared, as gym.make shares a core kwarg
    assert copied.core is original.core
    assert copied.scorer is not original.scorer and copied.scorer._baselines == original.scorer._baselines
    assert copied.scorer._baselines is not original.scorer._baselines
    assert copied.problem == original.problem and copied.problem is not original.problem
    copied.reset(options={"index": 2})
    assert original.problem.task_id != copied.problem.task_id
    _, reward, _, _, info = copied.step(GOOD_GUIDE)
    assert info["reward_is_task_outcome"] and reward > 1.0
    env.close()


def _step_in_child(payload: bytes, queue) -> None:
    env = pickle.loads(payload)
    env.reset(options={"index": 3})
    _, reward, _, _, info = env.step(GOOD_GUIDE)
    queue.put((reward, info["reward_is_task_outcome"], info["cost"]["core"]["calls"]))
    env.close()


def test_unpickled_env_steps_in_another_process(solver_server, gsm8k_dir):
    env = make_env(solver_server, gsm8k_dir)
    step_first_problem(env)
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing inherited but the pickle
    queue = ctx.Queue()
    child = ctx.Process(target=_step_in_child, args=(pickle.dumps(env), queue))
    child.start()
    reward, scored, core_calls = queue.get(timeout=120)
    child.join(timeout=30)
    assert child.exitcode == 0
    assert scored and reward > 1.0 and core_calls == 1
    env.close()


def test_async_vector_env_with_a_core_object(solver_server, gsm8k_dir):
    core = make_core(f"openai:solver@{solver_server.openai_base_url}", retry=FAST_RETRY)
    envs = gym.make_vec("GCoP-GSM8K-v0", num_envs=2, vectorization_mode="async", core=core, split="test",
                        data_files=str(gsm8k_dir), limit=20, beta=0.1, gamma=0.0, kappa=0.0,
                        # pipes here; shared memory works too (tests/test_vector.py)
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP, "shared_memory": False})
    try:
        envs.reset(seed=0)
        _, rewards, terminated, _, infos = envs.step([GOOD_GUIDE, "no strategy here"])
        assert list(terminated) == [True, True]
        assert rewards[0] == pytest.approx(1.0 + 0.1) and rewards[1] == 0.0
        assert list(infos["final_info"]["structure_ok"]) == [True, False]
    finally:
        envs.close()
    assert solver_server.count() == 1


def test_code_env_pickles_without_its_sandbox_pool():
    from fake_llm import FakeLLMServer

    from gcop_env.validators.kodcode import load_kodcode

    problem = load_kodcode("all", data_files=str(KODCODE_SAMPLE))[0]
    reply = f"```python\n{problem.solution}\n```"
    with FakeLLMServer(lambda prompt: reply) as server:
        env = gym.make("GCoP-KodCode-v0", core=f"openai:coder@{server.openai_base_url}", split="all",
                       data_files=str(KODCODE_SAMPLE), limit=2, sandbox="process", gamma=0.0, kappa=0.0)
        env.reset(options={"index": 0})
        assert env.step(GOOD_GUIDE)[4]["validation"]["status"] == "pass"
        assert env.unwrapped.validator._sandbox is not None  # the pool is running
        for clone in (pickle.loads(pickle.dumps(env)), copy.deepcopy(env)):
            validator = clone.unwrapped.validator
            assert validator._sandbox is None  # its own pool, started on first use
            clone.reset(options={"index": 0})
            assert clone.step(GOOD_GUIDE)[4]["validation"]["status"] == "pass"
            assert validator._sandbox is not env.unwrapped.validator._sandbox
            clone.close()
        env.close()


def test_a_shared_sandbox_is_shared_by_deepcopy_and_refused_by_pickle():
    from gcop_env.sandbox import make_sandbox
    from gcop_env.validators.kodcode import KodCodeValidator

    box = make_sandbox("process")
    try:
        validator = KodCodeValidator(sandbox=box)
        assert copy.deepcopy(validator)._sandbox is box
        with pytest.raises(TypeError, match="sandbox='docker', 'process' or 'auto'"):
            pickle.dumps(validator)
    finally:
        box.close()


# -- env.spec.to_json ---------------------------------------------------------------------------

def test_spec_to_json_round_trips_every_kind_of_kwarg(solver_server, gsm8k_dir, tmp_path):
    env = make_env(solver_server, gsm8k_dir, cache=tmp_path / "cache.sqlite", temperature=0.7, max_tokens=300,
                   judge=f"openai:judge@{solver_server.openai_base_url}")
    text = env.spec.to_json()
    spec = EnvSpec.from_json(text)
    assert spec.kwargs["core"] == f"openai:solver@{solver_server.openai_base_url}"
    assert spec.kwargs["cache"] == str(tmp_path / "cache.sqlite")
    assert spec.kwargs["retry"]["max_attempts"] == 2
    remade = gym.make(spec)
    assert remade.unwrapped.core.retry == FAST_RETRY
    assert remade.unwrapped.scorer.sampling == env.unwrapped.scorer.sampling
    assert remade.unwrapped.core.cache.path == tmp_path / "cache.sqlite"
    assert step_first_problem(remade)[4]["reward_is_task_outcome"]
    env.close()
    remade.close()


def test_spec_to_json_refuses_a_core_object_and_names_the_spec_to_pass(solver_server, gsm8k_dir):
    core = make_core(f"openai:solver@{solver_server.openai_base_url}", retry=FAST_RETRY)
    env = make_env(solver_server, gsm8k_dir, core=core)
    with pytest.raises(TypeError, match=r"core= is a Core object .*core='openai:solver@http"):
        env.spec.to_json()
    # a wrapped env's spec (gym.make adds wrappers) gives the same message
    with pytest.raises(TypeError, match="Core object"):
        gym.wrappers.RecordEpisodeStatistics(env).spec.to_json()
    env.close()


def test_spec_to_json_writes_paths_and_lists_and_refuses_a_sandbox_object(tmp_path):
    from gcop_env.envs.env import GCoPEnvSpec
    from gcop_env.sandbox import make_sandbox

    spec = GCoPEnvSpec(id="GCoP-KodCode-v0", entry_point="gcop_env.envs.env:GCoPEnv",
                       kwargs={"task": "KodCode", "data_files": [tmp_path / "a.jsonl", tmp_path / "b.jsonl"],
                               "sandbox_options": {"pool_size": 2}, "retry": RetryPolicy(max_attempts=3)})
    kwargs = EnvSpec.from_json(spec.to_json()).kwargs
    assert kwargs["data_files"] == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    assert kwargs["sandbox_options"] == {"pool_size": 2} and kwargs["retry"]["max_attempts"] == 3
    box = make_sandbox("process")
    try:
        spec.kwargs["sandbox"] = box
        with pytest.raises(TypeError, match=r"sandbox=.*cannot be written as JSON.*sandbox='docker'"):
            spec.to_json()
    finally:
        box.close()
