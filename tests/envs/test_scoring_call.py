"""The public scoring call (gcop_env.Scoring): the env's step for a task id, from threads and event
loops, and shared parts that only their last holder closes."""

from __future__ import annotations

import asyncio
import copy
import pickle
import threading
import time

import gymnasium as gym
import pytest
from fake_llm import status
from support import GOOD_GUIDE, ScriptedSolver, gsm8k_golds

import gcop_env
from gcop_env import RetryPolicy, Score, Scoring
from gcop_env.cores.base import FatalCoreError
from gcop_env.envs import score as score_module
from gcop_env.utils.sharing import holders

ONE_TRY = RetryPolicy(max_attempts=1)
HARMFUL = "<think>Mislead.</think><strategy>HARMFUL: add everything twice.</strategy>"
REPLIES = [GOOD_GUIDE, HARMFUL, "no tags at all", "<strategy></strategy>"]


def kwargs(server, gsm8k_dir, **extra):
    base = dict(core=f"openai:solver@{server.openai_base_url}", split="test", data_files=str(gsm8k_dir), limit=6,
                gamma=0.0, retry=ONE_TRY, cache=False)
    return {**base, **extra}


def without_latency(info: dict) -> dict:
    info = copy.deepcopy(info)
    for role in ("core", "baseline", "judge"):
        info["cost"][role].pop("latency_s")
    info["cost"].pop("latency_s")
    return info


def test_a_score_is_the_envs_step_for_that_task_id(solver_server, gsm8k_dir):
    env = gym.make("GCoP-GSM8K-v0", **kwargs(solver_server, gsm8k_dir))
    scoring = Scoring.make("GCoP-GSM8K-v0", **kwargs(solver_server, gsm8k_dir))
    compared = 0
    for task_id in scoring.task_ids[:4]:
        for reply in REPLIES:
            env.reset(options={"task_id": task_id})
            _, reward, _, _, info = env.step(reply)
            score = scoring.score(task_id, reply)
            assert isinstance(score, Score) and score.task_id == task_id
            assert score.reward == reward and score.terms == info["reward_components"]
            assert without_latency(score.info) == without_latency(info)
            compared += 1
    assert compared == 16
    assert scoring.score(scoring.task_ids[0], GOOD_GUIDE).status == "pass"
    assert scoring.score(scoring.task_ids[0], HARMFUL).status == "fail"
    malformed = scoring.score(scoring.task_ids[0], "no tags at all")
    assert malformed.status == "malformed" and malformed.reward == 0.0 and malformed.info["structure_error"]
    assert scoring.prompt(scoring.task_ids[1]) == env.reset(options={"task_id": scoring.task_ids[1]})[0]
    assert scoring.problem(scoring.task_ids[1]).question in scoring.prompt(scoring.task_ids[1])
    metrics = scoring.score(scoring.task_ids[0], GOOD_GUIDE).metrics()
    assert metrics["shaped"] == pytest.approx(1.1) and metrics["infra_error"] == 0.0 and metrics["structure_ok"] == 1.0
    assert all(isinstance(v, float) for v in metrics.values())
    env.close()
    scoring.close()


def test_an_infra_failure_is_none_not_zero_and_a_retry_asks_for_the_same_sample(solver_server, gsm8k_dir):
    scoring = Scoring.make("GCoP-GSM8K-v0", **kwargs(solver_server, gsm8k_dir, kappa=0.0, temperature=0.7))
    task_id = scoring.task_ids[0]
    solver_server.faults.append(status(500))
    failed = scoring.score(task_id, GOOD_GUIDE)
    assert failed.reward is None and failed.status == "infra" and not failed.is_task_outcome
    assert failed.error_stage == "core" and failed.metrics()["infra_error"] == 1.0
    assert failed.info["reward_is_task_outcome"] is False
    retried = scoring.score(task_id, GOOD_GUIDE)
    assert retried.reward == pytest.approx(1.1) and retried.info["core_sample_index"] == 0  # not used up
    assert scoring.score(task_id, GOOD_GUIDE).info["core_sample_index"] == 1  # the next sample
    other_stream = scoring.share(stream=3)
    assert other_stream.score(task_id, GOOD_GUIDE).info["core_sample_index"] == 3 * 2**20
    other_stream.close()
    scoring.close()


def test_bad_input_is_a_clear_error_and_a_fatal_core_error_ends_the_run(fake_llm, gsm8k_dir):
    from fake_llm import api_error

    server = fake_llm(ScriptedSolver(gsm8k_golds()))
    scoring = Scoring.make("GCoP-GSM8K-v0", **kwargs(server, gsm8k_dir))
    with pytest.raises(KeyError, match="close matches"):
        scoring.score("gsm8k/test/00", GOOD_GUIDE)
    with pytest.raises(TypeError, match="must be a str"):
        scoring.score(scoring.task_ids[0], b"bytes")
    assert server.count() == 0
    server.faults.append(api_error(404, "not_found_error", "model: solver"))
    with pytest.raises(FatalCoreError):
        scoring.score(scoring.task_ids[0], GOOD_GUIDE)
    with pytest.raises(ValueError, match="max_inflight"):
        Scoring(gym.make("GCoP-GSM8K-v0", **kwargs(server, gsm8k_dir)), max_inflight=0)
    with pytest.raises(TypeError, match="needs a GCoP env"):
        Scoring(gym.make("CartPole-v1"))
    scoring.close()
    scoring.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        scoring.score(scoring.task_ids[0], GOOD_GUIDE)


