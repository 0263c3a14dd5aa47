"""Vector envs in every mode: Gymnasium's sync and async (shared memory on and off) and the native
thread-pool env, against loopback fake cores (real SDKs over HTTP)."""

from __future__ import annotations

import copy
import json
import pickle

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
from fake_llm import FakeLLMServer, api_error, status
from support import GOOD_GUIDE, GSM8K_DIR, KODCODE_SAMPLE, InFlightCounter, ScriptedSolver, gsm8k_golds, solver_for
from gymnasium.utils.env_checker import data_equivalence
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import (batch_space, create_empty_array, create_shared_memory, read_from_shared_memory,
                                    write_to_shared_memory)
from gymnasium.wrappers.vector import DictInfoToList

import gcop_env
from gcop_env import RetryPolicy
from gcop_env.cores.base import FatalCoreError
from gcop_env.step.prompts import guide_prompt
from gcop_env.envs.spaces import UnicodeText
from gcop_env.validators.humaneval import load_humaneval
from gcop_env.validators.kodcode import load_kodcode
from gcop_env.envs.vector import GCoPVectorEnv, batch_infos

FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.02)
NO_RETRY = RetryPolicy(max_attempts=1)
HARMFUL_GUIDE = "<think>Mislead.</think><strategy>HARMFUL: add everything twice.</strategy>"

# (mode, vector_kwargs) for gym.make_vec; "native" is vectorization_mode="vector_entry_point"
MODES = {
    "sync": ("sync", {}),
    "async-shared-memory": ("async", {}),  # Gymnasium's default: shared_memory=True
    "async-pipes": ("async", {"shared_memory": False}),
    "native": ("vector_entry_point", {}),
}


def make_vec(mode: str, num_envs: int, env_id: str = "GCoP-GSM8K-v0", **kwargs):
    vectorization_mode, vector_kwargs = MODES[mode]
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorization_mode,
                        vector_kwargs=dict(vector_kwargs), **kwargs)


def gsm8k_kwargs(server, **overrides):
    kwargs = dict(core=f"openai:solver@{server.openai_base_url}", split="test", data_files=str(GSM8K_DIR),
                  limit=20, retry=FAST_RETRY)
    kwargs.update(overrides)
    return kwargs


# -- a check_env for vector envs ------------------------------------------------------------------
def check_vector_env(envs, num_envs: int) -> None:
    """What Gymnasium's env checker asks of an env, asked of a vector env: batched spaces, seeded
    determinism, data of the right shapes and types, info as arrays with `_key` masks."""
    assert envs.num_envs == num_envs
    assert envs.single_observation_space == UnicodeText(max_length=envs.single_observation_space.max_length)
    assert envs.observation_space == batch_space(envs.single_observation_space, num_envs)
    assert envs.action_space == batch_space(envs.single_action_space, num_envs)
    assert isinstance(envs.metadata["autoreset_mode"], AutoresetMode)

    obs, info = envs.reset(seed=42)
    assert isinstance(obs, tuple) and len(obs) == num_envs and obs in envs.observation_space
    assert_vector_info(info, num_envs)
    obs_again, info_again = envs.reset(seed=42)
    assert data_equivalence(obs, obs_again) and data_equivalence(info, info_again)
    assert list(info["task_id"]) == [f"gsm8k/test/{i}" for i in info["index"]]

    actions = envs.action_space.sample()  # random text: no tags, so scored without a core call
    assert actions in envs.action_space
    stepped = envs.step(actions)
    obs2, rewards, terminations, truncations, info = stepped
    assert obs2 in envs.observation_space
    assert rewards.shape == (num_envs,) and rewards.dtype == np.float64
    assert terminations.dtype == np.bool_ and truncations.dtype == np.bool_
    assert terminations.all() and not truncations.any()  # one problem, one step
    assert_vector_info(info, num_envs)
    assert (info["structure_ok"] == False).all() and (rewards == 0.0).all()  # noqa: E712 - NumPy arrays

    # the returned data is the caller's: a later step does not change it
    snapshot = copy.deepcopy(stepped)
    envs.reset(seed=7)
    envs.step([GOOD_GUIDE] * num_envs)
    assert data_equivalence(stepped, snapshot)


