"""Plumbing the three commands share: cores from a config, durable JSONL, the device, summaries."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterable

from gcop_env.cores import Core, RetryPolicy, make_core

from gcop_env.trainers.config import CoreCallOptions


def core_from_options(spec: str | Core, options: CoreCallOptions) -> Core:
    """A managed core (retries, pricing, cache) built from a command's API options."""
    cache: Any = None
    if options.cache:
        cache = False if options.cache.lower() in ("off", "none", "false", "0") else options.cache
    retry = RetryPolicy(max_attempts=options.max_retries, initial_backoff_s=options.retry_backoff_s,
                        max_backoff_s=max(options.retry_backoff_s, 60.0))
    return make_core(spec, cache=cache, retry=retry, timeout_s=options.timeout_s)


class JsonlAppender:
    """Appends one JSON object per line and fsyncs it, so a killed run loses no finished row."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, row: dict) -> None:
        line = json.dumps(row, ensure_ascii=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def read_jsonl_rows(path: str | Path, repair: bool = False) -> list[dict]:
    """Rows of a JSONL file. A torn last line (the writer was killed mid-line) is dropped, and
    cut off the file when ``repair`` is set; a bad line elsewhere is an error."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    rows: list[dict] = []
    offset = 0
    for raw in data.splitlines(keepends=True):
        text = raw.decode("utf-8", errors="replace").strip()
        complete = raw.endswith(b"\n")
        if text:
            try:
                rows.append(json.loads(text))
            except ValueError:
                if complete and offset + len(raw) < len(data):
                    raise ValueError(f"{path}: line {len(rows) + 1} is not valid JSON; fix or remove it") from None
                if repair:
                    with open(path, "r+b") as fh:
                        fh.truncate(offset)
                break
        offset += len(raw)
    return rows


def resolve_device(use_cpu: bool | None, bf16: bool | None) -> tuple[bool, bool]:
    """(use_cpu, bf16) with the unset ones decided by the hardware."""
    import torch

    has_gpu = torch.cuda.is_available()
    cpu = (not has_gpu) if use_cpu is None else use_cpu
    bf = (not cpu and torch.cuda.is_bf16_supported()) if bf16 is None else bf16
    return cpu, bf


def write_json(path: str | Path, payload: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    return path


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None
