"""Curation (gcop curate) against a fake teacher and core on loopback, over the real OpenAI SDK."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import pytest
from gcop_env.trainers.curate import acceptance_statistics, hoeffding_delta, hoeffding_epsilon, state_guarantee
from support import GSM8K_DIR, REPO_ROOT, ROUNDS, TAU, K, curate_argv

from gcop_env.cli.train import curate_cli


def rows_by_role(curation_world, out):
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {curation_world.role(r["question"]): r for r in rows}, rows


def test_curate_accepts_refines_and_rejects(curation_world, tmp_path, capsys):
    out = tmp_path / "curated.jsonl"
    assert curate_cli(curate_argv(curation_world.server, out)) == 0
    by_role, rows = rows_by_role(curation_world, out)
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
    refine = [p for p in curation_world.answered_teacher if curation_world.role(p) == 2 and "Your previous strategy:" in p]
    assert refine and "succeeded 0 times" in refine[0] and "\\boxed{" in refine[0] and '"gold"' in refine[0]
    # teacher: 1+1+2+3+2+3 requests (one fresh sample per round). Core: K per distinct well-formed
    # strategy (1+1+2+1+1+1): a malformed one costs no core call, a repeated one is scored from the cache.
    teacher = sum(1 for r in curation_world.server.requests if r["body"]["model"] == "fake-teacher")
    core = sum(1 for r in curation_world.server.requests if r["body"]["model"] == "fake-core")
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
    before = len(curation_world.server.requests)
    assert curate_cli(curate_argv(curation_world.server, out)) == 0
    assert len(curation_world.server.requests) == before
    again = json.loads((tmp_path / "curated.summary.json").read_text())
    assert again["skipped_finished"] == 6 and again["spent_usd"] == 0.0 and again["finished"] == 6


def test_infra_failure_leaves_problem_unfinished_and_rerun_retries_it(curation_world, tmp_path):
    out = tmp_path / "curated.jsonl"
    curation_world.down_question = curation_world.questions[1]
    assert curate_cli(curate_argv(curation_world.server, out, limit=3)) == 2  # unfinished: re-run needed
    by_role, _ = rows_by_role(curation_world, out)
    assert set(by_role) == {0, 2}  # problem 1 is not recorded as a rejection
    summary = json.loads((tmp_path / "curated.summary.json").read_text())
    assert [u["problem_id"] for u in summary["unfinished"]] == ["gsm8k/test/1"]
    curation_world.down_question = None
    before = len(curation_world.server.requests)
    assert curate_cli(curate_argv(curation_world.server, out, limit=3)) == 0
    new = curation_world.server.requests[before:]
    assert new and all(curation_world.role(curation_world.server._last_user_text(r["body"]["messages"])) == 1 for r in new)
    # the teacher's strategy for problem 1 was cached before the core failed: not asked again
    assert all(r["body"]["model"] == "fake-core" for r in new)
    by_role, rows = rows_by_role(curation_world, out)
    assert set(by_role) == {0, 1, 2} and by_role[1]["accepted"] and len(rows) == 3


def test_killed_curate_resumes_without_repeating_paid_calls(curation_world, tmp_path):
    out = tmp_path / "curated.jsonl"
    argv = curate_argv(curation_world.server, out, workers=1)
    curation_world.hold_question = curation_world.questions[3]  # problems 0-2 finish, then the run hangs inside problem 3
    code = "import sys; from gcop_env.cli.train import curate_cli; sys.exit(curate_cli(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=REPO_ROOT, env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert curation_world.held.wait(120), proc.stderr.read().decode() if proc.poll() is not None else "never reached"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    by_role, rows = rows_by_role(curation_world, out)
    assert set(by_role) == {0, 1, 2}
    answered_before = set(curation_world.answered_teacher)
    curation_world.hold_question = None
    curation_world.release.set()
    # The killed run's last requests may still be arriving (a loaded machine schedules the server's
    # threads late): count the resumed run's requests only once every old connection is done.
    assert curation_world.server.wait_idle(60)
    before = len(curation_world.server.requests)
    assert curate_cli(argv) == 0
    new_prompts = [curation_world.server._last_user_text(r["body"]["messages"]) for r in curation_world.server.requests[before:]]
    assert new_prompts and not any(curation_world.role(p) in (0, 1, 2) for p in new_prompts)  # finished: not paid again
    assert not answered_before & set(new_prompts)  # answered teacher calls came from the cache
    by_role, rows = rows_by_role(curation_world, out)
    assert sorted(by_role) == list(range(6)) and len(rows) == 6
    assert {i for i, r in by_role.items() if r["accepted"]} == {0, 1, 2, 4}


def test_a_second_curate_into_a_busy_output_gets_one_line_and_pays_nothing(curation_world, tmp_path, capsys):
    from gcop_env.utils.files import exclusive_use

    out = tmp_path / "curated.jsonl"
    with exclusive_use(out, "gcop curate"):  # as a run in progress holds it
        assert curate_cli(curate_argv(curation_world.server, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another gcop curate" in err[0]
    assert curation_world.server.count() == 0 and out.read_text() == ""
    assert curate_cli(curate_argv(curation_world.server, out)) == 0  # released: it runs


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


def test_curate_reports_draws_and_refinements_separately(curation_world, tmp_path, capsys):
    out = tmp_path / "curated.jsonl"
    argv = curate_argv(curation_world.server, out, draws=4)
    argv[argv.index("--k") + 1] = "8"
    assert curate_cli(argv) == 0
    by_role, rows = rows_by_role(curation_world, out)
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


def _gcop(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "gcop_env.cli", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, **kwargs)


def test_curate_checks_its_output_path_before_paying(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = _gcop("curate", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", "1",
                   "--teacher", "openai:t@http://127.0.0.1:9/v1", "--core", "openai:c@http://127.0.0.1:9/v1",
                   "--out", str(blocker / "curated.jsonl"))
    assert result.returncode == 2 and "is not writable" in result.stderr and "Traceback" not in result.stderr


ROW = json.dumps({"problem_id": "gsm8k/test/0", "accepted": True})


def test_curate_refuses_to_resume_over_a_bad_complete_last_line(tmp_path, capsys):
    out = tmp_path / "curated.jsonl"
    data = ROW + "\n" + '{"problem_id": "gsm8k/test/1", "accepted": tru\n'
    out.write_text(data)
    argv = ["--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", "2",
            "--teacher", "openai:t@http://127.0.0.1:9/v1", "--core", "openai:c@http://127.0.0.1:9/v1",
            "--out", str(out)]
    assert curate_cli(argv) == 2
    err = capsys.readouterr().err
    assert f"{out}: line 2 is not valid JSON" in err and "Traceback" not in err
    assert out.read_text() == data


def test_a_problems_teacher_draws_run_at_once(curation_world, tmp_path):
    """With one worker and M = 4 draws, problem 0's first teacher call is held until its three other
    draws have reached the teacher: only draws made at once get there (one after another, the
    second draw would wait for the first)."""
    import threading

    world = curation_world
    question = world.questions[0]
    lock, release, arrived, holding, woken = threading.Lock(), threading.Event(), [], [], []
    answer = world.__call__

    def respond(prompt: str) -> str:
        if prompt.startswith("You write strategies") and question in prompt:
            with lock:
                hold = not holding
                holding.append(1)
                if not hold:
                    arrived.append(prompt)
                    if len(arrived) == 3:
                        release.set()
            if hold:
                woken.append(release.wait(30))  # True: the other draws arrived while this one was out
        return answer(prompt)

    world.server.responder = respond
    out = tmp_path / "curated.jsonl"
    assert curate_cli(curate_argv(world.server, out, workers=1, limit=1, draws=4)) == 0
    assert woken == [True] and len(arrived) == 3
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["accepted"] and row["draws"] == 4 and [d["draw"] for d in row["teacher_draw_records"]] == [0, 1, 2, 3]