def assert_vector_info(info, num_envs: int) -> None:
    """Gymnasium's layout: every key has an array (or a nested dict) and a bool mask of length N."""
    assert isinstance(info, dict)
    for key, value in info.items():
        if key.startswith("_"):
            assert key[1:] in info and value.dtype == np.bool_ and value.shape == (num_envs,)
            continue
        assert f"_{key}" in info, key
        if isinstance(value, dict):
            assert_vector_info(value, num_envs)
        else:
            assert isinstance(value, np.ndarray) and value.shape[0] == num_envs, key


@pytest.mark.parametrize("mode", list(MODES))
def test_check_vector_env_in_every_mode(solver_server, mode):
    envs = make_vec(mode, 3, **gsm8k_kwargs(solver_server))
    try:
        check_vector_env(envs, 3)
    finally:
        envs.close()


def test_make_vec_defaults_to_the_native_env_for_every_registered_task():
    for task in gcop_env.registered_tasks():
        assert gym.spec(task.env_id).vector_entry_point == "gcop_env.envs.vector:GCoPVectorEnv", task.env_id
    with FakeLLMServer() as server:
        envs = gym.make_vec("GCoP-GSM8K-v0", num_envs=2, **gsm8k_kwargs(server))
        assert isinstance(envs, GCoPVectorEnv) and envs.spec.kwargs["vectorization_mode"] == "vector_entry_point"
        assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        envs.close()


# -- every env id, every mode: the same rewards as N single envs ------------------------------------
def _code_problems(env_id):
    if env_id == "GCoP-KodCode-v0":
        return load_kodcode("all", data_files=str(KODCODE_SAMPLE))[:4]
    return load_humaneval("test")[:4]


TASK_SETUPS = {
    "GCoP-GSM8K-v0": lambda: (ScriptedSolver(gsm8k_golds()),
                              dict(split="test", data_files=str(GSM8K_DIR), limit=20, gamma=0.5, kappa=0.5)),
    "GCoP-KodCode-v0": lambda: (solver_for(_code_problems("GCoP-KodCode-v0")),
                                dict(split="all", data_files=str(KODCODE_SAMPLE), limit=4, sandbox="process",
                                     gamma=0.5, kappa=0.5)),
    "GCoP-HumanEval-v0": lambda: (solver_for(_code_problems("GCoP-HumanEval-v0")),
                                  dict(limit=4, sandbox="process", gamma=0.0, kappa=0.5)),
}


def test_every_builtin_task_is_covered():
    assert {t.env_id for t in gcop_env.registered_tasks()} >= set(TASK_SETUPS)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("env_id", list(TASK_SETUPS))
def test_every_env_id_and_mode_scores_like_single_envs(env_id, mode):
    responder, kwargs = TASK_SETUPS[env_id]()
    num_envs = 3
    actions = [GOOD_GUIDE, "no tags at all", GOOD_GUIDE if env_id != "GCoP-GSM8K-v0" else HARMFUL_GUIDE]
    with FakeLLMServer(responder) as server:
        kwargs.update(core=f"openai:solver@{server.openai_base_url}", retry=FAST_RETRY)
        expected = []
        for i in range(num_envs):
            env = gym.make(env_id, **kwargs)
            env.reset(seed=11 + i)
            _, reward, _, _, info = env.step(actions[i])
            assert info["reward_is_task_outcome"], info.get("error")
            expected.append((reward, info["reward_components"]))
            env.close()
        envs = make_vec(mode, num_envs, env_id, **kwargs)
        try:
            obs, _ = envs.reset(seed=11)
            assert obs in envs.observation_space
            _, rewards, terminations, _, info = envs.step(actions)
        finally:
            envs.close()
    assert terminations.all() and info["reward_is_task_outcome"].all()
    assert rewards.tolist() == pytest.approx([r for r, _ in expected])
    per_env = [{k: v[i] for k, v in info["reward_components"].items() if not k.startswith("_")} for i in range(num_envs)]
    for got, (_, want) in zip(per_env, expected):
        assert got.keys() == want.keys() and plain(got) == plain(want), (got, want)
    assert {r for r, _ in expected} != {0.0}  # the check compares real scores, not only zeros


