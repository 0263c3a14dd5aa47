"""Loading task rows from the hub or from local files, with errors that say what to do.

Local files are read directly, never through the ``datasets`` cache: that cache is keyed on a
file's path, size and modification time, so a file edited in place (same size, same mtime)
would come back stale. JSONL (also ``.jsonl.gz``/``.ndjson``), JSON (an array of objects, or
JSON lines), Parquet and CSV are read here; every error names the file and the line (or row).
A row must be a JSON object of valid Unicode text: bytes that are not UTF-8 or a lone surrogate
(``"\\ud800"`` in the JSON) are refused with the file and line, never sent on to a core.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from pathlib import Path
from typing import Any

from gcop_env.utils.files import DataError, JsonlError, _is_unicode, parse_jsonl_line  # noqa: F401 - part of this API


def read_data_file(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """``(where, row)`` for every row of a local data file; ``where`` is ``file:line`` (or ``file row N``)."""
    path = Path(path)
    name = path.name.lower()
    try:
        data = gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise DataError(f"could not read {path}: {exc}") from exc
    stem = name[:-3] if name.endswith(".gz") else name
    if stem.endswith((".jsonl", ".ndjson")):
        return _jsonl_rows(data, path)
    if stem.endswith(".json"):
        stripped = data.lstrip()
        if stripped.startswith(b"["):
            try:
                items = json.loads(data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise DataError(f"{path}: not a valid JSON array ({exc}); use JSON lines to find the bad row") from None
            if not all(isinstance(item, dict) for item in items):
                raise DataError(f"{path}: a JSON array of objects is expected")
            bad = next((i for i, item in enumerate(items) if not _is_unicode(item)), None)
            if bad is not None:
                raise DataError(f"{path} row {bad}: holds a lone surrogate, not valid Unicode text")
            return [(f"{path} row {i}", item) for i, item in enumerate(items)]
        return _jsonl_rows(data, path)
    if stem.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - pyarrow's errors do not name the file
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None
        return [(f"{path} row {i}", row) for i, row in enumerate(table.to_pylist())]
    if stem.endswith(".csv"):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[:exc.start].count(b"\n") + 1
            raise DataError(f"{path}: line {line} is not valid UTF-8 (byte {exc.start}); fix or remove that line") from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        return [(f"{path}:{reader.line_num}", dict(row)) for row in reader]
    raise DataError(f"{path}: unknown data file type; use .jsonl, .jsonl.gz, .json, .parquet or .csv")


def _jsonl_rows(data: bytes, path: Path) -> list[tuple[str, dict]]:
    rows = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        row = parse_jsonl_line(raw, path, number)
        if row is not None:
            rows.append((f"{path}:{number}", row))
    return rows


def resolve_data_files(split: str, data_files: Any) -> Any:
    """Turn the ``data_files=`` argument into a file (or files) for one split."""
    if isinstance(data_files, dict):
        if split not in data_files:
            raise DataError(f"data_files has no entry for split {split!r} (has: {sorted(data_files)})")
        return data_files[split]
    if isinstance(data_files, (str, os.PathLike)) and Path(data_files).is_dir():
        directory = Path(data_files)
        for name in (f"{split}.jsonl", f"{split}.json", f"{split}.parquet"):
            if (directory / name).exists():
                return str(directory / name)
        raise DataError(f"no {split}.jsonl / {split}.json / {split}.parquet in {directory}")
    return data_files


def load_rows(hub_id: str, config: str | None, split: str, data_files: Any) -> list[dict]:
    """Rows of one split: from ``data_files`` when given (read directly), else from the Hugging Face hub."""
    if data_files is not None:
        files = resolve_data_files(split, data_files)
        paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        missing = [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise DataError(f"data file(s) not found: {missing}")
        return [row for path in paths for _, row in read_data_file(path)]
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, config, split=split) if config else datasets.load_dataset(hub_id, split=split)
    except Exception as exc:  # noqa: BLE001 - offline machines land here
        raise DataError(
            f"could not load {hub_id!r} (config {config!r}, split {split!r}) from the Hugging Face hub: {exc}. "
            f"Offline? Pass local files with data_files=... (JSONL with the dataset's fields)."
        ) from exc
    return list(ds)
