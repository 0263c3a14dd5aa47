"""Multi-turn episodes (issue 20) against the fake OpenAI server over the real SDK: a guide that fails on
turn 1 and succeeds on turn 2 *because of the feedback* gets the documented per-turn rewards, costs and
infos; max_turns=1 is today's env bit for bit; infra failures do not advance an episode."""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest
from fake_llm import status
from support import GSM8K_DIR, FeedbackSolver, reviser

import gcop_env  # noqa: F401
from gcop_env import RetryPolicy, make_core
from gcop_env.envs.env import GCoPEnv
from gcop_env.envs.multiturn import MultiTurnGCoPEnv
from gcop_env.step.credit import CREDIT_RULES
from gcop_env.step.prompts import guide_prompt, revision_prompt

FAST_RETRY = RetryPolicy(max_attempts=2, initial_backoff_s=0.01, max_backoff_s=0.02)
PRICE = (2.0, 10.0)  # USD per million input / output tokens of the fake core
from support import MT_FIRST as FIRST


@pytest.fixture
def world(fake_llm, priced_models):
    priced_models({"mt-core": PRICE})
    solver = FeedbackSolver()
    server = fake_llm(solver)
    server.solver = solver
    return server


def make(server, **kwargs):
    core = make_core(f"openai:mt-core@{server.openai_base_url}", retry=FAST_RETRY, timeout_s=5)
    kwargs.setdefault("limit", 6)
    return gym.make(kwargs.pop("env_id", "GCoP-GSM8K-v0"), core=core, split="test", data_files=str(GSM8K_DIR),
                    **kwargs)


def usd(cost_role: dict) -> float:
    return (cost_role["input_tokens"] * PRICE[0] + cost_role["output_tokens"] * PRICE[1]) / 1e6


