"""Curation (gcop curate) against a fake teacher and core on loopback, over the real OpenAI SDK."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from conftest import GSM8K_DIR, REPO_ROOT, ScriptedSolver, gsm8k_golds
from fake_llm import FakeLLMServer

from gcop_env.trainers.cli import curate_cli
from gcop_env.trainers.curate import acceptance_statistics

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


def curate_argv(server, out, workers=3, limit=6):
    return ["--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", str(limit),
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
    assert "Â = 0.667" in printed and "vacuous" in printed  # δ = e^{-0.08} ≈ 0.92 with K=4, η=0.1

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


def test_acceptance_statistics_hoeffding():
    stats = acceptance_statistics(accepted=80, finished=100, k=16, eta=0.3, alpha=0.05)
    assert stats["acceptance_rate"] == 0.8
    assert stats["epsilon"] == pytest.approx((__import__("math").log(20) / 200) ** 0.5)
    assert stats["delta"] == pytest.approx(__import__("math").exp(-2 * 16 * 0.09))
    assert not stats["guarantee_vacuous"] and stats["bad_acceptance_bound"] < 0.1
    assert acceptance_statistics(1, 10, k=2, eta=0.05, alpha=0.05)["guarantee_vacuous"]
