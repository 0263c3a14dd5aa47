"""Local data files: read directly (never a stale cache), every error naming the file and the line."""

from __future__ import annotations

import json
import os

import pytest
from gcop_env.validators.data import DataError, load_rows
from gcop_env.validators.gsm8k import load_gsm8k

# -- local data files: read directly, errors name the file and line ---------------------------------
GSM_ROW = {"question": "Tom has 3 apples and buys 4 more. How many?", "answer": "3 + 4 = 7\n#### 7"}


def test_a_file_edited_in_place_with_same_size_and_mtime_is_reread(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(GSM_ROW) + "\n")
    stat = path.stat()
    assert load_gsm8k("test", data_files=str(path))[0].reference == "7"
    path.write_text(json.dumps({**GSM_ROW, "answer": "3 + 5 = 8\n#### 8"}) + "\n")  # same length
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert load_gsm8k("test", data_files=str(path))[0].reference == "8"


@pytest.mark.parametrize("content, needle", [
    (json.dumps(GSM_ROW).encode() + b"\n" + b'{"question": "caf\xe9", "answer": "#### 1"}\n', ": line 2 is not valid UTF-8"),
    (json.dumps(GSM_ROW).encode() + b"\n\n{oops\n", ": line 3 is not valid JSON"),
    (b'{"question": "\\ud800 hi", "answer": "#### 1"}\n', ": line 1 holds a lone surrogate"),
    (b"[1, 2]\n", ": line 1 must be a JSON object"),
])
def test_bad_jsonl_data_names_file_and_line(tmp_path, content, needle):
    path = tmp_path / "test.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        load_gsm8k("test", data_files=str(path))
    assert f"{path}{needle}" in str(info.value)


def test_other_local_formats_are_read_directly(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [GSM_ROW, {**GSM_ROW, "answer": "#### -3/4"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "b.json").write_text("\n".join(json.dumps(r) for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    (tmp_path / "d.csv").write_text('question,answer\n"Tom, 3 apples?","#### 7"\n')
    for name in ("a.json", "b.json", "c.parquet"):
        assert [p.reference for p in load_gsm8k("test", data_files=str(tmp_path / name))] == ["7", "-0.75"], name
    assert load_gsm8k("test", data_files=str(tmp_path / "d.csv"))[0].question == "Tom, 3 apples?"
    (tmp_path / "e.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="e.parquet: not a readable Parquet file"):
        load_rows("x", None, "test", str(tmp_path / "e.parquet"))
    (tmp_path / "f.csv").write_bytes(b"question,answer\nok,#### 1\n\xff,#### 2\n")
    with pytest.raises(DataError, match="f.csv: line 3 is not valid UTF-8"):
        load_rows("x", None, "test", str(tmp_path / "f.csv"))