def test_fail_then_succeed_from_the_feedback_gets_the_documented_rewards_costs_and_infos(world):
    beta, gamma, kappa, lam = 0.1, 0.2, 0.5, 100.0
    env = make(world, max_turns=3, beta=beta, gamma=gamma, kappa=kappa, lam=lam, max_usd=1.0)
    assert isinstance(env.unwrapped, MultiTurnGCoPEnv) and env.unwrapped.credit == "improvement"
    obs1, info = env.reset(options={"index": 2})
    assert obs1 == guide_prompt(env.unwrapped.problem.question)  # turn 1 sees the single-turn prompt
    assert info["turn"] == 1 and info["max_turns"] == 3 and info["feedback_split"]["kind"] == "exact"

    obs2, r1, term, trunc, i1 = env.step(FIRST)
    assert (term, trunc) == (False, False) and i1["turn"] == 1 and i1["success"] is False
    wrong = world.solver.wrong(obs1)
    assert i1["feedback"] == {"text": f"The solver's final answer was {wrong}, which is wrong.", "kind": "answer",
                              "status": "fail"}
    # the next observation: the problem, the previous strategy, the core's answer, the feedback
    assert obs2 == revision_prompt(env.unwrapped.problem.question, 2, 3, i1["feedback"]["text"],
                                   strategy="List every quantity and add them up.", answer=i1["core_output"])
    rc1 = i1["reward_components"]
    t1 = usd(i1["turn_cost"]["core"]) + usd(i1["turn_cost"]["judge"])  # T_1: the guided core + judge calls
    assert rc1["task_reward"] == 0.0 and rc1["unguided_reward"] == 0.0 and rc1["reward_delta"] == 0.0
    assert rc1["cost"] == pytest.approx(t1) and t1 > 0
    s1 = 0.0 + beta + gamma * 0.7 - 0.0 - lam * t1
    assert rc1["shaped"] == pytest.approx(s1) and r1 == pytest.approx(s1)  # improvement, turn 1: ρ_1 = s_1
    credit1 = i1["credit"]
    assert credit1["rule"] == "improvement" and credit1["previous_utility"] == 0.0
    assert credit1["utility"] == pytest.approx(beta + gamma * 0.7)
    assert credit1["cost_penalty"] == pytest.approx(lam * t1) and credit1["return"] == pytest.approx(s1)
    # turn 1 paid the baseline (once per problem), the guided call and the judge
    assert i1["cost"]["core"]["calls"] == 1 and i1["cost"]["baseline"]["calls"] == 1 and i1["cost"]["judge"]["calls"] == 1

    _, r2, term, trunc, i2 = env.step(reviser(obs2))
    assert (term, trunc) == (True, False) and i2["turn"] == 2 and i2["success"] is True
    assert "feedback" not in i2  # the episode is over: no feedback is written (no sandbox run is paid)
    rc2 = i2["reward_components"]
    t2 = usd(i2["turn_cost"]["core"]) + usd(i2["turn_cost"]["judge"])
    assert rc2["task_reward"] == 1.0 and rc2["reward_delta"] == 1.0 and rc2["cost"] == pytest.approx(t2)
    s2 = 1.0 + beta + gamma * 0.7 - lam * t2
    u1, u2 = s1 + lam * t1, s2 + lam * t2
    assert rc2["shaped"] == pytest.approx(s2)
    assert r2 == pytest.approx(u2 - u1 - lam * t2)  # ρ_2 = u_2 − u_1 − c_2
    assert r1 + r2 == pytest.approx(u2 - lam * (t1 + t2))  # the return telescopes: u_T − Σ c_t
    assert i2["credit"]["return"] == pytest.approx(r1 + r2) and i2["credit"]["previous_utility"] == pytest.approx(u1)
    # cost accumulates: info["cost"] is the episode's, info["turn_cost"] this turn's; the budget saw both turns
    assert i2["cost"]["core"]["calls"] == 2 and i2["cost"]["judge"]["calls"] == 2 and i2["cost"]["baseline"]["calls"] == 1
    assert i2["turn_cost"]["baseline"]["calls"] == 0  # the baseline is not paid again on turn 2
    assert i2["cost"]["total_usd"] == pytest.approx(i1["turn_cost"]["total_usd"] + i2["turn_cost"]["total_usd"])
    assert i2["cost"]["budget"]["spent_usd"] == pytest.approx(i2["cost"]["total_spent_usd"])
    # every term of every turn is in info["turns"]
    assert [t["turn"] for t in i2["turns"]] == [1, 2]
    assert [t["success"] for t in i2["turns"]] == [False, True]
    assert i2["turns"][0]["reward"] == pytest.approx(r1) and i2["turns"][1]["reward"] == pytest.approx(r2)
    assert i2["turns"][1]["utility"] == pytest.approx(u2) and i2["turns"][0]["cost_penalty"] == pytest.approx(lam * t1)
    assert i2["turns"][0]["feedback"]["text"] == i1["feedback"]["text"]
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(FIRST)
    env.close()


@pytest.mark.parametrize("credit", CREDIT_RULES)
def test_each_credit_rule_gives_its_formula_per_turn(world, credit):
    lam = 50.0
    env = make(world, max_turns=3, credit=credit, gamma=0.2, kappa=0.5, lam=lam)
    obs, _ = env.reset(options={"index": 0})
    obs, r1, *_, i1 = env.step(FIRST)
    obs, r2, *_, i2 = env.step("no tags: malformed")  # turn 2 is malformed: s_2 = 0, no core call, no cost
    assert i2["structure_ok"] is False and i2["turn_cost"]["core"]["calls"] == 0
    assert "not one well-formed strategy" in obs and i2["feedback"]["kind"] == "structure"
    _, r3, term, trunc, i3 = env.step(reviser(i1["feedback"]["text"]))  # the number of turn 1's feedback
    assert term and not trunc
    s = [t["shaped"] for t in i3["turns"]]
    c = [t["cost_penalty"] for t in i3["turns"]]
    u = [si + ci for si, ci in zip(s, c)]
    assert s[1] == 0.0 and c[1] == 0.0
    expected = {"turn": [s[0], s[1], s[2]],
                "improvement": [s[0], u[1] - u[0] - c[1], u[2] - u[1] - c[2]],
                "final": [0.0, 0.0, u[2] - sum(c)]}[credit]
    assert [r1, r2, r3] == pytest.approx(expected)
    assert i3["credit"]["rule"] == credit and i3["credit"]["return"] == pytest.approx(sum(expected))
    env.close()


