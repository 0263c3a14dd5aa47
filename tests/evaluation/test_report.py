"""`gcop report`: Table 1 / Figure 1 / report.json from run dirs written by hand to the eval contract."""

import errno
import json
import math
import os
import pathlib
import struct

import pytest

from gcop_env.cli import main as gcop_main
from gcop_env.evaluation.report import ReportError, build_tables, load_run, plot_reward_cost, write_report
from gcop_env.evaluation.stats import wilson_interval


def _role(calls, tokens_in, tokens_out, usd):
    return {"calls": calls, "cached_calls": 0, "input_tokens": tokens_in, "output_tokens": tokens_out, "usd": usd,
            "latency_s": 0.5}


def write_run(path, *, task="GSM8K", split="test", name, kind, core="openai:core-model@http://127.0.0.1:1/v1",
              guide=None, recipe=None, outcomes, core_usd=0.001, guide_usd=0.0, guide_priced=True,
              executability=None):
    """A run dir exactly as the eval contract describes it; ``outcomes``: task_id -> True/False/None (infra)."""
    path.mkdir(parents=True)
    records = []
    for task_id, success in outcomes.items():
        status = "infra" if success is None else ("pass" if success else "fail")
        records.append({
            "task": task, "split": split, "task_id": task_id, "condition": name, "sample": 0,
            "guide_output": "<think>t</think><strategy>s</strategy>" if guide else None,
            "strategy": "s" if guide else None, "structure_ok": True if guide else None,
            "core_output": None if success is None else "\\boxed{1}", "status": status,
            "reward": None if success is None else float(success), "success": success,
            "error": "HTTP 503 from core" if success is None else None,
            "cost": {"guide": _role(1 if guide else 0, 100 if guide else 0, 50 if guide else 0, guide_usd),
                     "core": _role(1, 200, 100, core_usd), "judge": _role(0, 0, 0, 0.0)}})
    (path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    scored = [s for s in outcomes.values() if s is not None]
    wins = sum(scored)
    guide_tokens = 150 if guide else 0
    metrics = {
        "n_problems": len(outcomes), "n_records": len(records), "n_scored": len(scored),
        "n_infra": len(outcomes) - len(scored),
        "accuracy": wins / len(scored) if scored else None,
        "accuracy_ci95": list(wilson_interval(wins, len(scored))) if scored else None,
        "executability": executability, "structure_ok_rate": 1.0 if guide else None,
        "cost_per_problem": {"guide": {"tokens": guide_tokens, "usd": guide_usd},
                             "core": {"tokens": 300, "usd": core_usd}, "judge": {"tokens": 0, "usd": 0.0},
                             "total": {"tokens": guide_tokens + 300, "usd": guide_usd + core_usd}},
        "latency_per_problem_s": 1.0, "lam": 0.0, "net_utility": wins / len(scored) if scored else None,
        "guide_priced": guide_priced}
    summary = {"schema": 1,
               "condition": {"name": name, "kind": kind, "core": core, "guide": guide, "recipe": recipe,
                             "icl_k": 4 if kind == "icl" else None, "guide_samples": 1, "guide_temperature": 0.6,
                             "guide_top_p": 0.95},
               "task": task, "split": split, "data_files": None, "limit": len(outcomes), "config": {},
               "versions": {"gcop_env": "0.1.0", "python": "3.11"}, "metrics": metrics}
    (path / "summary.json").write_text(json.dumps(summary, indent=2))
    return path


def _outcomes(pattern, prefix="gsm8k/test/"):
    """``pattern``: a string of 1 (success), 0 (failure), x (infra), one per problem."""
    return {f"{prefix}{i}": {"1": True, "0": False, "x": None}[c] for i, c in enumerate(pattern)}




@pytest.fixture
def gsm8k_runs(tmp_path):
    core_only = "1" * 8 + "0" * 12                               # problems 0-7 right
    exectune = "1" * 7 + "0" + "1" * 9 + "0" * 3                 # loses problem 7, wins 8-16
    sft = "1" * 5 + "0" * 3 + "1" * 3 + "0" * 9                  # loses 5-7, wins 8-10
    runs = {
        "core": write_run(tmp_path / "core", name="core-only", kind="core-only", outcomes=_outcomes(core_only)),
        "icl": write_run(tmp_path / "icl", name="icl-4", kind="icl", outcomes=_outcomes(core_only), core_usd=0.003),
        "sft": write_run(tmp_path / "sft", name="guided-sft", kind="guided", guide="hf:runs/sft", recipe="SFT",
                         outcomes=_outcomes(sft), guide_usd=0.0, guide_priced=False, executability=0.4),
        "exectune": write_run(tmp_path / "exectune", name="guided-exectune", kind="guided", guide="hf:runs/grpo",
                              recipe="ExecTune", outcomes=_outcomes(exectune), guide_usd=0.0005, executability=0.8),
    }
    return runs


def _row(markdown, name):
    (line,) = [line for line in markdown.splitlines() if line.startswith(f"| {name} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_table_matches_the_records_with_mcnemar_p_values(gsm8k_runs, tmp_path):
    report = write_report(list(gsm8k_runs.values()), tmp_path / "report")
    markdown = report.table_path.read_text()
    assert "## GSM8K (test)" in markdown
    # Baselines block first, then guided generation.
    assert markdown.index("**Baselines**") < markdown.index("| core-only |") < markdown.index("| icl-4 |") \
        < markdown.index("**Guided generation**") < markdown.index("| guided-exectune |")

    lo, hi = wilson_interval(8, 20)
    core = _row(markdown, "core-only")
    assert core[1:5] == ["openai:core-model@http://127.0.0.1:1/v1", "—", "—", f"40.0 [{100 * lo:.1f}, {100 * hi:.1f}]"]
    assert core[6:] == ["$0.001", "300", "ref.", "20", "1"]  # the last column: guide turns (single-turn runs: 1)

    exectune = _row(markdown, "guided-exectune")
    lo, hi = wilson_interval(16, 20)
    assert exectune[2:6] == ["hf:runs/grpo", "ExecTune", f"80.0 [{100 * lo:.1f}, {100 * hi:.1f}]", "80.0"]
    assert exectune[6:8] == ["$0.0015", "450"]
    assert exectune[8] == f"{2 * (1 + 10) / 2**10:.3f}" == "0.021"    # 1 loss, 9 wins: exact two-sided binomial

    sft = _row(markdown, "guided-sft")
    assert sft[3] == "SFT" and sft[8] == "1.000"                      # 3 wins, 3 losses
    assert sft[6] == "$0.001†" and "† the guide's tokens are not priced" in markdown
    assert _row(markdown, "icl-4")[8] == "1.000" and _row(markdown, "icl-4")[6] == "$0.003"

    payload = json.loads(report.json_path.read_text())
    (table,) = payload["tables"]
    by_name = {row["condition"]: row for row in table["rows"]}
    test = by_name["guided-exectune"]["mcnemar_vs_core_only"]
    assert (test["both"], test["only_reference"], test["only_condition"], test["neither"]) == (7, 1, 9, 3)
    assert test["p_value"] == pytest.approx(22 / 1024)
    assert test["difference"] == pytest.approx(16 / 20 - 8 / 20)  # paired on all 20 problems
    assert test["difference_ci95"][0] < 0.4 < test["difference_ci95"][1]
    assert by_name["core-only"]["mcnemar_vs_core_only"] is None and by_name["core-only"]["paired_note"] == "reference"


def test_png_is_a_valid_image_with_one_point_per_condition(gsm8k_runs, tmp_path):
    report = write_report(list(gsm8k_runs.values()), tmp_path / "report")
    data = report.plot_path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 200
    import matplotlib.image
    assert matplotlib.image.imread(report.plot_path).shape[:2] == (height, width)

    tables = build_tables([load_run(p) for p in gsm8k_runs.values()])
    fig = plot_reward_cost(tables)
    (ax,) = fig.axes
    points = {}
    for container in ax.containers:
        line = container.lines[0]
        (x,), (y,) = line.get_xdata(), line.get_ydata()
        points[container.get_label()] = (x, y)
    assert points == {"core-only": (0.001, 0.4), "icl-4": (0.003, 0.4), "guided-sft": (0.001, 0.4),
                      "guided-exectune": (pytest.approx(0.0015), 0.8)}
    assert sorted(t.get_text() for t in ax.texts) == sorted(points)
    assert ax.get_xscale() == "log"


def _core_and_guided_axis(tmp_path, core_usd: float, guided_usd: float):
    """The reward-cost plot's axis for a core-only run (1100) and a guided one (1110) at these core costs."""
    core = write_run(tmp_path / "core", name="core-only", kind="core-only", outcomes=_outcomes("1100"), core_usd=core_usd)
    guided = write_run(tmp_path / "guided", name="guided", kind="guided", guide="hf:g", recipe="None",
                       outcomes=_outcomes("1110"), core_usd=guided_usd)
    (ax,) = plot_reward_cost(build_tables([load_run(core), load_run(guided)])).axes
    return ax


def test_zero_cost_runs_use_a_symlog_axis(tmp_path):
    ax = _core_and_guided_axis(tmp_path, 0.0, 0.002)
    assert ax.get_xscale() == "symlog" and "0 = local models" in ax.get_xlabel() and "$" not in ax.get_xlabel()
    assert [c.lines[0].get_xdata()[0] for c in ax.containers] == [0.0, 0.002]


def test_all_free_runs_plot_tokens_per_problem(tmp_path):
    ax = _core_and_guided_axis(tmp_path, 0.0, 0.0)
    assert ax.get_xscale() == "log" and "tokens per problem" in ax.get_xlabel()
    # the summaries' total tokens per problem: 300 core-only, 150 guide + 300 core guided
    assert [c.lines[0].get_xdata()[0] for c in ax.containers] == [300, 450]


def test_different_tasks_get_different_tables(gsm8k_runs, tmp_path):
    code = write_run(tmp_path / "kodcode", task="KodCode", name="core-only", kind="core-only",
                     outcomes=_outcomes("1010", prefix="kodcode/"))
    report = write_report([gsm8k_runs["core"], code, gsm8k_runs["exectune"]], tmp_path / "report")
    markdown = report.table_path.read_text()
    assert "## GSM8K (test)" in markdown and "## KodCode (test)" in markdown
    assert [t["task"] for t in json.loads(report.json_path.read_text())["tables"]] == ["GSM8K", "KodCode"]
    fig_axes = plot_reward_cost(report.tables).axes
    assert [len(ax.containers) for ax in fig_axes] == [2, 1]
    with pytest.raises(ReportError, match="it is a KodCode run, but --task GSM8K"):
        write_report([gsm8k_runs["core"], code], tmp_path / "other", task="GSM8K")


def test_infra_rows_are_left_out_and_said_so(tmp_path):
    core = write_run(tmp_path / "core", name="core-only", kind="core-only", outcomes=_outcomes("1100x"))
    guided = write_run(tmp_path / "guided", name="guided", kind="guided", guide="hf:g", recipe="SFT",
                       outcomes=_outcomes("1x110"))
    markdown = write_report([core, guided], tmp_path / "report").table_path.read_text()
    assert _row(markdown, "core-only")[9] == "4" and _row(markdown, "guided")[9] == "4"
    assert "‡ core-only: 1 problem(s) hit infrastructure errors" in markdown
    assert "guided: paired on the 3 problems scored in both runs." in markdown


def test_no_core_only_reference_is_said_not_invented(tmp_path):
    guided = write_run(tmp_path / "guided", name="guided", kind="guided", guide="hf:g", recipe="SFT",
                       outcomes=_outcomes("110"))
    markdown = write_report([guided], tmp_path / "report").table_path.read_text()
    assert _row(markdown, "guided")[8] == "—" and "no core-only run of core" in markdown


@pytest.mark.parametrize("damage,message", [
    (lambda d: (d / "records.jsonl").unlink(), "records.jsonl is missing"),
    (lambda d: (d / "summary.json").write_text("{not json"), "summary.json is not valid JSON"),
    (lambda d: (d / "records.jsonl").write_text((d / "records.jsonl").read_text()[:-40]),
     "records.jsonl line 4 is not valid JSON"),
    (lambda d: (d / "summary.json").write_text(
        (d / "summary.json").read_text().replace('"accuracy": 0.5', '"accuracy": 0.75')), "disagrees with records"),
    (lambda d: (d / "records.jsonl").write_text(
        (d / "records.jsonl").read_text().replace('"task": "GSM8K"', '"task": "KodCode"', 1)),
     "line 1 is a 'KodCode' record but summary.json says task 'GSM8K'"),
    (lambda d: (d / "summary.json").write_text(
        (d / "summary.json").read_text().replace('"schema": 1', '"schema": 7')), "schema 7"),
    # garbled input (issue 24, item 12): each was a traceback
    (lambda d: (d / "records.jsonl").write_bytes(b"\xff\xfe" + (d / "records.jsonl").read_bytes()),
     "records.jsonl line 1 is not valid UTF-8"),
    (lambda d: (d / "records.jsonl").write_text(
        (d / "records.jsonl").read_text().replace('"sample": 0', '"sample": "abc"', 1)),
     "line 1 has sample='abc'"),
    (lambda d: _edit_summary(d, lambda m: m["cost_per_problem"]["total"].update(usd="abc")),
     "cost_per_problem.total.usd is 'abc'"),
    (lambda d: (d / "summary.json").write_text(
        (d / "summary.json").read_text().replace('"usd": 0.001', '"usd": NaN')),
     "cost_per_problem.core.usd is nan"),
    (lambda d: _edit_summary(d, lambda m: m.update(accuracy_ci95=None)), "accuracy_ci95 is None"),
    (lambda d: _edit_summary(d, lambda m: m.update(n_infra="0")), "n_infra is '0'"),
    (lambda d: _edit_summary(d, lambda m: m.update(accuracy=-0.5)), "accuracy is -0.5"),
    (lambda d: (d / "summary.json").write_text("[]"), "not a JSON object"),
])
def test_bad_run_dir_is_one_clear_error_and_writes_nothing(tmp_path, capsys, damage, message):
    good = write_run(tmp_path / "good", name="core-only", kind="core-only", outcomes=_outcomes("1100"))
    bad = write_run(tmp_path / "bad", name="guided", kind="guided", guide="hf:g", recipe="SFT",
                    outcomes=_outcomes("1100"))
    damage(bad)
    with pytest.raises(ReportError, match=message.replace("(", "\\(").replace("[", "\\[")):
        write_report([good, bad], tmp_path / "out")
    assert gcop_main(["report", str(good), str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"gcop report: cannot report {bad}") and "\n" not in err
    assert not (tmp_path / "out" / "table.md").exists()


def _edit_summary(run_dir, change):
    summary = json.loads((run_dir / "summary.json").read_text())
    change(summary["metrics"])
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_out_naming_a_file_or_a_run_dir_that_is_a_file_is_one_line(gsm8k_runs, tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep me")
    assert gcop_main(["report", str(gsm8k_runs["core"]), "--out", str(a_file)]) == 2
    assert gcop_main(["report", str(a_file), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "is a file" in err[0] and "not a directory" in err[1]
    assert a_file.read_text() == "keep me"


def test_two_core_only_runs_of_one_core_are_told_apart(tmp_path):
    # Before: two rows "core-only | openai:core-model..." with nothing to say which run dir each is.
    first = write_run(tmp_path / "t0", name="core-only", kind="core-only", outcomes=_outcomes("1100"))
    second = write_run(tmp_path / "t7", name="core-only", kind="core-only", outcomes=_outcomes("1110"))
    report = write_report([first, second], tmp_path / "out")
    markdown = report.table_path.read_text()
    assert f"| core-only ({first}) |" in markdown and f"| core-only ({second}) |" in markdown
    labels = [r["label"] for r in json.loads(report.json_path.read_text())["tables"][0]["rows"]]
    assert sorted(labels) == sorted([f"core-only ({first})", f"core-only ({second})"])


def test_gcop_report_cli_prints_the_table_and_paths(gsm8k_runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert gcop_main(["report", *map(str, gsm8k_runs.values()), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| guided-exectune |" in printed and str(out / "reward_cost.png") in printed
    assert all((out / name).is_file() for name in ("table.md", "reward_cost.png", "report.json"))
    assert math.isclose(json.loads((out / "report.json").read_text())["tables"][0]["rows"][0]["accuracy"], 0.4)


@pytest.mark.parametrize("code, needle", [(errno.ENOSPC, "free some space"), (errno.EROFS, "read-only"),
                                          (errno.EACCES, "not writable by you")])
def test_a_full_or_read_only_disk_is_one_line_not_a_traceback(gsm8k_runs, tmp_path, capsys, monkeypatch, code,
                                                               needle):
    # Issue 24, item 12: a full or read-only disk under --out was a traceback (nothing lost, but a traceback).
    def refuse(self, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(self))

    monkeypatch.setattr(pathlib.Path, "write_text", refuse)
    assert gcop_main(["report", str(gsm8k_runs["core"]), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("gcop report: error: ") and needle in err, err
    assert os.strerror(code) in err and str(tmp_path / "r") in err


def test_a_network_error_is_not_dressed_as_a_disk_error(gsm8k_runs, tmp_path, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise ConnectionResetError(errno.ECONNRESET, "reset")

    monkeypatch.setattr(pathlib.Path, "write_text", refuse)
    with pytest.raises(ConnectionResetError):
        gcop_main(["report", str(gsm8k_runs["core"]), "--out", str(tmp_path / "r")])


# -- the figure and the table read right with close conditions ------------------------------------
def _close_runs(tmp_path, n=200):
    """Three conditions within 2 points of accuracy and 20% of cost of each other, and a baseline."""
    def pattern(wins):
        return _outcomes("1" * wins + "0" * (n - wins))
    return [
        write_run(tmp_path / "core", name="core-only", kind="core-only", outcomes=pattern(124), core_usd=0.0008,
                  guide_priced=False),
        write_run(tmp_path / "icl", name="icl-3", kind="icl", outcomes=pattern(140), core_usd=0.0011,
                  guide_priced=False),
        write_run(tmp_path / "sft", name="guided-sft", kind="guided", guide="hf:/root/.cache/gcop_env/models"
                  "?gguf_file=gemma-3-270m-q4_k_m.gguf", recipe="SFT", outcomes=pattern(144), core_usd=0.00105,
                  guide_priced=False),
        write_run(tmp_path / "exectune", name="guided-exectune", kind="guided", guide="hf:runs/grpo",
                  recipe="ExecTune", outcomes=pattern(142), core_usd=0.0012, guide_usd=0.00002),
    ]


def _label_boxes(fig, ax):
    """Each annotation's text box and the pixel position of the point it names."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = {}
    for text in ax.texts:
        out[text.get_text()] = (text.get_window_extent(renderer), ax.transData.transform(text.xy), text)
    return out


def test_close_conditions_get_labels_at_their_own_points_kept_apart(tmp_path):
    fig = plot_reward_cost(build_tables([load_run(p) for p in _close_runs(tmp_path)]))
    (ax,) = fig.axes
    boxes = _label_boxes(fig, ax)
    points = {c.get_label(): ax.transData.transform((c.lines[0].get_xdata()[0], c.lines[0].get_ydata()[0]))
              for c in ax.containers}
    assert set(boxes) == set(points)
    frame = ax.get_window_extent(fig.canvas.get_renderer())
    names = sorted(boxes)
    for i, name in enumerate(names):
        box, anchor, text = boxes[name]
        # each label is anchored at its own point (its leader line, when drawn, ends there)
        assert tuple(anchor) == pytest.approx(tuple(points[name]))
        assert text.get_color() == ax.containers[[c.get_label() for c in ax.containers].index(name)].lines[0].get_color()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        # no two labels overlap, and no label covers another condition's point
        for other in names[i + 1:]:
            assert not box.overlaps(boxes[other][0]), (name, other)
        for other, (px, py) in points.items():
            if other != name:
                assert not (box.x0 - 2 <= px <= box.x1 + 2 and box.y0 - 2 <= py <= box.y1 + 2), (name, other)
        # a label far from its point has a leader line; a label beside its point needs none
        distance = min(abs(box.x0 - anchor[0]), abs(box.x1 - anchor[0])) + max(0, box.y0 - anchor[1], anchor[1] - box.y1)
        if distance > 30:
            assert text.arrow_patch is not None, name


def test_the_accuracy_axis_fits_the_points_and_intervals(tmp_path):
    tables = build_tables([load_run(p) for p in _close_runs(tmp_path)])
    (ax,) = plot_reward_cost(tables).axes
    lows = [float(r.metrics["accuracy_ci95"][0]) for r in tables[0].rows]
    highs = [float(r.metrics["accuracy_ci95"][1]) for r in tables[0].rows]
    bottom, top = ax.get_ylim()
    assert bottom <= min(lows) and top >= max(highs)  # every interval is shown whole
    assert top - bottom < 0.5 * (max(highs) - min(lows)) + (max(highs) - min(lows))  # and little else
    assert bottom > 0.3 and top < 0.85


def test_dagger_money_and_model_names_in_the_table(tmp_path):
    report = write_report(_close_runs(tmp_path), tmp_path / "report")
    markdown = report.table_path.read_text()
    # core-only and ICL rows have no guide: nothing unpriced, no dagger
    assert _row(markdown, "core-only")[6] == "$0.0008" and _row(markdown, "icl-3")[6] == "$0.0011"
    sft = _row(markdown, "guided-sft")
    assert sft[2] == "hf:gemma-3-270m-q4_k_m" and sft[6] == "$0.00105†"  # the local guide: a short name, unpriced
    assert _row(markdown, "guided-exectune")[2] == "hf:runs/grpo" and _row(markdown, "guided-exectune")[6] == "$0.00122"
    assert "e-0" not in markdown and "/root/.cache" not in markdown
    payload = json.loads(report.json_path.read_text())
    by_name = {row["condition"]: row for row in payload["tables"][0]["rows"]}
    assert by_name["guided-sft"]["guide"] == "hf:/root/.cache/gcop_env/models?gguf_file=gemma-3-270m-q4_k_m.gguf"


@pytest.mark.parametrize("usd, text", [(0.0, "$0"), (2e-05, "$0.00002"), (2.34e-05, "$0.0000234"), (0.001, "$0.001"),
                                       (0.00105, "$0.00105"), (0.0099, "$0.0099"), (0.015, "$0.0150"), (1.5, "$1.5000")])
def test_money_is_written_in_plain_decimals(usd, text):
    from gcop_env.evaluation.report import _usd
    assert _usd(usd) == text


@pytest.mark.parametrize("spec, short", [
    ("hf:/root/.cache/gcop_env/models?gguf_file=gemma-3-270m-q4_k_m.gguf", "hf:gemma-3-270m-q4_k_m"),
    ("vllm:/models/qwen3-1.7b/", "vllm:qwen3-1.7b"), ("hf:./runs/sft", "hf:sft"), ("hf:Qwen/Qwen3-1.7B", "hf:Qwen/Qwen3-1.7B"),
    ("anthropic:claude-haiku-4-5", "anthropic:claude-haiku-4-5"), (None, "—"),
    ("openai:m@http://127.0.0.1:8000/v1", "openai:m@http://127.0.0.1:8000/v1")])
def test_short_model_names(spec, short):
    from gcop_env.evaluation.report import short_model_name
    assert short_model_name(spec) == short
