"""`gcop score`: grade a predictions file the way the env would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from _sandbox_support import shared_data
from gcop_env.validators import gsm8k
from gcop_env.validators.score import partial_path
from support import GSM8K_DIR, KODCODE_SAMPLE, REPO_ROOT

from gcop_env.cli.score import score_cli


def test_score_kodcode_with_bad_rows(tmp_path, capsys):
    data = shared_data("kodcode", "kodcode_prefill_sample.jsonl")
    rows = [json.loads(line) for line in data.read_text().splitlines()[:3]]
    predictions = tmp_path / "predictions.jsonl"
    lines = [
        json.dumps({"task_id": rows[0]["question_id"], "completion": f"```python\n{rows[0]['solution']}\n```"}),
        json.dumps({"task_id": rows[1]["question_id"], "completion": "```python\ndef nothing():\n    pass\n```"}),
        "{not json",
        json.dumps({"task_id": "Prefill_no_such_id", "completion": "x = 1"}),
        json.dumps({"task_id": rows[2]["question_id"], "completion": 7}),
        json.dumps({"task_id": rows[2]["question_id"], "completion": rows[2]["solution"]}),
    ]
    predictions.write_text("\n".join(lines) + "\n")
    out = tmp_path / "results.jsonl"
    code = score_cli(
        ["--task", "kodcode", "--data-files", str(data), "--split", "all", "--predictions", str(predictions),
         "--sandbox", "process", "--out", str(out)]
    )
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 1  # some rows could not be graded
    assert [r["status"] for r in results] == ["pass", "error", "invalid", "invalid", "invalid", "pass"]
    assert results[0]["reward"] == 1.0 and results[1]["details"]["reason"] == "import"
    assert "unknown task_id 'Prefill_no_such_id'" in results[3]["error"]
    summary = json.loads(capsys.readouterr().out)
    assert summary["graded"] == 3 and summary["status_counts"]["invalid"] == 3
    assert abs(summary["mean_reward"] - 2 / 3) < 1e-9


def test_score_humaneval(tmp_path, capsys):
    from gcop_env.validators.humaneval import load_humaneval

    *problems, wrong = load_humaneval()[:4]
    predictions = tmp_path / "p.jsonl"
    predictions.write_text(
        "\n".join(json.dumps({"task_id": p.task_id, "completion": p.metadata["canonical_solution"]}) for p in problems)
        + "\n"
        + json.dumps({"task_id": wrong.task_id, "completion": "    return None\n"})
        + "\n"
    )
    out = tmp_path / "r.jsonl"
    assert score_cli(["--task", "humaneval", "--predictions", str(predictions), "--sandbox", "process", "--out", str(out)]) == 0
    statuses = [json.loads(line)["status"] for line in out.read_text().splitlines()]
    assert statuses == ["pass", "pass", "pass", "fail"]
    assert json.loads(capsys.readouterr().out)["pass_rate"] == 0.75


TEST_FILE = GSM8K_DIR / "test.jsonl"


def _golds(n):
    problems = gsm8k.load_gsm8k("test", data_files=str(GSM8K_DIR))[:n]
    return [(p.task_id, p.reference) for p in problems]


def _write(path, lines):
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def _gsm8k_argv(predictions, out=None):
    argv = ["--task", "gsm8k", "--data-files", str(GSM8K_DIR), "--predictions", str(predictions)]
    return argv + (["--out", str(out)] if out is not None else [])


def test_out_that_is_an_input_is_refused_and_the_input_kept(tmp_path, capsys):
    (tid, gold), = _golds(1)
    predictions = _write(tmp_path / "p.jsonl", [json.dumps({"task_id": tid, "completion": f"\\boxed{{{gold}}}"})])
    before = predictions.read_bytes()
    data_before = TEST_FILE.stat().st_mtime_ns
    assert score_cli(_gsm8k_argv(predictions, out=predictions)) == 2
    assert "would overwrite the input file" in capsys.readouterr().err
    assert predictions.read_bytes() == before
    link = tmp_path / "link.jsonl"  # the same file under another name
    os.symlink(predictions, link)
    assert score_cli(_gsm8k_argv(predictions, out=link)) == 2
    assert score_cli(_gsm8k_argv(predictions, out=TEST_FILE)) == 2  # the data file itself
    assert score_cli(["--task", "gsm8k", "--data-files", str(GSM8K_DIR), "--predictions", str(predictions),
                      "--out", str(TEST_FILE)]) == 2
    assert predictions.read_bytes() == before and TEST_FILE.stat().st_mtime_ns == data_before


def test_unwritable_out_fails_before_grading(tmp_path, capsys, monkeypatch):
    (tid, gold), = _golds(1)
    predictions = _write(tmp_path / "p.jsonl", [json.dumps({"task_id": tid, "completion": f"\\boxed{{{gold}}}"})])
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    graded = []
    monkeypatch.setattr(gsm8k.GSM8KValidator, "validate", lambda self, p, o: graded.append(o))
    assert score_cli(_gsm8k_argv(predictions, out=blocker / "results.jsonl")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not writable" in err and "Traceback" not in err
    assert graded == []  # nothing was graded before the check


def test_resume_grades_only_the_rows_not_yet_saved(tmp_path, monkeypatch, capsys):
    golds = _golds(6)
    predictions = _write(tmp_path / "p.jsonl",
                         [json.dumps({"task_id": t, "completion": f"so \\boxed{{{g}}}"}) for t, g in golds])
    out = tmp_path / "r.jsonl"
    real_validate = gsm8k.GSM8KValidator.validate
    calls = []

    def crashing_after_three(self, problem, output):
        if len(calls) == 3:
            raise SystemExit("killed")  # the process dies mid-run
        calls.append(problem.task_id)
        return real_validate(self, problem, output)

    monkeypatch.setattr(gsm8k.GSM8KValidator, "validate", crashing_after_three)
    try:
        score_cli(_gsm8k_argv(predictions, out))
    except SystemExit:
        pass
    assert not out.exists() and len(partial_path(out).read_text().splitlines()) == 1 + 3

    def counting(self, problem, output):
        calls.append(problem.task_id)
        return real_validate(self, problem, output)

    monkeypatch.setattr(gsm8k.GSM8KValidator, "validate", counting)
    calls.clear()
    assert score_cli(_gsm8k_argv(predictions, out)) == 0
    assert calls == [t for t, _ in golds[3:]]  # only the rows not in the partial file
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in results] == [t for t, _ in golds] and {r["status"] for r in results} == {"pass"}
    assert not partial_path(out).exists()
    assert "resuming: 3 rows" in capsys.readouterr().err


def test_partial_from_other_predictions_is_not_mixed_in(tmp_path, capsys):
    golds = _golds(2)
    predictions = _write(tmp_path / "p.jsonl", [json.dumps({"task_id": t, "completion": g}) for t, g in golds])
    out = tmp_path / "r.jsonl"
    partial_path(out).write_text(json.dumps({"gcop_score_resume": {"task": "gsm8k"}}) + "\n")
    assert score_cli(_gsm8k_argv(predictions, out)) == 2
    assert "holds results of a different run" in capsys.readouterr().err
    assert not out.exists()


def test_bad_bytes_duplicates_and_pass_rate_over_all_rows(tmp_path, capsys):
    golds = _golds(4)
    lines = [json.dumps({"task_id": golds[0][0], "completion": f"\\boxed{{{golds[0][1]}}}"}),
             b'{"task_id": "gsm8k/test/1", "completion": "caf\xe9 \xff"}',  # Latin-1 bytes, not UTF-8
             b"\xff\xfe garbage",
             json.dumps({"task_id": golds[2][0], "completion": "\ud800 \\boxed{1}"}),  # a lone surrogate
             json.dumps({"task_id": golds[0][0], "completion": "\\boxed{-1}"}),  # duplicate
             "{not json", json.dumps([1, 2]), json.dumps({"task_id": True, "completion": ""}),
             json.dumps({"task_id": "gsm8k/test/999999", "completion": "1"}),
             json.dumps({"task_id": golds[3][0], "completion": 3})]
    predictions = _write(tmp_path / "p.jsonl", lines)
    out = tmp_path / "r.jsonl"
    assert score_cli(_gsm8k_argv(predictions, out)) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["status"] for r in results] == ["pass", "invalid", "invalid", "invalid", "duplicate", "invalid",
                                              "invalid", "invalid", "invalid", "invalid"]
    assert [r["line"] for r in results] == list(range(1, 11))
    assert f"{predictions}: line 2: not valid UTF-8" in results[1]["error"]
    assert "lone surrogate" in results[3]["error"]
    assert "first at line 1" in results[4]["error"]
    assert summary["rows"] == 10 and summary["graded"] == 1 and summary["invalid"] == 8
    assert summary["duplicates"] == [{"line": 5, "task_id": golds[0][0]}]
    assert summary["pass_rate"] == 1 / 9 and summary["pass_rate_graded"] == 1.0
    assert "Traceback" not in captured.err


def test_score_stops_on_sigint_keeps_rows_and_resumes(tmp_path):
    rows = [json.loads(line) for line in KODCODE_SAMPLE.read_text().splitlines()[:8]]
    predictions = _write(tmp_path / "p.jsonl", [
        json.dumps({"task_id": r["question_id"], "completion": f"```python\nimport time\ntime.sleep(0.7)\n"
                                                              f"{r['solution']}\n```"}) for r in rows])
    out = tmp_path / "r.jsonl"
    out.write_text("results of an earlier run\n")  # replaced only when the new run completes
    argv = ["--task", "kodcode", "--data-files", str(KODCODE_SAMPLE), "--split", "all", "--sandbox", "process",
            "--workers", "1", "--predictions", str(predictions), "--out", str(out)]
    code = "import sys; from gcop_env.cli.score import score_cli; sys.exit(score_cli(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not partial_path(out).exists() or len(partial_path(out).read_text().splitlines()) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr.decode()
    assert "re-run the same command to resume" in stderr.decode()
    assert out.read_text() == "results of an earlier run\n"
    saved = [json.loads(line) for line in partial_path(out).read_text().splitlines()[1:]]
    assert 2 <= len(saved) < len(rows)
    assert score_cli(argv) == 0
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task_id"] for r in results] == [r["question_id"] for r in rows]
    assert all(r["status"] == "pass" for r in results)
    assert not partial_path(out).exists()


class _HeldRow0:
    """A GSM8K validator whose row 0 is held until ``needed`` other rows are graded (or a safety
    timeout passes): only a loop that starts the next row as each finishes gets there while row 0
    is out; one that waits for a batch of ``--workers`` rows would wait on row 0 first."""

    def __init__(self, held_task_id: str, needed: int, safety_s: float = 60.0):
        import threading
        self.inner = gsm8k.GSM8KValidator()
        self.held_task_id, self.needed, self.safety_s = held_task_id, needed, safety_s
        self.lock, self.release = threading.Lock(), threading.Event()
        self.others = self.in_flight = self.most_in_flight = 0
        self.released_by_others = False

    def validate(self, problem, completion):
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if problem.task_id == self.held_task_id:
                if not self.release.wait(self.safety_s):
                    self.release.set()
                return self.inner.validate(problem, completion)
            result = self.inner.validate(problem, completion)
            with self.lock:
                self.others += 1
                if self.others >= self.needed and not self.release.is_set():
                    self.released_by_others = True
                    self.release.set()
            return result
        finally:
            with self.lock:
                self.in_flight -= 1

    def close(self):
        self.inner.close()


def test_score_keeps_its_workers_busy_past_a_slow_row(tmp_path):
    """gcop score's grading loop refills each worker as its row finishes: with 2 workers, row 0 is
    held until 6 other rows are graded, which only the other worker, refilled 6 times, can do."""
    from gcop_env.validators.score import grade_predictions, read_predictions

    golds = _golds(12)
    predictions = _write(tmp_path / "p.jsonl",
                         [json.dumps({"task_id": t, "completion": f"#### {g}"}) for t, g in golds])
    problems = {p.task_id: p for p in gsm8k.load_gsm8k("test", data_files=str(GSM8K_DIR))[:12]}
    validator = _HeldRow0(golds[0][0], needed=6)
    grading = grade_predictions(read_predictions(predictions), problems, validator, source=predictions,
                                task="gsm8k", split="test", workers=2)
    assert validator.released_by_others and validator.most_in_flight <= 2
    assert [r["status"] for r in grading.ordered()] == ["pass"] * 12