def test_an_unsolved_episode_truncates_at_max_turns(world):
    env = make(world, max_turns=2, gamma=0.0, kappa=0.0)
    env.reset(options={"index": 1})
    _, _, term, trunc, _ = env.step(FIRST)
    assert (term, trunc) == (False, False)
    _, _, term, trunc, info = env.step(FIRST)
    assert (term, trunc) == (False, True) and info["success"] is False and len(info["turns"]) == 2
    env.close()


def _plain(info: dict) -> dict:
    """An info without wall-clock latency (a timing, not a result: two runs of today's env differ there too)."""
    if isinstance(info, dict):
        return {k: _plain(v) for k, v in info.items() if k != "latency_s"}
    return info


def test_max_turns_1_is_todays_env_bit_for_bit(world, tmp_path):
    guides = [FIRST, "malformed", "<think>x</think><strategy>HARMFUL? no: check units.</strategy>"]
    runs = {}
    for name, build in {"today": lambda core: GCoPEnv("GSM8K", core=core, data_files=str(GSM8K_DIR), limit=6,
                                                      cache=tmp_path / "a", lam=3.0),
                        "max_turns=1": lambda core: gym.make("GCoP-GSM8K-v0", core=core, data_files=str(GSM8K_DIR),
                                                             limit=6, cache=tmp_path / "b", lam=3.0, max_turns=1,
                                                             credit="final")}.items():
        env = build(f"openai:mt-core@{world.openai_base_url}")
        steps = []
        for seed in range(4):
            obs, info = env.reset(seed=seed)
            result = env.step(guides[seed % len(guides)])
            steps.append((obs, info, result[0], result[1], result[2], result[3], _plain(result[4])))
        runs[name] = steps
        assert type(env.unwrapped) is GCoPEnv
        env.close()
    for a, b in zip(runs["today"], runs["max_turns=1"]):
        assert a == b
        assert isinstance(a[3], float) and a[3].hex() == b[3].hex()  # the float reward, bit for bit


def test_the_multi_turn_path_with_one_turn_gives_the_single_turn_reward_bit_for_bit(world, tmp_path):
    core = f"openai:mt-core@{world.openai_base_url}"
    single = GCoPEnv("GSM8K", core=core, data_files=str(GSM8K_DIR), limit=6, cache=tmp_path / "a", lam=3.0)
    multi = MultiTurnGCoPEnv("GSM8K", core=core, data_files=str(GSM8K_DIR), limit=6, cache=tmp_path / "b", lam=3.0,
                             max_turns=1)
    for seed, guide in enumerate([FIRST, "malformed", FIRST]):
        o1, _ = single.reset(seed=seed)
        o2, _ = multi.reset(seed=seed)
        a = single.step(guide)
        b = multi.step(guide)
        assert o1 == o2 and a[0] == b[0] and a[1].hex() == b[1].hex() and (a[2], a[3]) == (b[2] or b[3], False)
        assert _plain(a[4])["reward_components"] == _plain(b[4])["reward_components"]
        assert {k: v for k, v in _plain(a[4]).items()} == {k: v for k, v in _plain(b[4]).items() if k in a[4]}
    single.close()
    multi.close()


def test_an_infra_failure_mid_episode_does_not_advance_it_and_the_turn_can_be_retried(world):
    env = make(world, max_turns=3, gamma=0.0, kappa=0.0)
    env.reset(options={"index": 3})
    obs2, *_ = env.step(FIRST)
    world.faults.extend([status(500), status(500)])  # both attempts of turn 2's core call fail
    obs_again, reward, term, trunc, info = env.step(reviser(obs2))
    assert info["reward_is_task_outcome"] is False and info["error_stage"] == "core" and reward == 0.0
    assert (term, trunc) == (False, True) and obs_again == obs2 and info["turn"] == 2
    assert len(env.unwrapped.episode.turns) == 1  # nothing of the failed turn was recorded
    _, reward, term, trunc, info = env.step(reviser(obs2))  # the retry is the same turn 2
    assert term and info["turn"] == 2 and info["success"] and info["reward_is_task_outcome"]
    env.close()


