"""``gcop eval --max-turns 3`` and ``gcop report`` (issue 20): every turn recorded, the solve rate and the
cumulative cost after each turn in the summary, a Turns column and the turns figure in the report. The
guide is a scripted server that revises from the feedback; the core the FeedbackSolver."""

from __future__ import annotations

import json
import struct

import pytest
from fake_llm import status
from support import GSM8K_DIR, MT_FIRST, FeedbackSolver, reviser

from gcop_env.cli.eval import eval_cli
from gcop_env.cli.report import report_cli
from gcop_env.evaluation.config import EvalConfig
from gcop_env.evaluation.report import load_run

PRICES = {"fake-core": (2.0, 10.0), "fake-guide": (1.0, 2.0)}


@pytest.fixture
def world(fake_llm, priced_models):
    priced_models(PRICES)
    solver = FeedbackSolver()

    def respond(prompt: str) -> str:
        if prompt.startswith("You are a strategist"):  # the guide: a revision prompt holds the feedback
            return reviser(prompt) if "Feedback:" in prompt else MT_FIRST
        return solver(prompt)

    return fake_llm(respond)


def argv(server, out, *extra):
    return ["--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", "5",
            "--core", f"openai:fake-core@{server.openai_base_url}", "--out", str(out), "--no-progress",
            "--no-preflight", "--max-retries", "1", *extra]


def guided(server, out, *extra):
    return argv(server, out, "--guide", f"openai:fake-guide@{server.openai_base_url}", *extra)


def test_eval_max_turns_3_records_every_turn_and_the_per_turn_summary(world, tmp_path, capsys):
    out = tmp_path / "mt"
    assert eval_cli(guided(world, out, "--max-turns", "3")) == 0
    printed = capsys.readouterr().out
    assert "after each turn (cumulative per problem): turn 1: solved 0.000" in printed
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    for row in rows:
        assert row["n_turns"] == 2 and row["success"] and row["status"] == "pass"
        first, second = row["turns"]
        assert (first["turn"], first["status"], first["success"]) == (1, "fail", False)
        assert first["feedback"].startswith("The solver's final answer was") and second["feedback"] is None
        assert second["guide_output"] == row["guide_output"] and "avoid" in second["strategy"]
        for role in ("guide", "core", "judge"):  # the record's cost is every turn's, added up
            for key in ("calls", "input_tokens", "output_tokens"):
                assert row["cost"][role][key] == first["cost"][role][key] + second["cost"][role][key]
            assert row["cost"][role]["usd"] == pytest.approx(first["cost"][role]["usd"] + second["cost"][role]["usd"])
        assert row["cost"]["core"]["calls"] == 2 and row["cost"]["guide"]["calls"] == 2
    summary = json.loads((out / "summary.json").read_text())
    turns = summary["metrics"]["turns"]
    assert turns["max_turns"] == 3 and turns["solved_after_turn"] == [0.0, 1.0, 1.0]
    assert turns["episodes_ended_at_turn"] == [0, 5, 0] and turns["mean_turns"] == 2.0
    usd = [sum(t["cost"][r]["usd"] for t in row["turns"][:k] for r in ("guide", "core", "judge")) for row in rows
           for k in (1,)]
    assert turns["usd_after_turn"][0] == pytest.approx(sum(usd) / 5)
    total = summary["metrics"]["cost_per_problem"]["total"]["usd"]
    assert turns["usd_after_turn"][1] == pytest.approx(total) == turns["usd_after_turn"][2] > turns["usd_after_turn"][0]
    assert summary["condition"]["max_turns"] == 3 and summary["config"]["max_turns"] == 3
    assert summary["metrics"]["accuracy"] == 1.0

    # resuming a finished run makes no call and rewrites the same summary
    before = len(world.requests)
    assert eval_cli(guided(world, out, "--max-turns", "3")) == 0
    assert len(world.requests) == before
    assert json.loads((out / "summary.json").read_text()) == summary


