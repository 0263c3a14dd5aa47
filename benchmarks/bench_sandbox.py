"""Validations per second of the sandbox backends on the KodCode sample, against a naive harness.

    python benchmarks/bench_sandbox.py [--data-files F] [--limit N] [--workers W]

Runs every mode on the same jobs (each row's reference solution; every fifth one broken so that
the verdicts are worth comparing) with the same number of parallel workers, checks that all
modes agree on every verdict, and prints a table:

* naive: one ``python -m pytest`` subprocess per validation in a temp dir, pass = exit code 0
  (what KodCode's own harness does; no isolation);
* process: the process backend (a warm fork server with pytest imported);
* docker cold: a fresh locked-down container per validation;
* docker warm: the warm pool of locked-down containers (the default).
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gcop_env.sandbox.docker_backend import DockerSandbox, docker_available
from gcop_env.sandbox.process_backend import ProcessSandbox
from gcop_env.validators.kodcode import load_kodcode

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodcode" / "kodcode_prefill_sample.jsonl"


def broken(solution: str) -> str:
    tree = ast.parse(solution)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name != "__init__":
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


def naive(files: dict[str, str], timeout: float) -> bool:
    with tempfile.TemporaryDirectory() as work:
        for name, text in files.items():
            Path(work, name).write_text(text)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_solution.py"],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0


def measure(name: str, run, jobs, workers: int) -> tuple[str, float, list[bool]]:
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        verdicts = list(pool.map(run, jobs))
    seconds = time.perf_counter() - started
    print(f"  {name}: {len(jobs)} validations in {seconds:.1f}s", file=sys.stderr)
    return name, len(jobs) / seconds, verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-files", default=str(DEFAULT_DATA))
    parser.add_argument("--limit", type=int, default=None, help="use the first N problems")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)

    problems = load_kodcode("all", args.data_files)[: args.limit]
    jobs = [
        {"solution.py": broken(p.solution) if i % 5 == 4 else p.solution, "test_solution.py": p.reference}
        for i, p in enumerate(problems)
    ]
    print(f"{len(jobs)} validations, {args.workers} in parallel, on {os.cpu_count()} CPUs", file=sys.stderr)
    rows = [measure("naive: python -m pytest per validation", lambda f: naive(f, args.timeout), jobs, args.workers)]

    with ProcessSandbox(pool_size=args.workers) as box:
        box.warm()
        rows.append(measure("process backend (warm fork server)", lambda f: box.run_pytest(f, args.timeout).all_passed, jobs, args.workers))

    ok, why = docker_available()
    if ok:
        with DockerSandbox(pool_size=args.workers, reuse=False) as box:
            rows.append(measure("docker, cold container per validation", lambda f: box.run_pytest(f, args.timeout).all_passed, jobs, args.workers))
        with DockerSandbox(pool_size=args.workers) as box:
            box.warm()
            rows.append(measure("docker, warm pool (default)", lambda f: box.run_pytest(f, args.timeout).all_passed, jobs, args.workers))
    else:
        print(f"  docker: skipped ({why})", file=sys.stderr)

    baseline_rate, baseline = rows[0][1], rows[0][2]
    print(f"\n| mode | validations/s | vs naive | verdicts agree with naive |")
    print("|---|---:|---:|---|")
    for name, rate, verdicts in rows:
        agree = sum(a == b for a, b in zip(verdicts, baseline))
        print(f"| {name} | {rate:.1f} | {rate / baseline_rate:.1f}x | {agree}/{len(baseline)} |")
    passes = sum(baseline)
    print(f"\n{passes} pass / {len(baseline) - passes} fail per mode.")
    return 0 if all(v == baseline for _, _, v in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
