"""`gcop grpo` under `accelerate launch` with N CPU processes: what each process's async reward puts in flight.

Starts a loopback core (OpenAI Chat Completions, answering after ``--latency-s``) that counts the
requests inside it, builds the tiny test guide, and runs ``accelerate launch --multi_gpu
--num_processes N -m gcop_env.cli grpo --use-cpu`` twice with one response cache (SQLite,
shared by the processes). Without a GPU the N processes train with DDP over gloo on the CPU
(``accelerate launch --cpu`` would start one process only). Prints, measured in this run: steps, completions scored, core requests, the most
requests in flight at once (each process has its own bound, so at most N × ``--max-inflight``),
and how many requests the second, identical run made (the shared cache answers the rest).

    python benchmarks/bench_grpo_processes.py --processes 2 --max-inflight 3

CPU only: it checks the process structure (each process scores its own slice of the batch with its
own reward function, pool and core client, and all of them share the cache file), not GPU speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import GSM8K_DIR, ScriptedSolver, gsm8k_golds  # noqa: E402
from fake_llm import FakeLLMServer  # noqa: E402
from support import InFlightCounter  # noqa: E402
from tiny_guide import build_tiny_guide  # noqa: E402


def run_grpo(args: argparse.Namespace, server: FakeLLMServer, guide: Path, out: Path, cache_dir: Path) -> int:
    env = dict(os.environ, GCOP_CACHE_DIR=str(cache_dir), TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               GCOP_PRICES=json.dumps({"fake-core": [0.8, 4.0]}))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(args.processes),
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "gcop_env.cli", "grpo",
               "--task", "GSM8K", "--data-files", str(GSM8K_DIR), "--split", "test", "--limit", str(args.problems),
               "--core", f"openai:fake-core@{server.openai_base_url}", "--guide", str(guide),
               "--output-dir", str(out), "--recipe", "advisor", "--max-steps", str(args.steps),
               "--num-generations", "4", "--per-device-train-batch-size", str(args.batch),
               "--max-completion-length", "8", "--eval-limit", "0", "--use-cpu", "--no-preflight",
               "--reward-mode", "async", "--max-inflight", str(args.max_inflight), "--save-steps", "1000"]
    return subprocess.run(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL if args.quiet else None).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--max-inflight", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8, help="completions per process per step")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--latency-s", type=float, default=0.2)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-grpo-processes-") as tmp:
        tmp = Path(tmp)
        guide = build_tiny_guide(tmp / "guide", list(gsm8k_golds(args.problems)))
        core = InFlightCounter(ScriptedSolver(gsm8k_golds()), hold_s=args.latency_s)  # answers after the latency
        with FakeLLMServer(core) as server:
            runs = []
            for name in ("first", "second"):
                before = core.requests
                core.max_in_flight = 0
                started = time.monotonic()
                code = run_grpo(args, server, guide, tmp / name, tmp / "cache")
                wall = time.monotonic() - started
                if code != 0:
                    raise SystemExit(f"{name} run failed with exit status {code}")
                summary = json.loads((tmp / name / "summary.json").read_text())
                runs.append((name, summary, core.requests - before, core.max_in_flight, wall))
        with sqlite3.connect(tmp / "cache" / "responses.sqlite") as conn:
            cached = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    print(f"accelerate launch --multi_gpu --num_processes {args.processes} (CPU processes, gloo), "
          f"--max-inflight {args.max_inflight} "
          f"(bound on requests in flight: {args.processes * args.max_inflight}), core latency {args.latency_s}s")
    for name, summary, requests, peak, wall in runs:
        m = summary["metrics"]
        print(f"  {name} run: {summary['steps']} steps, {m['completions']} completions scored (all processes, "
              f"summary.json), {requests} core requests, at most {peak} in flight, "
              f"{m['infra_errors']} infra errors, {wall:.1f}s wall (incl. start-up)")
    print(f"  cache file shared by the processes: {cached} responses")


if __name__ == "__main__":
    main()
