"""Plumbing the three commands share: cores from a config, durable JSONL, the device, summaries."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Iterable

from gcop_env.cores import Core, RetryPolicy, make_core
from gcop_env.files import write_text_atomic

from gcop_env.trainers.config import CoreCallOptions
from gcop_env.validators.data import JsonlError, parse_jsonl_line  # noqa: F401 - JsonlError re-exported


def core_from_options(spec: str | Core, options: CoreCallOptions, budget: Any = None) -> Core:
    """A managed core (retries, pricing, cache) built from a command's API options, paying from
    ``budget`` (a :class:`gcop_env.budget.Budget` shared by the run's cores) when one is given."""
    cache: Any = None
    if options.cache:
        cache = False if options.cache.lower() in ("off", "none", "false", "0") else options.cache
    retry = RetryPolicy(max_attempts=options.max_retries, initial_backoff_s=options.retry_backoff_s,
                        max_backoff_s=max(options.retry_backoff_s, 60.0))
    return make_core(spec, cache=cache, retry=retry, timeout_s=options.timeout_s, budget=budget)


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
    """Rows of a JSONL file written by :class:`JsonlAppender`.

    Only a last line without its newline can be torn (the writer was killed mid-line): it is
    dropped when it does not parse, and cut off the file when ``repair`` is set (a last line that
    does parse is kept, and ``repair`` adds its newline). Any other bad line, the last complete
    one included, is a :class:`JsonlError` naming the file and the line: it is never cut.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    *complete, tail = data.split(b"\n")  # tail: the bytes after the last newline
    rows: list[dict] = []
    for number, raw in enumerate(complete, start=1):
        row = parse_jsonl_line(raw, path, number)
        if row is not None:
            rows.append(row)
    if tail:
        try:
            row = parse_jsonl_line(tail, path, len(complete) + 1)
        except JsonlError:
            row = None
        if row is not None:
            rows.append(row)
            if repair:
                with open(path, "ab") as fh:
                    fh.write(b"\n")
        elif repair:  # torn (or blank): cut, so the next appended row starts a clean line
            with open(path, "r+b") as fh:
                fh.truncate(len(data) - len(tail))
    return rows


def resolve_device(use_cpu: bool | None, bf16: bool | None) -> tuple[bool, bool]:
    """(use_cpu, bf16) with the unset ones decided by the hardware."""
    import torch

    has_gpu = torch.cuda.is_available()
    cpu = (not has_gpu) if use_cpu is None else use_cpu
    bf = (not cpu and torch.cuda.is_bf16_supported()) if bf16 is None else bf16
    return cpu, bf


def write_json(path: str | Path, payload: dict) -> Path:
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def stop_callback(stop: Any) -> Any:
    """A ``transformers`` callback that ends training after the current step once ``stop`` is set,
    saving a checkpoint first, so a Ctrl-C'd run resumes from where it stopped."""
    from transformers import TrainerCallback

    class StopOnRequest(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if stop.requested:
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopOnRequest()