def plain(value):
    """A value with NumPy scalars as Python ones and None/NaN as one "absent" marker: Gymnasium's
    sync and async envs batch info by the first sub-env's type, so a None beside floats (no
    baseline for a malformed output) comes back as NaN there; the native env keeps the None."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "absent"
    return value.item() if isinstance(value, np.generic) else value


# -- async with shared memory: the exact texts come back -------------------------------------------
@pytest.mark.parametrize("text", ["", "plain ASCII", "Ünïcödé — 中文 日本語 → ∑ π", "emoji 🎉🚀 astral 𝔘",
                                  "lone surrogate \ud800 kept", "\x00 NUL and \n newlines \t", "x" * 64])
def test_shared_memory_round_trip_is_exact(text):
    space = UnicodeText(max_length=64)
    memory = create_shared_memory(space, n=3)
    batch = read_from_shared_memory(space, memory, n=3)  # a live view, as AsyncVectorEnv keeps it
    write_to_shared_memory(space, 0, "first occupant, longer than the next", memory)
    write_to_shared_memory(space, 0, text, memory)
    write_to_shared_memory(space, 2, "ß", memory)
    assert batch[0] == text and batch[1] == "" and batch[2] == "ß"
    snapshot = copy.deepcopy(batch)  # AsyncVectorEnv(copy=True) hands the caller a deep copy
    assert snapshot == (text, "", "ß") and type(snapshot) is tuple
    write_to_shared_memory(space, 0, "later", memory)
    assert snapshot[0] == text and batch[0] == "later"
    assert pickle.loads(pickle.dumps(batch)) == ("later", "", "ß")


def test_shared_memory_refuses_text_over_the_space():
    space = UnicodeText(max_length=4)
    memory = create_shared_memory(space, n=1)
    with pytest.raises(ValueError, match="5 characters"):
        write_to_shared_memory(space, 0, "12345", memory)
    assert create_empty_array(space, n=2) == ("", "") and create_empty_array(UnicodeText(5, min_length=2), 1) == ("  ",)


def test_async_shared_memory_returns_unicode_prompts_exactly(tmp_path):
    questions = ["Ünïcödé: Zoë buys 3 crêpes at €2 — how many € in total? 🎉", "中文问题：3 个苹果加 4 个苹果？",
                 "An 𝔘nusual astral question: 2 + 2?", "Plain: 5 + 5?"]
    data = tmp_path / "unicode.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": f"#### {i}"}) + "\n" for i, q in enumerate(questions)),
                    encoding="utf-8")
    prompts = [guide_prompt(q) for q in questions]
    longest = max(len(p) for p in prompts)  # one observation fills the space exactly
    with FakeLLMServer() as server:
        kwargs = dict(core=f"openai:m@{server.openai_base_url}", split="test", data_files=str(data),
                      max_observation_chars=longest, retry=FAST_RETRY)
        envs = make_vec("async-shared-memory", 4, **kwargs)
        try:
            assert envs.shared_memory
            observations = []
            for index in range(len(questions)):
                obs, info = envs.reset(options={"index": index})
                assert obs == (prompts[index],) * 4 and type(obs) is tuple
                observations.append(obs)
            obs, *_ = envs.step([GOOD_GUIDE] * 4)  # NextStep: the finished episode's prompt again
            assert obs == (prompts[-1],) * 4
        finally:
            envs.close()
    assert [o[0] for o in observations] == prompts  # earlier batches were not overwritten by later ones
    assert max(len(p) for p in prompts) == longest


# -- the native env: one process, threads, shared parts --------------------------------------------
def concurrency_probe(inner, expect: int, patience_s: float = 0.5) -> InFlightCounter:
    """Counts the requests in progress at the server at once (``max_in_flight``): each waits (up to
    ``patience_s``) for ``expect`` requests to have arrived, so requests that are really concurrent are
    all in progress together; requests made one at a time are not."""
    return InFlightCounter(inner, patience_s, until=lambda c: c.requests % expect == 0)


@pytest.mark.parametrize("max_workers, peak", [(None, 6), (2, 2)])
def test_native_env_overlaps_core_calls_on_bounded_threads(max_workers, peak):
    probe = concurrency_probe(ScriptedSolver(gsm8k_golds()), expect=6)
    with FakeLLMServer(probe) as server:
        envs = make_vec("native", 6, **gsm8k_kwargs(server, gamma=0.0, kappa=0.0, cache=False), max_workers=max_workers)
        envs.reset(seed=0)
        _, rewards, _, _, info = envs.step([GOOD_GUIDE] * 6)
        envs.close()
    assert server.count() == 6 and info["reward_is_task_outcome"].all() and (rewards > 1.0).all()
    assert probe.max_in_flight == peak


def test_sync_mode_makes_one_call_at_a_time():
    """The contrast the native env exists for (and proof the probe tells the two apart)."""
    probe = concurrency_probe(ScriptedSolver(gsm8k_golds()), expect=3, patience_s=0.05)
    with FakeLLMServer(probe) as server:
        envs = make_vec("sync", 3, **gsm8k_kwargs(server, gamma=0.0, kappa=0.0, cache=False))
        envs.reset(seed=0)
        envs.step([GOOD_GUIDE] * 3)
        envs.close()
    assert server.count() == 3 and probe.max_in_flight == 1


def test_native_sub_envs_share_scorer_core_cache_and_baseline(solver_server):
    envs = make_vec("native", 4, **gsm8k_kwargs(solver_server, gamma=0.0, kappa=0.5, cache=False))
    subs = envs.unwrapped.envs
    assert len({id(e) for e in subs}) == 4
    for shared in ("scorer", "core", "validator", "sample_counter", "problems"):
        assert len({id(getattr(e, shared)) for e in subs}) == 1, shared
    envs.reset(seed=0, options={"index": 3})  # every sub-env on the same problem
    _, rewards, _, _, info = envs.step([GOOD_GUIDE] * 4)
    # four guided calls and ONE unguided baseline: the baseline table is shared (the cache is off)
    assert solver_server.count() == 4 + 1
    assert (info["reward_components"]["unguided_reward"] == 0.0).all() and (rewards == pytest.approx(1.1))
    assert info["cost"]["baseline"]["calls"].sum() == 1
    envs.close()


def test_seeds_give_sub_envs_their_own_core_sample_streams(solver_server):
    kwargs = gsm8k_kwargs(solver_server, gamma=0.0, kappa=0.0, temperature=0.7)
    indices = {}
    for mode in ("sync", "native"):
        envs = make_vec(mode, 3, **kwargs)
        envs.reset(seed=100, options={"index": 0})
        _, _, _, _, info = envs.step([GOOD_GUIDE] * 3)
        indices[mode] = info["core_sample_index"].tolist()
        if mode == "native":
            assert [e._sample_stream for e in envs.unwrapped.envs] == [100, 101, 102]
        envs.close()
    assert len(set(indices["native"])) == 3 and indices["native"] == indices["sync"]


def test_an_infra_failure_is_per_sub_env(solver_server):
    solver_server.faults.append(status(500))  # the first request to arrive fails, and is not retried
    envs = make_vec("native", 4, **gsm8k_kwargs(solver_server, gamma=0.0, kappa=0.0, cache=False, retry=NO_RETRY))
    envs.reset(seed=0)
    _, rewards, terminations, _, info = envs.step([GOOD_GUIDE] * 4)
    envs.close()
    failed = np.flatnonzero(~info["reward_is_task_outcome"])
    assert len(failed) == 1 and terminations.all()
    (i,) = failed
    assert rewards[i] == 0.0 and info["_error"].tolist() == [j == i for j in range(4)]
    assert info["error_stage"][i] == "core" and "500" in info["error"][i]
    assert all(rewards[j] == pytest.approx(1.1) for j in range(4) if j != i)


def test_a_fatal_core_error_propagates(solver_server):
    for _ in range(3):
        solver_server.faults.append(api_error(404, "not_found_error", "The model `solver` does not exist"))
    envs = make_vec("native", 3, **gsm8k_kwargs(solver_server, gamma=0.0, kappa=0.0, cache=False))
    envs.reset(seed=0)
    with pytest.raises(FatalCoreError, match="solver"):
        envs.step([GOOD_GUIDE] * 3)
    envs.close()


def test_autoreset_modes(solver_server):
    kwargs = gsm8k_kwargs(solver_server, gamma=0.0, kappa=0.0, cache=False)
    # NextStep: a step after termination starts new episodes and ignores the actions
    envs = make_vec("native", 2, **kwargs)
    first, _ = envs.reset(seed=3)
    obs, rewards, terms, _, _ = envs.step([GOOD_GUIDE] * 2)
    assert obs == first and terms.all() and solver_server.count() == 2
    obs, rewards, terms, _, info = envs.step([GOOD_GUIDE] * 2)
    assert not terms.any() and (rewards == 0.0).all() and solver_server.count() == 2 and "index" in info
    envs.close()
    # SameStep: every step scores, returns the next prompts, and puts the scored step in final_info
    envs = make_vec("native", 2, autoreset_mode="SameStep", **kwargs)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    first, _ = envs.reset(seed=3)
    for round_ in range(2):
        obs, rewards, terms, _, info = envs.step([GOOD_GUIDE] * 2)
        assert terms.all() and (rewards == pytest.approx(1.1)) and solver_server.count() == 4 + 2 * round_
        assert info["_final_info"].all() and info["final_info"]["reward_is_task_outcome"].all()
        assert tuple(info["final_obs"]) == first and "index" in info
        first = obs
    envs.close()
    # Disabled: a finished sub-env must be reset (reset_mask) before it steps again
    envs = make_vec("native", 2, autoreset_mode=AutoresetMode.DISABLED, **kwargs)
    envs.reset(seed=3)
    envs.step([GOOD_GUIDE] * 2)
    with pytest.raises(RuntimeError, match="reset_mask"):
        envs.step([GOOD_GUIDE] * 2)
    envs.reset(options={"reset_mask": np.array([True, True])})
    _, rewards, _, _, _ = envs.step([GOOD_GUIDE] * 2)
    assert rewards.tolist() == pytest.approx([1.1, 1.1])
    envs.close()


def test_native_info_matches_sync_info_per_sub_env(solver_server):
    kwargs = gsm8k_kwargs(solver_server, gamma=0.5, kappa=0.5, cache=False)
    per_env = {}
    for mode in ("sync", "native"):
        envs = DictInfoToList(make_vec(mode, 3, **kwargs))
        envs.reset(seed=5)
        _, _, _, _, infos = envs.step([GOOD_GUIDE, "bad", HARMFUL_GUIDE])
        per_env[mode] = [plain({"rc": i["reward_components"], "ok": i["structure_ok"], "id": i["task_id"],
                                "tokens": i["cost"]["total_tokens"]}) for i in infos]
        envs.close()
    assert per_env["native"] == per_env["sync"]


def test_batch_infos_keeps_every_value_exact():
    infos = [{"n": 1, "x": 1, "maybe": None, "flag": True, "nested": {"a": 1}},
             None,
             {"n": 2, "x": 0.5, "maybe": 0.25, "flag": False, "nested": {"b": "s"}, "only_here": [1, 2]}]
    batched = batch_infos(infos, 3)
    assert batched["n"].dtype == np.int64 and batched["n"].tolist() == [1, 0, 2]
    assert batched["x"].dtype == np.float64 and batched["x"].tolist() == [1.0, 0.0, 0.5]  # not truncated to int
    assert batched["maybe"].dtype == object and batched["maybe"][0] is None and batched["maybe"][2] == 0.25
    assert batched["flag"].dtype == np.bool_ and batched["_flag"].tolist() == [True, False, True]
    assert batched["nested"]["a"].tolist() == [1, 0, 0] and batched["nested"]["_a"].tolist() == [True, False, False]
    assert batched["nested"]["_b"].tolist() == [False, False, True] and batched["_nested"].tolist() == [True, False, True]
    assert batched["only_here"][2] == [1, 2] and batched["_only_here"].tolist() == [False, False, True]


def test_native_env_is_picklable_and_closes(solver_server):
    envs = make_vec("native", 2, **gsm8k_kwargs(solver_server, gamma=0.0, kappa=0.0))
    envs.reset(seed=1)
    _, rewards, _, _, _ = envs.step([GOOD_GUIDE] * 2)
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        clone = loads(dumps(envs))
        subs = clone.unwrapped.envs
        assert subs[0].scorer is subs[1].scorer and subs[0].core is subs[1].core  # still one shared scorer
        assert subs[0].scorer is not envs.unwrapped.envs[0].scorer
        clone.reset(seed=1)
        before = solver_server.count()
        _, clone_rewards, _, _, info = clone.step([GOOD_GUIDE] * 2)
        assert clone_rewards.tolist() == rewards.tolist() and info["cost"]["core"]["cached_calls"].tolist() == [1, 1]
        assert solver_server.count() == before
        clone.close()
    envs.close()
    envs.close()  # twice is fine
    assert envs.closed and envs.unwrapped._executor is None
    with pytest.raises(RuntimeError, match="closed"):
        envs.step([GOOD_GUIDE] * 2)


def test_native_env_refuses_bad_input_clearly(solver_server):
    kwargs = gsm8k_kwargs(solver_server)
    envs = make_vec("native", 2, **kwargs)
    with pytest.raises(RuntimeError, match="reset"):
        envs.step([GOOD_GUIDE] * 2)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="2 actions, got 3"):
        envs.step([GOOD_GUIDE] * 3)
    with pytest.raises(TypeError, match="single str"):
        envs.step(GOOD_GUIDE)
    with pytest.raises(TypeError, match="str"):
        envs.step([GOOD_GUIDE, 42])
    with pytest.raises(ValueError, match="list of 2 seeds"):
        envs.reset(seed=[1, 2, 3])
    assert solver_server.count() == 0  # nothing was sent for the refused steps
    envs.close()
    with pytest.raises(ValueError, match="autoreset_mode"):
        make_vec("native", 2, autoreset_mode="Sometimes", **kwargs)
    with pytest.raises(TypeError, match="did you mean 'temperature'"):
        make_vec("native", 2, temprature=0.5, **kwargs)


def test_native_env_passes_env_kwargs_through(solver_server):
    envs = make_vec("native", 2, **gsm8k_kwargs(solver_server, beta=0.3, gamma=0.0, kappa=0.0, limit=5))
    sub = envs.unwrapped.envs[1]
    assert sub.reward_config.beta == 0.3 and len(sub.problems) == 5
    envs.reset(seed=0)
    _, rewards, _, _, _ = envs.step([GOOD_GUIDE] * 2)
    assert rewards.tolist() == pytest.approx([1.3, 1.3])
    envs.close()


def test_native_env_works_with_gymnasium_vector_wrappers_and_helpers(solver_server):
    envs = gym.wrappers.vector.RecordEpisodeStatistics(
        make_vec("native", 2, **gsm8k_kwargs(solver_server, gamma=0.0, kappa=0.0, render_mode="ansi"),
                 autoreset_mode="SameStep"))
    envs.reset(seed=0)
    for _ in range(2):
        _, rewards, _, _, info = envs.step([GOOD_GUIDE, "no tags"])
    assert rewards.tolist() == pytest.approx([1.1, 0.0])
    assert info["episode"]["r"].tolist() == pytest.approx([1.1, 0.0]) and info["episode"]["l"].tolist() == [1, 1]
    assert len(envs.return_queue) == 4
    inner = envs.unwrapped
    assert [p.task_id for p in inner.get_attr("problem")] == list(info["task_id"])
    assert all(frame.startswith(f"[{task_id}]") for frame, task_id in zip(inner.render(), info["task_id"]))
    assert inner.call("core_samples") == (False, False)
    envs.close()


def test_unseeded_native_sub_envs_still_draw_different_core_samples(solver_server):
    """Unseeded sub-envs all start on sample stream 0; the native env's shared sample counter still
    hands each its own sample (separate envs, as in sync mode, would all draw sample 0)."""
    envs = make_vec("native", 3, **gsm8k_kwargs(solver_server, gamma=0.0, kappa=0.0, temperature=0.7))
    envs.reset(options={"index": 0})
    _, _, _, _, info = envs.step([GOOD_GUIDE] * 3)
    envs.close()
    assert sorted(info["core_sample_index"].tolist()) == [0, 1, 2] and solver_server.count() == 3


@pytest.mark.parametrize("mode", ["sync", "async-pipes"])
def test_gymnasium_modes_batch_a_malformed_output_before_a_scored_one(solver_server, mode):
    """A malformed output has no core_sampling; Gymnasium's info batching crashed on a None there
    when the next sub-env's was a dict. The env leaves the key out, so the mask says "absent"."""
    envs = make_vec(mode, 2, **gsm8k_kwargs(solver_server, gamma=0.0, kappa=0.0))
    envs.reset(seed=0)
    _, rewards, _, _, info = envs.step(["no tags", GOOD_GUIDE])
    envs.close()
    assert rewards.tolist() == pytest.approx([0.0, 1.1])
    assert info["_core_sampling"].tolist() == [False, True] and info["core_sampling"]["max_tokens"][1] == 1024
    assert info["_core_output"].tolist() == [False, True]