def test_ascore_from_an_event_loop_keeps_at_most_max_inflight_steps_in_flight(fake_llm, gsm8k_dir):
    solver = ScriptedSolver(gsm8k_golds())
    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    def slow_solver(prompt):
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return solver(prompt)

    server = fake_llm(slow_solver)
    scoring = Scoring.make("GCoP-GSM8K-v0", max_inflight=3, **kwargs(server, gsm8k_dir, kappa=0.0))
    items = [(task_id, GOOD_GUIDE) for task_id in scoring.task_ids] * 2

    async def main():
        ticks = 0

        async def ticker():  # the loop stays free while the steps run on the handle's threads
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        tick = asyncio.create_task(ticker())
        scores = await scoring.ascore_many(items)
        tick.cancel()
        return scores, ticks

    scores, ticks = asyncio.run(main())
    assert [s.task_id for s in scores] == [t for t, _ in items]
    assert all(s.reward == pytest.approx(1.1) for s in scores) and server.count() == 12
    assert 1 < state["most"] <= 3 and ticks > 3
    # the same pairs from threads: the same rewards
    assert [s.reward for s in scoring.score_many(items, max_workers=4)] == [s.reward for s in scores]
    scoring.close()


def test_closing_a_share_or_an_episode_never_closes_what_the_others_use(solver_server, gsm8k_dir):
    scoring = Scoring.make("GCoP-GSM8K-v0", **kwargs(solver_server, gsm8k_dir))
    core = scoring._base.core
    task_id = scoring.task_ids[0]
    assert scoring.score(task_id, GOOD_GUIDE).reward == pytest.approx(1.1)
    client = core.inner._client
    assert client is not None and holders(core) == 1
    shares = [scoring.share() for _ in range(3)]
    episodes = [scoring.episode() for _ in range(3)]
    assert holders(core) == 7
    for handle in shares[:2]:
        handle.close()
    for episode in episodes:
        episode.reset(options={"task_id": task_id})
        assert episode.step(GOOD_GUIDE)[1] == pytest.approx(1.1)
        episode.close()
        episode.close()  # a second close releases nothing more
    assert holders(core) == 2 and core.inner._client is client  # never closed under the others
    scoring.close()
    assert shares[2].score(task_id, GOOD_GUIDE).reward == pytest.approx(1.1) and core.inner._client is client
    shares[2].close()  # the last holder
    assert holders(core) == 0 and core.inner._client is None


def test_env_copies_hold_what_they_share(solver_server, gsm8k_dir):
    env = gym.make("GCoP-GSM8K-v0", **kwargs(solver_server, gsm8k_dir)).unwrapped
    env.reset(options={"index": 0})
    env.step(GOOD_GUIDE)
    client = env.core.inner._client
    twin, deep = env.sibling(), copy.deepcopy(env)
    assert deep.core is env.core and deep.scorer is not env.scorer  # gym.make's copy rule: the core is shared
    deep.close()
    twin.close()
    assert env.core.inner._client is client
    env.reset(options={"index": 1})
    assert env.step(GOOD_GUIDE)[1] == pytest.approx(1.1)
    clone = pickle.loads(pickle.dumps(env))  # its own core: closing it is its own business
    clone.close()
    assert env.core.inner._client is client
    env.close()
    assert env.core.inner._client is None


def test_shared_handles_share_one_set_of_parts_until_the_last_is_closed(solver_server, gsm8k_dir):
    config = kwargs(solver_server, gsm8k_dir)
    before = score_module.shared_handles()
    a = Scoring.shared("GCoP-GSM8K-v0", **config)
    b = Scoring.shared("GCoP-GSM8K-v0", **config)
    other = Scoring.shared("GCoP-GSM8K-v0", **{**config, "limit": 3})
    assert a._base.core is b._base.core and a._base.core is not other._base.core
    assert a._base.sample_counter is b._base.sample_counter
    assert score_module.shared_handles() == before + 3
    core = a._base.core
    assert a.score(a.task_ids[0], GOOD_GUIDE).reward == pytest.approx(1.1)
    a.close()
    assert b.score(b.task_ids[0], GOOD_GUIDE).reward == pytest.approx(1.1) and core.inner._client is not None
    b.close()
    assert core.inner._client is None and score_module.shared_handles() == before + 1
    c = Scoring.shared("GCoP-GSM8K-v0", **config)  # made anew
    assert c._base.core is not core
    c.close()
    other.close()
    assert score_module.shared_handles() == before


def test_the_package_exports_the_scoring_call():
    assert gcop_env.Scoring is Scoring and "Scoring" in gcop_env.__all__ and "Score" in gcop_env.__all__
    with pytest.raises(AttributeError):
        gcop_env.NoSuchThing  # noqa: B018