def test_the_core_sees_its_previous_attempt_only_when_asked(world):
    for history in ("fresh", "previous"):
        env = make(world, max_turns=2, gamma=0.0, kappa=0.0, core_history=history)
        env.reset(options={"index": 0})
        env.step(FIRST)
        before = len(world.requests)
        _, _, _, _, info = env.step(FIRST)
        if history == "fresh":
            # the same strategy, the same prompt, a deterministic core: the cached answer, no new request
            assert len(world.requests) == before and info["turn_cost"]["core"]["cached_calls"] == 1
        else:
            prompt = world.requests[before]["body"]["messages"][-1]["content"]
            assert "Your previous attempt at this problem" in prompt and "which is wrong" in prompt
            assert prompt.rstrip().endswith("\\boxed{}.")
        env.close()


def test_multi_turn_ids_and_options(world):
    env = make(world, env_id="GCoP-GSM8K-MultiTurn-v0")
    assert env.unwrapped.max_turns == 3 and env.spec.kwargs["max_turns"] == 3
    env.close()
    for bad, match in [({"max_turns": 0}, "max_turns"), ({"max_turns": True}, "max_turns"),
                       ({"credit": "sum"}, "credit must be one of"), ({"core_history": "all"}, "core_history"),
                       ({"max_answer_chars": 10}, "max_answer_chars")]:
        with pytest.raises(ValueError, match=match):
            make(world, **bad)


def test_the_vector_env_autoresets_on_episode_end(world):
    core = make_core(f"openai:mt-core@{world.openai_base_url}", retry=FAST_RETRY, timeout_s=5)
    envs = gym.make_vec("GCoP-GSM8K-v0", num_envs=2, vectorization_mode="vector_entry_point", core=core,
                        data_files=str(GSM8K_DIR), limit=6, max_turns=2, gamma=0.0, kappa=0.0,
                        autoreset_mode="SameStep")
    obs, _ = envs.reset(seed=0)
    obs, _, term, trunc, infos = envs.step([FIRST, FIRST])
    assert not term.any() and not trunc.any() and all("Feedback:" in o for o in obs)
    obs, _, term, trunc, infos = envs.step([reviser(obs[0]), FIRST])
    assert term.tolist() == [True, False] and trunc.tolist() == [False, True]
    # both sub-envs started a new episode in the same step; the finished turn's info is under final_info
    assert all("Feedback:" not in o and "<strategy>" in o for o in obs)
    assert infos["final_info"]["turn"].tolist() == [2, 2] and infos["final_info"]["success"].tolist() == [True, False]
    assert infos["turn"].tolist() == [1, 1]
    envs.close()


def test_copies_and_pickles_keep_the_episode(world):
    env = make(world, max_turns=3, gamma=0.0, kappa=0.0).unwrapped
    env.reset(options={"index": 0})
    env.step(FIRST)
    twin = copy.deepcopy(env)
    assert twin.episode.turn == 2 and twin.episode.observation == env.episode.observation
    clone = pickle.loads(pickle.dumps(env))
    _, _, term, _, info = clone.step(reviser(clone.episode.observation))
    assert term and info["turn"] == 2
    assert env.sibling().episode is None
    env.close()
    clone.close()


def test_rewards_are_plain_floats_in_the_vector_batch(world):
    envs = gym.make_vec("GCoP-GSM8K-MultiTurn-v0", num_envs=2, vectorization_mode="vector_entry_point",
                        core=f"openai:mt-core@{world.openai_base_url}", data_files=str(GSM8K_DIR), limit=6,
                        gamma=0.0, kappa=0.0)
    envs.reset(seed=1)
    _, rewards, *_ = envs.step([FIRST, FIRST])
    assert rewards.dtype == np.float64
    envs.close()


