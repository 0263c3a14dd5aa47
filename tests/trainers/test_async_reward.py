"""The GRPO reward as an ``async def``: overlapping core calls under a bound, the sync path's rewards.

Concurrency is counted, not timed: the fake core counts the requests inside it, and each request
stays until more than the bound are in flight or a hold time passes, so a pool that overlaps its
calls fills up to its bound and one that breaks the bound shows it.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import asdict

import pytest
from support import GOOD_GUIDE, ScriptedSolver, gsm8k_golds
from fake_llm import FakeLLMServer, api_error

from gcop_env import RetryPolicy, RewardConfig, get_task, make_core
from gcop_env.cores.base import FatalCoreError, SamplingParams
from gcop_env.step.scoring import GuideScorer
from gcop_env.trainers.async_reward import AsyncShapedReward
from gcop_env.cli.args import parse_config
from gcop_env.trainers.config import GRPORunConfig
from gcop_env.utils.fields import ConfigError, config_from_dict
from gcop_env.trainers.grpo import ShapedReward

HOLD_S = 0.5  # how long a request waits for the pool to (over)fill; only counts are asserted


class InFlightCounter:
    """A responder that counts the requests inside it (``max_in_flight``) around ``respond``."""

    def __init__(self, respond, limit: int, hold_s: float = HOLD_S):
        self.respond = respond
        self.limit = limit
        self.hold_s = hold_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        self._cond = threading.Condition()

    def __call__(self, prompt: str) -> str:
        with self._cond:
            self.in_flight += 1
            self.requests += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
            self._cond.wait_for(lambda: self.in_flight > self.limit, timeout=self.hold_s)
        try:
            return self.respond(prompt)
        finally:
            with self._cond:
                self.in_flight -= 1


class DownFor:
    """The scripted solver, except that calls about ``question`` fail (the connection drops)."""

    def __init__(self, solver: ScriptedSolver, question: str | None = None):
        self.solver, self.question = solver, question

    def __call__(self, prompt: str) -> str:
        if self.question is not None and self.question in prompt:
            raise ConnectionError("core is down")
        return self.solver(prompt)


@pytest.fixture
def problems(gsm8k_dir):
    return get_task("GSM8K").load("test", data_files=str(gsm8k_dir))[:8]


@pytest.fixture(autouse=True)
def _priced(priced_models):
    priced_models({"fake-core": (0.8, 4.0)})


def scorer_for(server, reward: RewardConfig) -> GuideScorer:
    core = make_core(f"openai:fake-core@{server.openai_base_url}", cache=False,
                     retry=RetryPolicy(max_attempts=2, initial_backoff_s=0.01), timeout_s=10)
    return GuideScorer(get_task("GSM8K").validator(), core, reward=reward, sampling=SamplingParams())


def as_completion(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


ONE_CALL_PER_STEP = RewardConfig(beta=0.1, gamma=0.0, kappa=0.0)  # no baseline, no judge: one core request per step


def test_async_reward_overlaps_core_calls_and_never_exceeds_its_bound(problems):
    counter = InFlightCounter(ScriptedSolver(gsm8k_golds()), limit=3)
    with FakeLLMServer(counter) as server:
        reward = AsyncShapedReward(ShapedReward(scorer_for(server, ONE_CALL_PER_STEP), problems), max_inflight=3)
        ids = [p.task_id for p in problems]
        rewards = asyncio.run(reward(prompts=[None] * 8, completions=[as_completion(GOOD_GUIDE)] * 8, task_id=ids))
    print(f"async reward, bound 3: {counter.requests} requests, at most {counter.max_in_flight} in flight")
    assert rewards == [pytest.approx(1.1)] * 8  # R = 1 (the scripted core follows the strategy) + β
    assert counter.requests == 8
    assert 2 <= counter.max_in_flight <= 3


def test_the_in_flight_counter_sees_a_serial_reward_as_serial(problems):
    # the control for the test above: the sync reward with one worker never overlaps
    counter = InFlightCounter(ScriptedSolver(gsm8k_golds()), limit=3, hold_s=0.05)
    with FakeLLMServer(counter) as server:
        reward = ShapedReward(scorer_for(server, ONE_CALL_PER_STEP), problems[:4], max_workers=1)
        reward(prompts=[None] * 4, completions=[as_completion(GOOD_GUIDE)] * 4, task_id=[p.task_id for p in problems[:4]])
    assert counter.requests == 4 and counter.max_in_flight == 1


def test_async_and_sync_rewards_are_identical_on_the_same_batch(problems):
    from trl.trainer.utils import is_async_callable

    down = problems[3].question
    completions = [as_completion(GOOD_GUIDE), as_completion(GOOD_GUIDE),  # one problem twice: sample indices 0, 1
                   as_completion("the answer is 42"),  # malformed: reward 0, no core call
                   as_completion("<think>Be quick.</think><strategy>HARMFUL: guess quickly.</strategy>"),
                   as_completion(GOOD_GUIDE)]  # its core is down: infrastructure failure, None
    ids = [problems[0].task_id, problems[0].task_id, problems[1].task_id, problems[2].task_id, problems[3].task_id]
    weights = RewardConfig(beta=0.1, gamma=0.2, kappa=0.5)  # core, baseline and judge calls

    def run(server, make_reward, call):
        counter = server.responder = InFlightCounter(DownFor(ScriptedSolver(gsm8k_golds()), down), limit=4, hold_s=0.05)
        logged, extra = {}, {}
        reward = make_reward(scorer_for(server, weights))  # a fresh scorer: no baseline remembered
        rewards = call(reward(prompts=[None] * 5, completions=completions, task_id=ids,
                              log_metric=logged.__setitem__, log_extra=extra.__setitem__))
        return reward, rewards, logged, extra, counter

    with FakeLLMServer() as server:  # one server: the error messages name the same URL
        sync, sync_rewards, sync_logged, sync_extra, sync_counter = run(
            server, lambda scorer: ShapedReward(scorer, problems, max_workers=4), lambda result: result)
        async_, async_rewards, async_logged, async_extra, async_counter = run(
            server, lambda scorer: AsyncShapedReward(ShapedReward(scorer, problems), max_inflight=4), asyncio.run)

    assert is_async_callable(async_) and not is_async_callable(sync)  # what TRL checks to await it
    assert async_rewards == sync_rewards
    assert sync_rewards[2] == 0.0 and sync_rewards[4] is None and sync_rewards[0] > sync_rewards[3]
    assert async_logged == sync_logged and async_extra == sync_extra
    assert async_logged["gcop/infra_error_rate"] == pytest.approx(1 / 5) and "gcop/tamper_rate" in async_logged
    assert asdict(async_.totals) == asdict(sync.totals) and async_.totals.infra_errors == 1
    assert async_counter.requests == sync_counter.requests > 0
    assert async_counter.max_in_flight > 1


def test_a_fatal_error_stops_the_async_reward_after_the_running_steps_end(problems):
    counter = InFlightCounter(ScriptedSolver(gsm8k_golds()), limit=2)
    with FakeLLMServer(counter) as server:
        reward = AsyncShapedReward(ShapedReward(scorer_for(server, ONE_CALL_PER_STEP), problems), max_inflight=2)
        ids = [p.task_id for p in problems]
        reward.reward(prompts=[None], completions=[as_completion(GOOD_GUIDE)], task_id=ids[:1])  # the client is up
        # the first request of the batch is answered (after its hold), the second is refused for good
        server.faults.extend([None, api_error(403, "permission_error", "no access")])
        with pytest.raises(FatalCoreError, match="permission_error"):
            asyncio.run(reward(prompts=[None] * 8, completions=[as_completion(GOOD_GUIDE)] * 8, task_id=ids))
        # the step running beside the failed one had finished when the error left; the queued ones never started
        assert counter.in_flight == 0
        assert server.count() - 1 < 8
        reward.close()


def test_reward_mode_and_max_inflight_are_config_fields(tmp_path):
    config = parse_config(GRPORunConfig, ["--max-inflight", "4", "--reward-mode", "sync"], "gcop grpo")
    assert config.max_inflight == 4 and config.reward_mode == "sync"
    assert GRPORunConfig().reward_mode == "async" and GRPORunConfig().max_inflight == 16
    with pytest.raises(ConfigError, match="max_inflight"):
        config_from_dict(GRPORunConfig, {"max_inflight": 0})
    with pytest.raises(ConfigError, match="reward_mode"):
        config_from_dict(GRPORunConfig, {"reward_mode": "threads"})
    with pytest.raises(ValueError, match="max_inflight"):
        AsyncShapedReward(ShapedReward(None, []), max_inflight=0)


def test_a_tiny_grpo_step_scores_through_the_async_reward(gsm8k_dir, tmp_path, tiny_gsm8k_guide):
    from gcop_env.cli.train import grpo_cli

    pytest.importorskip("torch")
    guide = tiny_gsm8k_guide
    # the advisor recipe sends the whole (random) output of the untrained guide to the core, so every
    # non-empty completion makes exactly one core call (no baseline, no judge)
    counter = InFlightCounter(ScriptedSolver(gsm8k_golds()), limit=3)
    out = tmp_path / "grpo"
    with FakeLLMServer(counter) as server:
        code = grpo_cli(["--task", "GSM8K", "--data-files", str(gsm8k_dir), "--split", "test", "--limit", "2",
                         "--core", f"openai:fake-core@{server.openai_base_url}", "--guide", str(guide),
                         "--output-dir", str(out), "--recipe", "advisor", "--max-steps", "1",
                         "--num-generations", "4", "--per-device-train-batch-size", "8",
                         "--max-completion-length", "8", "--eval-limit", "0", "--use-cpu", "--no-preflight",
                         "--reward-mode", "async", "--max-inflight", "3",
                         "--max-workers", "1"])  # the sync path would score one at a time
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    metrics = summary["metrics"]
    print(f"tiny GRPO step, async reward: {metrics['completions']} completions, {counter.requests} core calls, "
          f"at most {counter.max_in_flight} in flight (bound 3)")
    assert summary["steps"] == 1 and metrics["completions"] == 8 and metrics["infra_errors"] == 0
    assert counter.requests == round(metrics["mean_structure_ok"] * 8) >= 2
    assert 2 <= counter.max_in_flight <= 3
    logged = {k for entry in summary["log_history"] for k in entry}
    assert {"gcop/structure_ok", "gcop/task_reward", "gcop/infra_error_rate", "gcop/tamper_rate"} <= logged
    assert json.loads((out / "run_config.json").read_text())["reward_mode"] == "async"


def test_the_event_loop_stays_free_while_the_reward_scores(problems):
    # TRL awaits all async reward functions of a batch under one asyncio.gather: a second function
    # (here a probe) runs while this one's core calls are in flight, not before or after them
    counter = InFlightCounter(ScriptedSolver(gsm8k_golds()), limit=4)
    seen_in_flight = []

    async def probe(**_):
        for _ in range(2000):
            if counter.in_flight:
                seen_in_flight.append(counter.in_flight)
                break
            await asyncio.sleep(0.001)
        return [0.0] * 4

    async def batch(reward):
        kwargs = dict(prompts=[None] * 4, completions=[as_completion(GOOD_GUIDE)] * 4,
                      task_id=[p.task_id for p in problems[:4]])
        return await asyncio.gather(reward(**kwargs), probe(**kwargs))

    with FakeLLMServer(counter) as server:
        reward = AsyncShapedReward(ShapedReward(scorer_for(server, ONE_CALL_PER_STEP), problems), max_inflight=4)
        shaped, _ = asyncio.run(batch(reward))
    assert shaped == [pytest.approx(1.1)] * 4 and counter.requests == 4
    assert seen_in_flight and seen_in_flight[0] >= 1


def test_run_totals_add_up_every_process_part():
    from gcop_env.trainers.grpo import RewardTotals

    parts = []
    for completions, errors, shaped in ((8, 1, [1.0, 0.0]), (8, 0, [0.5])):
        t = RewardTotals(completions=completions, infra_errors=errors, cost_usd=0.25, spent_usd=0.125)
        t.add("shaped", shaped)
        parts.append(t)
    total = RewardTotals().merged(parts)
    assert (total.completions, total.infra_errors, total.cost_usd, total.spent_usd) == (16, 1, 0.5, 0.25)
    assert total.means() == {"shaped": pytest.approx(0.5)}  # over the 3 values, not the mean of the 2 means


def test_each_training_process_draws_its_own_core_samples(problems, monkeypatch):
    # under accelerate a GRPO group can span processes: the same completion in two processes'
    # slices must ask a sampled core for two draws, not share the first one's cached answer
    from gcop_env.envs.env import SAMPLES_PER_STREAM

    items = [(problems[0], GOOD_GUIDE), (problems[0], GOOD_GUIDE), (problems[1], GOOD_GUIDE)]
    core = make_core("openai:fake-core@http://127.0.0.1:9/v1", cache=False)
    sampled = ShapedReward(GuideScorer(get_task("GSM8K").validator(), core, sampling=SamplingParams(temperature=0.7)),
                           problems)
    greedy = ShapedReward(GuideScorer(get_task("GSM8K").validator(), core, sampling=SamplingParams()), problems)
    monkeypatch.delenv("RANK", raising=False)
    assert sampled.sample_indices(items) == [0, 1, 0]  # one process: as before
    monkeypatch.setenv("RANK", "1")
    assert sampled.sample_indices(items) == [SAMPLES_PER_STREAM, SAMPLES_PER_STREAM + 1, SAMPLES_PER_STREAM]
    assert greedy.sample_indices(items) == [0, 0, 0]  # a deterministic core: the cached answer is the answer


def test_identical_completions_are_paid_once_with_a_deterministic_core(problems, fake_llm, tmp_path):
    """A GRPO group often holds the same completion several times. A deterministic core answers each
    copy alike, so the batch pays one core call per distinct completion; the copies are cache hits
    (or wait on the identical request in flight) and get the same reward."""
    server = fake_llm(ScriptedSolver(gsm8k_golds()))
    core = make_core(f"openai:fake-core@{server.openai_base_url}", cache=tmp_path / "cache")
    reward = ShapedReward(GuideScorer(get_task("GSM8K").validator(), core, reward=ONE_CALL_PER_STEP,
                                      sampling=SamplingParams()), problems)
    completions = [GOOD_GUIDE] * 4 + [GOOD_GUIDE.replace("Compute", "Work out")] * 2
    rewards = reward([""] * 6, completions, task_id=[problems[0].task_id] * 6)
    assert GOOD_GUIDE.replace("Compute", "Work out") != GOOD_GUIDE
    assert server.count() == 2
    assert len(set(rewards[:4])) == 1 and len(set(rewards[4:])) == 1 and None not in rewards
