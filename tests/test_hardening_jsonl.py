"""Only a last line without its newline is torn; any other bad line is refused with its number."""

from __future__ import annotations

import json

import pytest
from support import GSM8K_DIR

from gcop_env.cli.train import curate_cli
from gcop_env.utils.files import JsonlAppender, JsonlError, read_jsonl_rows

ROW = json.dumps({"problem_id": "gsm8k/test/0", "accepted": True})


def test_torn_last_line_is_dropped_and_cut_on_repair(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(ROW + "\n" + ROW + "\n" + '{"problem_id": "gsm8k/te')
    assert len(read_jsonl_rows(path)) == 2
    assert path.read_text().endswith('"gsm8k/te')  # reading alone changes nothing
    assert len(read_jsonl_rows(path, repair=True)) == 2
    assert path.read_text() == ROW + "\n" + ROW + "\n"
    JsonlAppender(path).append({"problem_id": "x"})
    assert [r["problem_id"] for r in read_jsonl_rows(path)][-1] == "x"


def test_complete_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(ROW + "\n" + ROW)  # e.g. edited by hand; the row is whole
    assert len(read_jsonl_rows(path, repair=True)) == 2
    JsonlAppender(path).append({"problem_id": "x"})
    assert len(read_jsonl_rows(path)) == 3  # the appended row did not glue onto the last one


@pytest.mark.parametrize("bad, problem", [
    (b"{not json", "is not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"a": "caf\xe9"}', "is not valid UTF-8"),
])
@pytest.mark.parametrize("last", [True, False])
def test_a_complete_bad_line_is_refused_with_its_number(tmp_path, bad, problem, last):
    path = tmp_path / "rows.jsonl"
    lines = [ROW.encode(), b"", bad] + ([] if last else [ROW.encode()])
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(data)
    with pytest.raises(JsonlError) as info:
        read_jsonl_rows(path, repair=True)
    assert f"{path}: line 3 {problem}" in str(info.value) and info.value.line == 3
    assert path.read_bytes() == data  # never cut


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
