"""Budgets (``max_usd`` / ``max_total_tokens``): the cap holds, nothing past it is sent, commands
stop with EXIT_BUDGET, save what finished, and a re-run with a larger budget completes.

Every core is a real SDK over a loopback fake server (tests/fake_llm.py) under a made-up model
priced through ``GCOP_PRICES``; the server counts every request that reaches it.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gymnasium as gym
import pytest

from support import GOOD_GUIDE, GSM8K_DIR, ScriptedSolver, gsm8k_golds
from fake_llm import FakeLLMServer

import gcop_env
from gcop_env.envs.env import GCoPEnv
from gcop_env.cli.budget import resume_command
from gcop_env.cli.exit_codes import EXIT_BUDGET
from gcop_env.cores.budget import Budget, BudgetExceeded, UnpricedModel, worst_case_input_tokens
from gcop_env.cores import make_core
from gcop_env.cores.base import CoreRequest, Message, SamplingParams
from gcop_env.cores.cache import ResponseCache
from gcop_env.cores.pricing import price_tokens

# USD per million (input, output) tokens of the fake models: prices large enough that a few
# calls reach a cap of cents (the fake server counts one token per word).
PRICES = {"fake-core": [100.0, 400.0], "fake-teacher": [200.0, 800.0]}


@pytest.fixture(autouse=True)
def _priced(priced_models):
    priced_models(PRICES)


@pytest.fixture
def server():
    with FakeLLMServer(ScriptedSolver(gsm8k_golds())) as s:
        yield s


def _core_spec(server, model="fake-core"):
    return f"openai:{model}@{server.openai_base_url}"


def _env(server, **kwargs):
    return GCoPEnv("GSM8K", core=_core_spec(server), split="test", data_files=str(GSM8K_DIR), limit=20,
                            gamma=0.0, kappa=0.0, max_tokens=64, **kwargs)


def _worst_usd(core, request: CoreRequest) -> float:
    return price_tokens(core.backend, core.model, worst_case_input_tokens(request), request.sampling.max_tokens,
                        core.prices)[0]


# -- the env ------------------------------------------------------------------------------------------


def test_env_step_past_the_budget_is_an_infra_error_and_sends_nothing(server):
    env = _env(server, max_usd=0.2)
    infos = []
    for index in range(10):
        env.reset(options={"index": index})
        _, reward, terminated, _, info = env.step(GOOD_GUIDE)
        infos.append((reward, info))
        assert terminated
    paid = [info for _, info in infos if "error" not in info]
    refused = [(reward, info) for reward, info in infos if "error" in info]
    assert paid and refused, [i.get("error") for _, i in infos]
    first_refused = len(paid)
    assert all("error" not in info for _, info in infos[:first_refused])  # no patchwork: once out, always out
    for reward, info in refused:
        assert info["error_stage"] == "budget" and "budget exhausted" in info["error"]
        assert info["reward_is_task_outcome"] is False and reward == 0.0
        assert "validation" not in info  # never graded: not a wrong answer
        assert info["cost"]["budget"]["exhausted"] is True
    for info in paid:
        assert info["validation"]["status"] == "pass" and info["reward_is_task_outcome"] is True
    # only the paid steps reached the server; the budget's count is the server's count
    assert server.count() == len(paid) == env.budget.calls
    status = env.budget.status()
    assert 0 < status.spent_usd <= 0.2
    last = refused[-1][1]["cost"]["budget"]
    assert last["spent_usd"] == pytest.approx(status.spent_usd)
    assert last["left_usd"] == pytest.approx(0.2 - status.spent_usd) and last["max_usd"] == 0.2
    # it refused because what is left is less than the worst case of the refused step's core call
    from gcop_env.step.prompts import core_prompt
    from gcop_env.step.strategy import parse_guide_output

    problem = env.problems[first_refused]
    prompt = core_prompt(problem.question, env.validator.answer_format, parse_guide_output(GOOD_GUIDE).strategy)
    refused_request = CoreRequest(messages=(Message("user", prompt),), sampling=env.scorer.sampling)
    assert status.left_usd < _worst_usd(env.core, refused_request)
    assert status.refusal and f"${_worst_usd(env.core, refused_request):.4f}" in status.refusal
    print(f"max_usd 0.2: {len(paid)} steps paid (${status.spent_usd:.4f}), {len(refused)} refused, "
          f"{server.count()} requests")

    # a step answered from the cache costs nothing and still works after the budget ran out
    env.reset(options={"index": 0})
    _, reward, _, _, info = env.step(GOOD_GUIDE)
    assert "error" not in info and info["validation"]["status"] == "pass" and info["cost"]["core"]["cached_calls"] == 1
    assert server.count() == len(paid)
    env.close()


def test_env_max_total_tokens_caps_tokens_and_the_spec_round_trips(server):
    env = gym.make("GCoP-GSM8K-v0", core=_core_spec(server), split="test", data_files=str(GSM8K_DIR), limit=20,
                   gamma=0.0, kappa=0.0, max_tokens=64, max_total_tokens=2000)
    outcomes = []
    for index in range(12):
        env.reset(options={"index": index})
        outcomes.append(env.step(GOOD_GUIDE)[4])
    budget = env.unwrapped.budget
    paid = [i for i in outcomes if "error" not in i]
    assert paid and len(paid) < len(outcomes)
    assert budget.spent_tokens == sum(i["cost"]["total_tokens"] for i in paid) <= 2000
    assert server.count() == len(paid)
    assert all(i["error_stage"] == "budget" for i in outcomes[len(paid):])
    # the spec is JSON and rebuilds an env with the same caps
    spec = env.spec.to_json()
    assert json.loads(spec)["kwargs"]["max_total_tokens"] == 2000
    again = gym.make(gym.envs.registration.EnvSpec.from_json(spec))
    assert again.unwrapped.budget.max_total_tokens == 2000 and again.unwrapped.budget.spent_tokens == 0
    env.close()
    again.close()


def test_env_without_caps_has_no_budget_and_bad_caps_are_refused(server):
    env = _env(server)
    assert env.budget is None and env.core.budget is None
    env.reset(options={"index": 0})
    assert "budget" not in env.step(GOOD_GUIDE)[4]["cost"]
    env.close()
    for bad in ({"max_usd": -1}, {"max_usd": float("nan")}, {"max_total_tokens": 1.5}, {"max_total_tokens": True}):
        with pytest.raises(ValueError, match="max_"):
            _env(server, **bad)
    with pytest.raises(UnpricedModel, match="not in the price table"):  # $0 calls could never reach a dollar cap
        GCoPEnv("GSM8K", core=_core_spec(server, "unpriced-model"), split="test",
                         data_files=str(GSM8K_DIR), limit=2, max_usd=1.0)


def test_judge_and_baseline_pay_from_the_same_budget(server):
    env = GCoPEnv("GSM8K", core=_core_spec(server), judge=_core_spec(server, "fake-teacher"), split="test",
                           data_files=str(GSM8K_DIR), limit=20, gamma=0.5, kappa=0.5, max_tokens=64,
                           judge_max_tokens=64, max_usd=0.5)
    assert env.scorer.judge.core.budget is env.budget is env.core.budget
    env.reset(options={"index": 0})
    info = env.step(GOOD_GUIDE)[4]
    assert "error" not in info
    roles = info["cost"]
    assert roles["core"]["calls"] == roles["baseline"]["calls"] == roles["judge"]["calls"] == 1
    assert env.budget.calls == 3 == server.count()
    assert env.budget.spent_usd == pytest.approx(roles["total_spent_usd"])
    env.close()


# -- concurrency --------------------------------------------------------------------------------------


def test_many_threads_never_overshoot_the_cap(tmp_path):
    arrived = []
    lock = threading.Lock()

    def slow_answer(prompt):
        with lock:
            arrived.append(prompt)
        time.sleep(0.01)  # keeps many requests in flight at once
        return "The answer is \\boxed{1}."

    with FakeLLMServer(slow_answer) as server:
        cap = 1.0
        budget = Budget(max_usd=cap)
        core = make_core(_core_spec(server), cache=tmp_path / "cache.sqlite", budget=budget)
        requests = [CoreRequest(messages=(Message("user", f"question {i}: " + "word " * 60),),
                                sampling=SamplingParams(max_tokens=256)) for i in range(400)]
        worst = _worst_usd(core, requests[0])

        def ask(request):
            try:
                return core.complete(request)
            except BudgetExceeded as exc:
                return exc

        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(ask, requests))
    answered = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    status = budget.status()
    print(f"16 threads, cap ${cap}: {len(answered)} answered (${status.spent_usd:.4f}), {len(refused)} refused, "
          f"worst case ${worst:.4f} per call, {server.count()} requests")
    # the documented bound: never over the cap, and stopped only when one more worst case would not fit
    assert status.spent_usd <= cap
    assert cap - status.spent_usd < worst
    # what reached the server is exactly what was paid; a refused call sent nothing
    assert server.count() == len(arrived) == len(answered) == status.calls == core.calls
    assert len(refused) == status.refused == len(requests) - len(answered) and status.exhausted
    assert status.spent_usd == pytest.approx(sum(r.cost_usd for r in answered))
    # reservations are given back when calls settle below their worst case: more calls fit than
    # cap / worst case (which a budget that kept worst cases would allow)
    assert len(answered) > cap / worst


def test_a_failed_call_is_free_and_a_cache_hit_is_never_refused(tmp_path):
    from fake_llm import status as http_status

    with FakeLLMServer(lambda prompt: "ok") as server:
        budget = Budget(max_total_tokens=400)
        core = make_core(_core_spec(server), cache=tmp_path / "c.sqlite", budget=budget,
                         retry=gcop_env.RetryPolicy(max_attempts=1))
        request = CoreRequest(messages=(Message("user", "hello there"),), sampling=SamplingParams(max_tokens=64))
        server.faults.append(http_status(503))
        with pytest.raises(gcop_env.CoreError) as failed:
            core.complete(request)
        assert not isinstance(failed.value, BudgetExceeded)
        assert budget.spent_tokens == 0 and budget.calls == 0  # the failed call is counted as free
        first = core.complete(request)
        assert budget.spent_tokens == first.input_tokens + first.output_tokens
        big = CoreRequest(messages=(Message("user", "y" * 2000),), sampling=SamplingParams(max_tokens=64))
        with pytest.raises(BudgetExceeded, match="budget exhausted"):
            core.complete(big)
        sent = server.count()
        assert core.complete(request).cached  # free: answered from the cache although exhausted
        with pytest.raises(BudgetExceeded):  # exhausted stays exhausted, even for a call that would fit
            core.complete(CoreRequest(messages=(Message("user", "hi"),), sampling=SamplingParams(max_tokens=1)))
        assert server.count() == sent == 2


@pytest.mark.parametrize("tokens", [-100000, float("nan")], ids=["negative", "nan"])
def test_a_reply_with_bad_usage_is_charged_its_worst_case_never_a_negative_or_free_call(tmp_path, tokens):
    # A server reporting -100000 tokens must not pay the budget back (nor NaN make it stop counting):
    # the reply is malformed (an infra error, not cached) and the budget counts what the call could have cost.
    with FakeLLMServer(lambda prompt: "ok") as server:
        server.edit_reply = lambda reply: {**reply, "usage": {**reply["usage"], "prompt_tokens": tokens}}
        request = CoreRequest(messages=(Message("user", "hello there"),), sampling=SamplingParams(max_tokens=64))
        worst = worst_case_input_tokens(request) + 64
        budget = Budget(max_usd=10.0, max_total_tokens=3 * worst)
        core = make_core(_core_spec(server), cache=tmp_path / "c.sqlite", budget=budget,
                         retry=gcop_env.RetryPolicy(max_attempts=1))
        refused = 0
        for i in range(10):
            try:
                core.complete(CoreRequest(messages=request.messages, sampling=request.sampling, sample_index=i))
            except BudgetExceeded:
                refused += 1
            except gcop_env.CoreError as exc:
                assert "usage" in str(exc)
        assert server.count() == 3 and refused == 7  # --max-total-tokens holds: 3 worst cases, then nothing sent
        assert budget.spent_tokens == 3 * worst and budget.spent_usd > 0
        assert len(ResponseCache(tmp_path / "c.sqlite")) == 0


def test_resume_command_replaces_the_caps():
    budget = Budget(max_usd=0.5, max_total_tokens=1000)
    argv = ["--core-only", "--out", "runs/x y", "--max-usd", "0.5", "--max-total-tokens=1000"]
    assert resume_command("gcop eval", argv, budget.status()) == \
        "gcop eval --core-only --out 'runs/x y' --max-usd 1 --max-total-tokens 2000"


# -- gcop eval ----------------------------------------------------------------------------------------


def _eval_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def _same_results(rows: list[dict]) -> list[tuple]:
    return sorted((r["task_id"], r["status"], r["reward"], r["core_output"]) for r in rows)


@pytest.mark.parametrize("flag,cap,larger", [("--max-usd", "0.1", "5"), ("--max-total-tokens", "1000", "100000")])
def test_gcop_eval_stops_saves_and_resumes_with_a_larger_budget(server, tmp_path, capsys, flag, cap, larger):
    from gcop_env.cli.eval import eval_cli

    base = ["--core-only", "--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--limit", "10",
            "--core", _core_spec(server), "--core-max-tokens", "64", "--workers", "2", "--no-progress",
            "--no-preflight"]
    out = tmp_path / "budgeted"
    argv = base + ["--out", str(out), flag, cap]
    assert eval_cli(argv) == EXIT_BUDGET
    err = capsys.readouterr().err
    saved = _eval_rows(out)
    assert 0 < len(saved) < 10, err
    assert all(r["status"] in ("pass", "fail") and r["error"] is None for r in saved)  # nothing refused is saved
    assert not (out / "summary.json").exists()
    assert "budget exhausted" in err
    suggested = float(err.split(f"{flag} ")[-1].split()[0])  # the resume command's larger cap
    assert suggested >= 2 * float(cap)
    sent = server.count()
    assert sent >= len(saved)

    # the re-run with a larger budget skips the saved problems and completes
    questions = {p.task_id: p.question for p in gcop_env.get_task("GSM8K").load(
        split="test", data_files=str(GSM8K_DIR))[:10]}
    assert eval_cli(base + ["--out", str(out), flag, larger]) == 0
    new_prompts = [server._last_user_text(r["body"]["messages"]) for r in server.requests[sent:]]
    assert not any(questions[r["task_id"]] in prompt for r in saved for prompt in new_prompts)
    resumed = _eval_rows(out)
    assert len(resumed) == 10

    # it matches a run without any budget (and without the cache: it pays for every call once), and
    # the two budgeted runs together paid for exactly as many calls: nothing was paid twice
    paid_budgeted = server.count()
    plain = tmp_path / "plain"
    assert eval_cli(base + ["--out", str(plain), "--cache", "off"]) == 0
    assert server.count() - paid_budgeted == paid_budgeted
    assert _same_results(resumed) == _same_results(_eval_rows(plain))
    resumed_metrics = json.loads((out / "summary.json").read_text())["metrics"]
    plain_metrics = json.loads((plain / "summary.json").read_text())["metrics"]
    for key in ("accuracy", "n_scored", "status_counts", "cost_total_usd"):
        assert resumed_metrics[key] == plain_metrics[key]


def test_gcop_eval_refuses_a_dollar_cap_on_an_unpriced_model(server, tmp_path, capsys):
    from gcop_env.cli.eval import eval_cli

    code = eval_cli(["--core-only", "--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--limit", "2",
                     "--core", _core_spec(server, "unpriced-model"), "--no-progress", "--no-preflight",
                     "--out", str(tmp_path / "x"), "--max-usd", "1"])
    assert code == 2 and "not in the price table" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        eval_cli(["--core-only", "--out", str(tmp_path / "y"), "--max-usd", "-1"])
    assert bad.value.code == 2 and "max_usd must be >= 0" in capsys.readouterr().err
    assert server.count() == 0


def test_max_usd_zero_replays_a_finished_run_from_the_cache_only(server, tmp_path, capsys):
    from gcop_env.cli.eval import eval_cli

    base = ["--core-only", "--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--limit", "3",
            "--core", _core_spec(server), "--core-max-tokens", "64", "--no-progress", "--no-preflight"]
    assert eval_cli(base + ["--out", str(tmp_path / "a")]) == 0
    sent = server.count()
    assert eval_cli(base + ["--out", str(tmp_path / "b"), "--max-usd", "0"]) == 0  # every answer is cached: free
    assert eval_cli(base + ["--out", str(tmp_path / "c"), "--max-usd", "0", "--limit", "4"]) == EXIT_BUDGET
    assert server.count() == sent and len(_eval_rows(tmp_path / "c")) == 3
    err = capsys.readouterr().err
    suggested = float(err.split("--max-usd ")[-1].split()[0])  # a cap that pays for the refused call
    assert suggested > 0
    assert eval_cli(base + ["--out", str(tmp_path / "c"), "--limit", "4", "--max-usd", str(suggested)]) == 0
    assert server.count() == sent + 1 and len(_eval_rows(tmp_path / "c")) == 4


# -- gcop curate --------------------------------------------------------------------------------------


class TeacherAndSolver:
    def __init__(self):
        self.solver = ScriptedSolver(gsm8k_golds())

    def __call__(self, prompt):
        if prompt.startswith("You write strategies"):
            return GOOD_GUIDE
        return self.solver(prompt)


@pytest.mark.parametrize("flag,cap,larger", [("--max-usd", "0.6", "50"), ("--max-total-tokens", "2000", "10000000")])
def test_gcop_curate_stops_saves_and_resumes_with_a_larger_budget(tmp_path, capsys, flag, cap, larger):
    from gcop_env.cli.train import curate_cli

    with FakeLLMServer(TeacherAndSolver()) as server:
        def argv(out, *extra):
            return ["--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", "8",
                    "--teacher", _core_spec(server, "fake-teacher"), "--core", _core_spec(server),
                    "--k", "2", "--tau", "0.5", "--max-rounds", "0", "--teacher-draws", "1", "--workers", "2",
                    "--core-max-tokens", "64", "--teacher-max-tokens", "128", "--max-retries", "1",
                    "--no-preflight", "--out", str(out), *extra]

        out = tmp_path / "curated.jsonl"
        assert curate_cli(argv(out, flag, cap)) == EXIT_BUDGET
        captured = capsys.readouterr()
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert 0 < len(rows) < 8, captured.err
        assert "budget exhausted" in captured.err and "--no-preflight" in captured.err
        summary = json.loads(out.with_name("curated.summary.json").read_text())
        assert summary["budget_exhausted"] and summary["finished"] == len(rows)
        assert summary["budget"]["refused"] >= 1 and not summary["interrupted"]
        assert {u["stage"] for u in summary["unfinished"]} == {"budget"}
        if flag == "--max-usd":
            assert summary["budget"]["spent_usd"] <= float(cap)
            assert summary["spent_usd"] == pytest.approx(summary["budget"]["spent_usd"])
        else:
            assert summary["budget"]["spent_tokens"] <= int(cap)
        sent = server.count()

        assert curate_cli(argv(out, flag, larger)) == 0
        questions = {r["problem_id"]: r["question"] for r in rows}
        new_prompts = [server._last_user_text(r["body"]["messages"]) for r in server.requests[sent:]]
        assert not any(q in prompt for q in questions.values() for prompt in new_prompts)
        resumed = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(resumed) == 8

        # an unbudgeted run without the cache pays for every call once: as many as both budgeted runs
        paid_budgeted = server.count()
        plain = tmp_path / "plain.jsonl"
        assert curate_cli(argv(plain, "--cache", "off")) == 0
        assert server.count() - paid_budgeted == paid_budgeted
        plain_rows = [json.loads(line) for line in plain.read_text().splitlines()]
        key = lambda r: (r["problem_id"], r["accepted"], r["strategy"], r["q_hat"])  # noqa: E731
        assert sorted(map(key, resumed)) == sorted(map(key, plain_rows))


# -- gcop grpo ----------------------------------------------------------------------------------------


def test_gcop_grpo_stops_with_a_checkpoint_and_resumes_with_a_larger_budget(server, tmp_path, capsys, tiny_gsm8k_guide):
    pytest.importorskip("trl")
    from gcop_env.cli.train import grpo_cli

    guide = tiny_gsm8k_guide
    out = tmp_path / "grpo"
    # advisor: the guide's whole output is the advice, so every completion of the random tiny
    # guide costs one core call (2 per step)
    argv = ["--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", "4",
            "--guide", str(guide), "--output-dir", str(out), "--core", _core_spec(server), "--recipe", "advisor",
            "--num-generations", "2", "--per-device-train-batch-size", "2", "--max-completion-length", "16",
            "--max-steps", "4", "--save-steps", "100", "--use-cpu", "--no-preflight", "--eval-limit", "0",
            "--core-max-tokens", "64", "--report-to", "none"]
    assert grpo_cli(argv + ["--max-usd", "0.15"]) == EXIT_BUDGET
    err = capsys.readouterr().err
    assert "budget exhausted" in err and float(err.split("--max-usd ")[-1].split()[0]) >= 0.3
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert checkpoints, err
    stopped_at = int(checkpoints[-1].name.split("-")[1])
    assert 1 <= stopped_at < 4
    assert not (out / "summary.json").exists()  # no final model or summary from a partial run
    sent = server.count()
    assert 0 < sent <= 2 * stopped_at  # a refused completion sent nothing

    assert grpo_cli(argv + ["--max-usd", "10"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["metrics"]["budget"]["exhausted"] is False
    # only the steps after the checkpoint were scored: nothing before it was redone or paid again
    assert 0 < server.count() - sent <= 2 * (4 - stopped_at)
    print(f"grpo max_usd 0.15: stopped after step {stopped_at} with {sent} core calls; the re-run made "
          f"{server.count() - sent} calls for steps {stopped_at + 1}..4")
    assert summary["metrics"]["budget"]["calls"] == server.count() - sent


def test_gcop_eval_guided_api_guide_pays_from_the_same_budget(tmp_path):
    from gcop_env.evaluation.run import EvalConfig, run_eval

    solver = ScriptedSolver(gsm8k_golds())

    def guide_and_core(prompt):
        return GOOD_GUIDE if prompt.startswith("You are a strategist") else solver(prompt)

    with FakeLLMServer(guide_and_core) as server:
        config = EvalConfig(task="GSM8K", data_files=str(GSM8K_DIR), limit=10, core=_core_spec(server),
                            kind="guided", guide=_core_spec(server, "fake-teacher"), guide_max_tokens=128,
                            core_max_tokens=64, workers=2, guide_batch_size=2, out=str(tmp_path / "guided"))
        budget = Budget(max_usd=0.6)
        result = run_eval(config, progress=False, preflight=False, budget=budget)
        assert result.budget_exhausted and not (tmp_path / "guided" / "summary.json").exists()
        rows = _eval_rows(tmp_path / "guided")
        assert 0 < len(rows) < 10 and all(r["status"] == "pass" for r in rows)
        guide_calls = sum(1 for r in server.requests if r["body"]["model"] == "fake-teacher")
        assert guide_calls > 0  # the guide was paid for, from the same budget as the core
        assert budget.calls == server.count() and budget.spent_usd <= 0.6
        paid = sum(r["cost"]["guide"]["usd"] + r["cost"]["core"]["usd"] for r in rows)
        assert paid <= budget.spent_usd + 1e-12  # refused problems' paid calls are cached, not recorded

        result = run_eval(config, progress=False, preflight=False, budget=Budget(max_usd=10))
        assert not result.budget_exhausted and len(_eval_rows(tmp_path / "guided")) == 10
        assert result.metrics["accuracy"] == 1.0


def test_envs_given_one_budgeted_core_share_its_budget(server):
    shared = Budget(max_usd=0.2)
    core = make_core(_core_spec(server), budget=shared)
    envs = [GCoPEnv("GSM8K", core=core, split="test", data_files=str(GSM8K_DIR), limit=20, gamma=0.0, kappa=0.0,
                    max_tokens=64) for _ in range(2)]
    assert envs[0].budget is envs[1].budget is shared
    refused_at = None
    for index in range(10):
        env = envs[index % 2]
        env.reset(options={"index": index})
        info = env.step(GOOD_GUIDE)[4]
        if info.get("error_stage") == "budget":
            refused_at = index if refused_at is None else refused_at
        else:
            assert refused_at is None  # once one env ran the shared budget out, the other is refused too
    assert refused_at is not None and shared.calls == refused_at == server.count()
    assert shared.spent_usd <= 0.2
