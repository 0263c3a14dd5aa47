"""Loading task rows from the hub or from local files, with errors that say what to do."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """A dataset could not be loaded, or one of its rows is malformed."""


def resolve_data_files(split: str, data_files: Any) -> Any:
    """Turn the ``data_files=`` argument into something ``datasets`` accepts for one split."""
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
    """Rows of one split: from ``data_files`` when given, else from the Hugging Face hub."""
    import datasets

    if data_files is not None:
        files = resolve_data_files(split, data_files)
        paths = [files] if isinstance(files, (str, os.PathLike)) else list(files)
        missing = [str(p) for p in paths if not Path(p).exists()]
        if missing:
            raise DataError(f"data file(s) not found: {missing}")
        suffix = Path(str(paths[0])).suffix.lstrip(".")
        builder = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}.get(suffix, "json")
        try:
            ds = datasets.load_dataset(builder, data_files=[str(p) for p in paths], split="train")
        except Exception as exc:  # noqa: BLE001 - re-raised with the file names
            raise DataError(f"could not read {paths}: {exc}") from exc
        return list(ds)
    try:
        ds = datasets.load_dataset(hub_id, config, split=split) if config else datasets.load_dataset(hub_id, split=split)
    except Exception as exc:  # noqa: BLE001 - offline machines land here
        raise DataError(
            f"could not load {hub_id!r} (config {config!r}, split {split!r}) from the Hugging Face hub: {exc}. "
            f"Offline? Pass local files with data_files=... (JSONL with the dataset's fields)."
        ) from exc
    return list(ds)
