"""Curation (gcop curate) against a fake teacher and core on loopback, over the real OpenAI SDK."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading

import pytest
from conftest import GSM8K_DIR, REPO_ROOT, ScriptedSolver, gsm8k_golds
from fake_llm import FakeLLMServer

from gcop_env.trainers.cli import curate_cli
from gcop_env.trainers.curate import (acceptance_statistics, hoeffding_delta, hoeffding_epsilon,
                                      state_guarantee)

K, TAU, ROUNDS = 4, 0.75, 2
GOOD = "<think>Track each quantity.</think><strategy>List every quantity, then combine them step by step.</strategy>"


class CurationWorld:
    """Teacher and core behind one fake server. Problem roles by index in the first six:

    0, 1 good at once; 2 good after one refinement; 3 hopeless (always HARMFUL);
    4 malformed first, then good; 5 PARTIAL (the core succeeds every other time: q̂ = 0.5 < τ).
    """

    def __init__(self, n: int = 6):
        golds = gsm8k_golds(20)
        self.questions = list(golds)[:n]
        self.solver = ScriptedSolver(golds)
        self.lock = threading.Lock()
        self.partial_calls = 0
        self.answered_teacher: list[str] = []
        self.hold_question: str | None = None  # core calls for this question block until released
        self.held = threading.Event()
        self.release = threading.Event()
        self.down_question: str | None = None  # core calls for this question fail (connection dropped)
        self.flaky_core = False  # guided core calls alternate right / wrong (a sampling core)
        self.core_calls = 0

    def role(self, prompt: str) -> int:
        return next(i for i, q in enumerate(self.questions) if q in prompt)

    def __call__(self, prompt: str) -> str:
        if prompt.startswith("You write strategies"):
            i, refine = self.role(prompt), "Your previous strategy:" in prompt
            reply = GOOD
            if i == 2 and not refine or i == 3:
                reply = "<strategy>HARMFUL: guess quickly.</strategy>"
            elif i == 4 and not refine:
                reply = "Here is my plan without tags."
            elif i == 5:
                reply = "<strategy>PARTIAL: estimate, then compute.</strategy>"
            with self.lock:
                self.answered_teacher.append(prompt)
            return reply
        question = self.questions[self.role(prompt)]
        if question == self.down_question:
            raise ConnectionError("core is down")
        if question == self.hold_question:
            self.held.set()
            self.release.wait(60)
        if self.flaky_core and "Suggested strategy:" in prompt:
            with self.lock:
                self.core_calls += 1
                right = self.core_calls % 2 == 0
            gold = self.solver._gold(prompt)
            return f"\\boxed{{{gold if right else int(float(gold)) + 3}}}"
        if "PARTIAL" in prompt:
            with self.lock:
                self.partial_calls += 1
                right = self.partial_calls % 2 == 0
            gold = self.solver._gold(prompt)
            answer = gold if right else str(int(float(gold)) + 7)
            return f"\\boxed{{{answer}}}"
        return self.solver(prompt)


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setenv("GCOP_PRICES", json.dumps({"fake-teacher": [3.0, 15.0], "fake-core": [0.8, 4.0]}))
    w = CurationWorld()
    with FakeLLMServer(w) as server:
        w.server = server
        yield w
        w.release.set()


def curate_argv(server, out, workers=3, limit=6, draws=1):
    # one teacher draw per problem unless a test is about Â_s: the call counts below follow it
    return ["--teacher-draws", str(draws), "--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", str(limit),
            "--teacher", f"openai:fake-teacher@{server.openai_base_url}",
            "--core", f"openai:fake-core@{server.openai_base_url}",
            "--k", str(K), "--tau", str(TAU), "--max-rounds", str(ROUNDS), "--out", str(out),
            "--workers", str(workers), "--max-retries", "2", "--retry-backoff-s", "0.01", "--timeout-s", "10",
            "--no-preflight"]  # the scripted world answers only curation prompts; test_check covers preflight


def rows_by_role(world, out):
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {world.role(r["question"]): r for r in rows}, rows


def test_curate_accepts_refines_and_rejects(world, tmp_path, capsys):
    out = tmp_path / "curated.jsonl"
    assert curate_cli(curate_argv(world.server, out)) == 0
    by_role, rows = rows_by_role(world, out)
    assert len(rows) == 6
    assert {i for i, r in by_role.items() if r["accepted"]} == {0, 1, 2, 4}
    for r in rows:
        assert r["trials"] == K and r["cost_usd"] > 0
        if r["accepted"]:
            assert r["q_hat"] >= TAU and "<strategy>" in r["guide_output"] and r["strategy"]
    assert by_role[0]["round"] == 0 and by_role[2]["round"] == 1 and by_role[4]["round"] == 1
    assert by_role[3]["q_hat"] == 0.0 and len(by_role[3]["rounds"]) == 1 + ROUNDS
    assert by_role[5]["q_hat"] == 0.5 and not by_role[5]["accepted"]
    assert by_role[4]["rounds"][0]["reason"].startswith("malformed")
    # the refinement prompt carries the core's failing answer and the checker's verdict
    refine = [p for p in world.answered_teacher if world.role(p) == 2 and "Your previous strategy:" in p]
    assert refine and "succeeded 0 times" in refine[0] and "\\boxed{" in refine[0] and '"gold"' in refine[0]
    # teacher: 1+1+2+3+2+3 requests (one fresh sample per round). Core: K per distinct well-formed
    # strategy (1+1+2+1+1+1): a malformed one costs no core call, a repeated one is scored from the cache.
    teacher = sum(1 for r in world.server.requests if r["body"]["model"] == "fake-teacher")
    core = sum(1 for r in world.server.requests if r["body"]["model"] == "fake-core")
    assert (teacher, core) == (12, 7 * K)
    summary = json.loads((tmp_path / "curated.summary.json").read_text())
    assert summary["accepted"] == 4 and summary["acceptance_rate"] == pytest.approx(4 / 6)
    assert 0 < summary["spent_usd"] < summary["cost_usd"]  # nominal cost counts the cached repeats too
    assert json.loads((tmp_path / "curated.config.json").read_text())["k"] == K
    printed = capsys.readouterr().out
    assert "accepted (rate 0.667)" in printed
    assert "vacuous by construction" in printed  # one draw: ε = sqrt(ln 20 / 2) > 1
    assert summary["accepted_from_draws"] == 2 and summary["accepted_after_refinement"] == 2

    # the same command again: nothing left to do, nothing paid
    before = len(world.server.requests)
    assert curate_cli(curate_argv(world.server, out)) == 0
    assert len(world.server.requests) == before
    again = json.loads((tmp_path / "curated.summary.json").read_text())
    assert again["skipped_finished"] == 6 and again["spent_usd"] == 0.0 and again["finished"] == 6


def test_infra_failure_leaves_problem_unfinished_and_rerun_retries_it(world, tmp_path):
    out = tmp_path / "curated.jsonl"
    world.down_question = world.questions[1]
    assert curate_cli(curate_argv(world.server, out, limit=3)) == 2  # unfinished: re-run needed
    by_role, _ = rows_by_role(world, out)
    assert set(by_role) == {0, 2}  # problem 1 is not recorded as a rejection
    summary = json.loads((tmp_path / "curated.summary.json").read_text())
    assert [u["problem_id"] for u in summary["unfinished"]] == ["gsm8k/test/1"]
    world.down_question = None
    before = len(world.server.requests)
    assert curate_cli(curate_argv(world.server, out, limit=3)) == 0
    new = world.server.requests[before:]
    assert new and all(world.role(world.server._last_user_text(r["body"]["messages"])) == 1 for r in new)
    # the teacher's strategy for problem 1 was cached before the core failed: not asked again
    assert all(r["body"]["model"] == "fake-core" for r in new)
    by_role, rows = rows_by_role(world, out)
    assert set(by_role) == {0, 1, 2} and by_role[1]["accepted"] and len(rows) == 3


def test_killed_curate_resumes_without_repeating_paid_calls(world, tmp_path):
    out = tmp_path / "curated.jsonl"
    argv = curate_argv(world.server, out, workers=1)
    world.hold_question = world.questions[3]  # problems 0-2 finish, then the run hangs inside problem 3
    code = "import sys; from gcop_env.trainers.cli import curate_cli; sys.exit(curate_cli(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=REPO_ROOT, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert world.held.wait(120), proc.stderr.read().decode() if proc.poll() is not None else "never reached"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    by_role, rows = rows_by_role(world, out)
    assert set(by_role) == {0, 1, 2}
    answered_before = set(world.answered_teacher)
    world.hold_question = None
    world.release.set()
    before = len(world.server.requests)
    assert curate_cli(argv) == 0
    new_prompts = [world.server._last_user_text(r["body"]["messages"]) for r in world.server.requests[before:]]
    assert new_prompts and not any(world.role(p) in (0, 1, 2) for p in new_prompts)  # finished: not paid again
    assert not answered_before & set(new_prompts)  # answered teacher calls came from the cache
    by_role, rows = rows_by_role(world, out)
    assert sorted(by_role) == list(range(6)) and len(rows) == 6
    assert {i for i, r in by_role.items() if r["accepted"]} == {0, 1, 2, 4}


def test_per_state_hoeffding_check():
    delta, eps = hoeffding_delta(k=8, eta=0.3), hoeffding_epsilon(draws=8, alpha=0.05)
    assert delta == pytest.approx(math.exp(-2 * 8 * 0.09)) and eps == pytest.approx(math.sqrt(math.log(20) / 16))
    six = state_guarantee(6, 8, k=8, eta=0.3, alpha=0.05)  # Â_s = 0.75, Â_s − ε = 0.317 ≥ δ = 0.237
    assert six.a_hat == 0.75 and six.holds and six.bad_share_bound == pytest.approx(delta / (0.75 - eps))
    five = state_guarantee(5, 8, k=8, eta=0.3, alpha=0.05)  # Â_s − ε = 0.192 < δ
    assert not five.holds
    assert not state_guarantee(1, 1, k=8, eta=0.3, alpha=0.05).holds  # one draw: ε > 1, never
    rows = [{"accepted": True, "accepted_from": "teacher_draw", "draws": 8, "accepted_draws": 6},
            {"accepted": True, "accepted_from": "refinement", "draws": 8, "accepted_draws": 0},
            {"accepted": False, "draws": 8, "accepted_draws": 5},
            {"accepted": True}]  # a row from before draws were recorded: counted, not checked
    stats = acceptance_statistics(rows, k=8, eta=0.3, alpha=0.05, draws=8)
    assert stats["acceptance_rate"] == 0.75 and stats["accepted_from_draws"] == 1
    assert stats["accepted_after_refinement"] == 2 and stats["states_checked"] == 3
    assert stats["states_guaranteed"] == 1 and stats["guaranteed_share"] == pytest.approx(1 / 3)
    assert stats["mean_draw_acceptance"] == pytest.approx(11 / 24) and stats["guarantee_attainable"]


def test_defaults_leave_the_guarantee_attainable():
    from gcop_env.trainers.config import CurateConfig

    cfg = CurateConfig()
    delta, eps = hoeffding_delta(cfg.k, cfg.eta), hoeffding_epsilon(cfg.teacher_draws, cfg.alpha)
    assert delta + eps <= 1.0  # a state whose draws all pass satisfies δ ≤ Â_s − ε


def test_curate_reports_draws_and_refinements_separately(world, tmp_path, capsys):
    out = tmp_path / "curated.jsonl"
    argv = curate_argv(world.server, out, draws=4)
    argv[argv.index("--k") + 1] = "8"
    assert curate_cli(argv) == 0
    by_role, rows = rows_by_role(world, out)
    assert {i for i, r in by_role.items() if r["accepted"]} == {0, 1, 2, 4}
    assert all(r["draws"] == 4 and len(r["teacher_draw_records"]) == 4 for r in rows)
    # 0, 1: every draw is good (Â_s = 1); 2, 4: no draw passes, accepted only after refinement
    assert [by_role[i]["accepted_draws"] for i in range(6)] == [4, 4, 0, 0, 0, 0]
    assert by_role[0]["accepted_from"] == "teacher_draw" and by_role[2]["accepted_from"] == "refinement"
    summary = json.loads((tmp_path / "curated.summary.json").read_text())
    assert (summary["accepted_from_draws"], summary["accepted_after_refinement"]) == (2, 2)
    # δ = e^{-1.44} = 0.237, ε = sqrt(ln 20 / 8) = 0.612: only Â_s = 1 satisfies δ ≤ Â_s − ε
    assert summary["states_checked"] == 6 and summary["states_guaranteed"] == 2
    assert summary["guaranteed_share"] == pytest.approx(1 / 3) and summary["guarantee_attainable"]
    printed = capsys.readouterr().out
    assert "holds for 2 of 6 states (33.3%)" in printed and "2 only after refinement" in printed