def test_report_has_a_turns_column_and_the_accuracy_vs_turns_and_cost_figure(world, tmp_path, capsys):
    runs = {"core": argv(world, tmp_path / "core", "--core-only"),
            "one": guided(world, tmp_path / "one"),
            "three": guided(world, tmp_path / "three", "--max-turns", "3")}
    for args in runs.values():
        assert eval_cli(args) == 0
    out = tmp_path / "report"
    assert report_cli([str(tmp_path / name) for name in runs] + ["--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"turns:  {out / 'turns.png'}" in printed
    table = (out / "table.md").read_text()
    assert "| n | Turns |" in table
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in table.splitlines() if line.startswith(("| guided", "| core-only"))}
    assert cells["guided-3turns"][-1] == "3" and cells["guided"][-1] == "1" and cells["core-only"][-1] == "1"
    assert cells["guided-3turns"][4].startswith("100.0") and cells["guided"][4].startswith("0.0")
    data = (out / "turns.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", data[16:24])[0] > 600
    payload = json.loads((out / "report.json").read_text())
    rows = {r["condition"]: r for r in payload["tables"][0]["rows"]}
    assert rows["guided-3turns"]["max_turns"] == 3 and rows["guided-3turns"]["turns"]["solved_after_turn"][1] == 1.0

    from gcop_env.evaluation.multiturn import plot_turns
    from gcop_env.evaluation.report import build_tables

    fig = plot_turns(build_tables([load_run(tmp_path / name) for name in runs]))
    ax_turns, ax_cost = fig.axes
    lines = {c.get_label(): c.lines[0] for c in ax_turns.containers}
    assert list(lines["guided-3turns (3 turns)"].get_ydata()) == [0.0, 1.0, 1.0]
    assert len(lines["core-only (1 turn)"].get_ydata()) == 1
    cost_line = {c.get_label(): c.lines[0] for c in ax_cost.containers}["guided-3turns (3 turns)"]
    xs = list(cost_line.get_xdata())
    assert xs[0] < xs[1] == xs[2]  # the cost grows with the revision turn, then stops (all solved at turn 2)
    assert [cap.get_text() for cap in ax_cost.texts if cap.get_text().startswith("t")][-2:] == ["t1", "t2–3"]


def test_an_infra_failure_on_turn_2_makes_the_record_infra_and_a_rerun_finishes_it(world, tmp_path):
    out = tmp_path / "mt"
    # one worker: the episodes run one after another, 4 requests each (guide, core, guide, core), so
    # request 11 is the guide's turn 2 on the third problem
    world.faults.extend([None] * 10 + [status(500)])
    code = eval_cli(guided(world, out, "--max-turns", "3", "--limit", "5", "--workers", "1"))
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    infra = [r for r in rows if r["status"] == "infra"]
    assert code == 3 and len(infra) == 1 and infra[0]["success"] is None
    assert [t["status"] for t in infra[0]["turns"]] == ["fail", "infra"]  # turn 1 scored, then an outage
    assert all(r["status"] == "pass" for r in rows if r is not infra[0])
    assert eval_cli(guided(world, out, "--max-turns", "3")) == 0  # the re-run retries them
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["n_infra"] == 0 and summary["metrics"]["turns"]["solved_after_turn"][-1] == 1.0


def test_single_turn_runs_keep_their_identity_and_other_conditions_refuse_max_turns(world, tmp_path, capsys):
    config = EvalConfig(out=str(tmp_path / "x"))
    assert "max_turns" not in config.identity() and "max_turns" not in config.resolved()
    assert "core_history" not in config.identity()
    multi = EvalConfig(out=str(tmp_path / "x"), kind="guided", guide="openai:g@http://127.0.0.1:1/v1", max_turns=2)
    assert multi.identity()["max_turns"] == 2
    assert eval_cli(argv(world, tmp_path / "c", "--core-only", "--max-turns", "2")) == 2
    assert "only a guide (--guide) revises" in capsys.readouterr().err


def test_the_measured_example_of_the_docs_matches_its_scripted_world(tmp_path, monkeypatch, capsys):
    # benchmarks/multiturn_example.py prints docs/multi-turn.md's measured example: its per-turn solve
    # rates must be what its scripted core allows (a problem of depth d is solved on turn d + 1), turn 1
    # of the 3-turn run must cost what the 1-turn run costs, and its last turn what the whole run costs
    import importlib.util

    from support import REPO_ROOT

    monkeypatch.setenv("GCOP_PRICES", "{}")  # the script sets both; monkeypatch puts them back
    monkeypatch.setenv("GCOP_CACHE_DIR", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("multiturn_example", REPO_ROOT / "benchmarks" / "multiturn_example.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.run(["--problems", "12", "--out", str(tmp_path / "out"), "--data-files", str(GSM8K_DIR)])
    depths, turns = result["depths"], result["turns"]
    assert len(set(depths)) > 2  # the 12 problems span several depths
    expected = [sum(d is not None and d < t for d in depths) / 12 for t in (1, 2, 3)]
    assert turns["solved_after_turn"] == pytest.approx(expected)
    summaries = result["summaries"]
    one, three = summaries["guided, 1 turn"]["metrics"], summaries["guided, 3 turns"]["metrics"]
    assert one["accuracy"] == pytest.approx(expected[0]) and three["accuracy"] == pytest.approx(expected[2])
    assert turns["usd_after_turn"][0] == pytest.approx(one["cost_per_problem"]["total"]["usd"])
    assert turns["usd_after_turn"][2] == pytest.approx(three["cost_per_problem"]["total"]["usd"])
    assert turns["usd_after_turn"][0] < turns["usd_after_turn"][1] < turns["usd_after_turn"][2]
    assert (result["report"] / "turns.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "| after turn | solved (Wilson 95%)" in printed and "| guided-3turns |" in printed


def test_a_local_guide_runs_batches_of_episodes_with_every_turn_recorded(world, tmp_path, tiny_gsm8k_guide):
    # a local (hf:) guide generates each turn for a batch of episodes at once, unlike an API guide's job per episode
    out = tmp_path / "hf"
    assert eval_cli(argv(world, out, "--guide", f"hf:{tiny_gsm8k_guide}", "--guide-max-tokens", "12",
                         "--guide-batch-size", "3", "--max-turns", "2")) == 0
    rows = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in rows) == [f"gsm8k/test/{i}" for i in range(5)]
    for row in rows:
        assert row["n_turns"] == len(row["turns"]) and 1 <= row["n_turns"] <= 2
        assert row["cost"]["guide"]["calls"] == row["n_turns"] and row["cost"]["guide"]["usd"] == 0.0
        assert row["turns"][-1]["status"] == row["status"]
        assert all(t["status"] != "pass" for t in row["turns"][:-1])  # only a failed turn is followed by another
        assert (row["n_turns"] == 1) == (row["status"] == "pass")
    turns = json.loads((out / "summary.json").read_text())["metrics"]["turns"]
    assert turns["max_turns"] == 2 and turns["mean_turns"] == pytest.approx(sum(r["n_turns"] for r in rows) / 5)
