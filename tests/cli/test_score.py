"""`gcop score`: grade a predictions file the way the env would."""

from __future__ import annotations

import json

from _sandbox_support import shared_data
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
