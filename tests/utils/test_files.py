"""Atomic files and durable JSONL: only a last line without its newline is torn; any other bad line is
refused with its number; a failed write keeps the old file."""

from __future__ import annotations

import json
import os

import pytest

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


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    from gcop_env.utils.files import write_text_atomic

    path = tmp_path / "results.jsonl"
    write_text_atomic(path, "old\n")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new\n" * 1000)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]


def test_exclusive_use_refuses_a_second_holder_and_frees_on_exit(tmp_path):
    from gcop_env.utils.files import InUse, exclusive_use

    run_dir, out_file = tmp_path / "run", tmp_path / "out.jsonl"
    run_dir.mkdir()
    for target in (run_dir, out_file):
        with exclusive_use(target, "job"):
            with pytest.raises(InUse, match=f"{target} is in use by another job"):
                with exclusive_use(target, "job"):
                    pass
        with exclusive_use(target, "job"):  # released when the block ends
            pass
    assert out_file.is_file() and list(run_dir.iterdir()) == []  # no lock file left in a run dir


@pytest.mark.parametrize("text, written", [
    ("answer \ud800 ok", "answer \ufffd ok"),            # a lone high surrogate
    ("\udfff", "\ufffd"),                                # a lone low one
    ("smile \ud83d\ude00", "smile \U0001F600"),          # a pair as two code points: the character it encodes
    ("plain é ✓", "plain é ✓"),
])
def test_rows_with_surrogates_are_always_writable_and_read_back(tmp_path, text, written):
    # issue 24, item 9: a lone surrogate in a (paid) core reply crashed the records writer, and every resume
    # crashed the same way from the cache. Written records are valid UTF-8 the reader accepts.
    from gcop_env.utils.files import write_text_atomic

    path = tmp_path / "rows.jsonl"
    JsonlAppender(path).append({"core_output": text, "n": 1})
    assert read_jsonl_rows(path) == [{"core_output": written, "n": 1}]
    write_text_atomic(tmp_path / "summary.json", json.dumps({"name": text}, ensure_ascii=False))
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8")) == {"name": written}