def test_next_step_autoreset_and_infra_aware_retry_work_across_turns(world):
    from gcop_env.envs.wrappers import EpisodeStatistics, InfraAware

    core = make_core(f"openai:mt-core@{world.openai_base_url}", retry=FAST_RETRY, timeout_s=5)
    envs = gym.make_vec("GCoP-GSM8K-v0", num_envs=2, vectorization_mode="vector_entry_point", core=core,
                        data_files=str(GSM8K_DIR), limit=6, max_turns=2, gamma=0.0, kappa=0.0)
    obs, _ = envs.reset(seed=3)
    obs, _, term, trunc, _ = envs.step([FIRST, FIRST])
    obs, _, term, trunc, infos = envs.step([reviser(obs[0]), FIRST])  # sub-env 0 solves, sub-env 1 runs out
    assert term.tolist() == [True, False] and trunc.tolist() == [False, True] and infos["turn"].tolist() == [2, 2]
    obs, rewards, term, trunc, infos = envs.step([FIRST, FIRST])  # NextStep: this call only resets both
    assert rewards.tolist() == [0.0, 0.0] and not (term.any() or trunc.any()) and infos["turn"].tolist() == [1, 1]
    envs.close()

    env = EpisodeStatistics(InfraAware(make(world, max_turns=3, gamma=0.0, kappa=0.0), policy="retry", retries=2,
                                       backoff_s=0.0))
    env.reset(options={"index": 5})
    obs, r1, *_ = env.step(FIRST)
    world.faults.extend([status(500), status(500)])  # turn 2's first attempt fails; the wrapper steps again
    _, r2, term, trunc, info = env.step(reviser(obs))
    assert term and info["infra_attempts"] == 2 and info["turn"] == 2 and info["reward_is_task_outcome"]
    assert info["episode"]["l"] == 2 and info["episode"]["r"] == pytest.approx(r1 + r2)
    env.close()


def test_gymnasium_env_checker_passes_and_the_spec_round_trips(world):
    from gymnasium.utils.env_checker import check_env

    env = make(world, max_turns=2, gamma=0.0, kappa=0.0, credit="final", core_history="previous")
    check_env(env.unwrapped, skip_render_check=True)
    spec = env.spec
    env.close()
    env = gym.make("GCoP-GSM8K-v0", core=f"openai:mt-core@{world.openai_base_url}", split="test",
                   data_files=str(GSM8K_DIR), limit=6, max_turns=2, credit="final")
    again = gym.make(gym.envs.registration.EnvSpec.from_json(env.spec.to_json()))
    assert again.unwrapped.max_turns == 2 and again.unwrapped.credit == "final"
    assert spec.kwargs["core_history"] == "previous"
    env.close()
    again.close()


def test_a_budget_that_cannot_cover_turn_2_refuses_it_as_an_infra_error_and_keeps_turn_1(world):
    from gcop_env.cores.budget import (
        FRAMING_TOKENS_PER_MESSAGE,
        FRAMING_TOKENS_PER_REQUEST,
    )

    def worst(body: dict) -> int:  # the budget's worst case for a request: UTF-8 bytes, framing, max_tokens
        messages = body["messages"]
        return (sum(len(m["content"].encode()) for m in messages) + FRAMING_TOKENS_PER_MESSAGE * len(messages)
                + FRAMING_TOKENS_PER_REQUEST + body["max_tokens"])

    options = {"max_turns": 2, "gamma": 0.0, "kappa": 0.0, "cache": False}  # one core call a turn, all paid
    probe = make(world, **options)
    probe.reset(options={"index": 0})
    obs2, *_, probe_i1 = probe.step(FIRST)
    first = len(world.requests) - 1
    probe.step(reviser(obs2))
    worst1, worst2 = worst(world.requests[first]["body"]), worst(world.requests[-1]["body"])
    spent1 = probe_i1["turn_cost"]["total_tokens"]
    assert worst2 >= worst1  # the revised strategy is the longer one
    probe.close()

    env = make(world, max_total_tokens=worst1 + spent1 - 1, **options)  # turn 1 fits, turn 2 cannot
    env.reset(options={"index": 0})
    obs2, _, term, trunc, i1 = env.step(FIRST)
    assert (term, trunc) == (False, False) and i1["reward_is_task_outcome"] and i1["success"] is False
    assert i1["cost"]["budget"]["spent_tokens"] == spent1
    before = len(world.requests)
    for _ in range(2):  # refused, and refused again on a retry: the turn never advances, nothing is sent
        obs, reward, term, trunc, info = env.step(reviser(obs2))
        assert info["error_stage"] == "budget" and info["reward_is_task_outcome"] is False and reward == 0.0
        assert (term, trunc) == (False, True) and obs == obs2 and info["turn"] == 2
        assert info["cost"]["budget"]["exhausted"] and info["cost"]["budget"]["spent_tokens"] == spent1
        assert info["cost"]["total_tokens"] == spent1  # the episode's cost: turn 1's; a refused call is free
        assert len(env.unwrapped.episode.turns) == 1
    assert len(world.requests) == before
    env.close()
