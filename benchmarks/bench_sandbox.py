"""Validations per second of the sandbox backends on the KodCode sample, against a naive harness.

    python benchmarks/bench_sandbox.py [--data-files F] [--limit N] [--workers W] [--scaling 1,2,4]

Runs every mode on the same jobs (each row's reference solution; every fifth one broken so that
the verdicts are worth comparing) with the same number of parallel workers, checks that all
modes agree on every verdict, and prints three tables (Markdown). The modes take turns, a round
of ``--round`` jobs each, each round starting one mode further and each mode's round followed by
an untimed ``--settle`` pause, so that a shared machine's changing load weighs on all of them
alike and what one mode leaves running (the process backend's host processes ending) does not
land on the next (without the pause the default warm pool measured 8% below the identical
2-worker row that does not follow it). Ratios measured this way are what count; absolute rates
follow the load. The cold-container
mode runs alone after them: Docker removes a container in the background after the run, and
that work would otherwise be counted against whichever mode ran next.

1. throughput and latency (p50/p95 per validation) per mode, and the ratio to naive:

   * naive: one ``python -m pytest`` subprocess per validation in a temp dir, pass = exit code 0
     (what KodCode's own harness does; no isolation), with pytest's own plugins only (plugin
     autoload off, as in the sandbox, so that plugins installed in this environment do not slow
     the baseline down);
   * process: the process backend (a warm fork server with pytest imported and configured);
   * docker cold: a fresh locked-down container per validation;
   * docker warm: the warm pool of locked-down containers (the default);
   * docker warm, pytest runner: the same with ``runner="pytest"`` (every file under pytest's
     collection and runtest machinery; the default runs plain test files with the worker's
     plain runner).

2. the Docker warm pool at 1, 2 and 4 workers (``--scaling``);
3. where the time of one warm validation goes (the worker's per-phase profile, in ms), under each
   runner: fork, setup of the child, the session start (capture, monitor snapshot), collection
   (importing the tests and the candidate), assertion rewriting (pytest's, in the child; the
   plain runner's, with the parse, in the server), the tests, the monitor's end-of-run checks,
   the worker's cleanup, and result transport to the host; the child's own CPU and page faults;
   plus container churn (start + remove of one container).

The machine's load (``os.getloadavg``) is printed before and after: ratios measured in one run
are what count on a shared machine.
"""

from __future__ import annotations

import argparse
import ast
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gcop_env.sandbox.docker_backend import LABEL, DockerSandbox, docker_available
from gcop_env.sandbox.process_backend import ProcessSandbox
from gcop_env.validators.kodcode import load_kodcode

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodcode" / "kodcode_prefill_sample.jsonl"
PHASES = ("fork", "setup", "config", "collect", "rewrite", "tests", "monitor", "cleanup", "transport")


def broken(solution: str) -> str:
    tree = ast.parse(solution)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name != "__init__":
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


# pytest's own plugins only, as in the sandbox: third-party plugins that happen to be installed
# here (hypothesis, in the dev extras, adds about a second per run) are no part of KodCode's harness.
NAIVE_ENV = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}


def print_table(first: str, last: str, rows, base) -> None:
    """Rows as a Markdown table: rate, p50/p95 latency, ratio to ``base`` and verdicts equal to its."""
    print(f"| {first} | validations/s | p50 latency (ms) | p95 latency (ms) | vs naive | {last} |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        agree = sum(a == b for a, b in zip(row.verdicts, base.verdicts))
        print(f"| {row.name} | {row.rate:.1f} | {row.percentile(0.5) * 1000:.0f} | {row.percentile(0.95) * 1000:.0f} "
              f"| {row.rate / base.rate:.1f}x | {agree}/{len(base.verdicts)} |")


def naive(files: dict[str, str], timeout: float) -> bool:
    with tempfile.TemporaryDirectory() as work:
        for name, text in files.items():
            Path(work, name).write_text(text)
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_solution.py"],
                cwd=work, env=NAIVE_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0


class Row:
    """One mode's measurement, accumulated over the rounds: time, latencies and verdicts."""

    def __init__(self, name: str, run, workers: int):
        self.name, self.run, self.workers = name, run, workers
        self.seconds = 0.0
        self.latencies: list[float] = []
        self.verdicts: list[bool] = []

    def measure(self, jobs) -> None:
        def timed(job):
            started = time.perf_counter()
            verdict = self.run(job)
            return verdict, time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(self.workers) as pool:
            results = list(pool.map(timed, jobs))
        self.seconds += time.perf_counter() - started
        self.latencies += [t for _, t in results]
        self.verdicts += [v for v, _ in results]

    @property
    def rate(self) -> float:
        return len(self.verdicts) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _settle(client, count: int, limit: float = 120.0) -> None:
    """Wait until no more than ``count`` sandbox containers exist (Docker removes them in the background)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and len(client.containers.list(all=True, filters={"label": LABEL})) > count:
        time.sleep(0.5)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f} on {os.cpu_count()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-files", default=str(DEFAULT_DATA))
    parser.add_argument("--limit", type=int, default=None, help="use the first N problems")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scaling", default="1,2,4", help="worker counts for the warm-pool table ('' to skip)")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--skip-cold", action="store_true", help="skip the (slow) cold-container mode")
    parser.add_argument("--round", type=int, default=10, help="jobs per mode per turn")
    parser.add_argument("--settle", type=float, default=0.05, help="seconds of (untimed) pause after each mode's round")
    args = parser.parse_args(argv)

    problems = load_kodcode("all", args.data_files)[: args.limit]
    jobs = [
        {"solution.py": broken(p.solution) if i % 5 == 4 else p.solution, "test_solution.py": p.reference}
        for i, p in enumerate(problems)
    ]
    print(f"{len(jobs)} validations, {args.workers} in parallel; {load()}", file=sys.stderr)
    print(f"before: {load()}")

    def verdict(box):
        return lambda files: box.run_pytest(files, args.timeout).all_passed

    boxes = []
    rows = [Row("naive: python -m pytest per validation", lambda f: naive(f, args.timeout), args.workers)]
    process = ProcessSandbox(pool_size=args.workers)
    boxes.append(process)
    rows.append(Row("process backend (warm fork server)", verdict(process), args.workers))
    scaling: list[Row] = []
    cold_row = None
    ok, why = docker_available()
    if ok:
        if not args.skip_cold:
            cold = DockerSandbox(pool_size=args.workers, reuse=False)
            cold_row = Row("docker, cold container per validation", verdict(cold), args.workers)
        warm = DockerSandbox(pool_size=args.workers)
        boxes.append(warm)
        rows.append(Row("**docker, warm pool (default)**", verdict(warm), args.workers))
        warm_pytest = DockerSandbox(pool_size=args.workers, runner="pytest")
        boxes.append(warm_pytest)
        rows.append(Row("docker, warm pool, pytest runner", verdict(warm_pytest), args.workers))
        for workers in [int(w) for w in args.scaling.split(",") if w.strip()]:
            pool = DockerSandbox(pool_size=workers)
            boxes.append(pool)
            scaling.append(Row(f"docker warm, {workers} workers", verdict(pool), workers))
    else:
        print(f"  docker: skipped ({why})", file=sys.stderr)
    profiles: dict[str, list[dict[str, float]]] = {"auto": [], "pytest": []}
    churn: list[float] = []
    calibration = ""
    try:
        for box in boxes:
            box.warm()
        modes = rows + scaling
        for turn, start in enumerate(range(0, len(jobs), args.round)):
            # Each round starts with the next mode: what one mode leaves running (the process
            # backend's host processes finishing their exit, say) lands on every mode in turn.
            shift = turn % len(modes)
            for row in modes[shift:] + modes[:shift]:
                row.measure(jobs[start : start + args.round])
                time.sleep(args.settle)  # not timed: what the round left running ends before the next
            print(f"  {start + args.round}/{len(jobs)} done", file=sys.stderr)
        if cold_row is not None:
            # Alone, after the others: Docker finishes removing a container in the background, and
            # that work would land in whichever mode ran next.
            before = len(cold.client.containers.list(all=True, filters={"label": LABEL}))
            try:
                cold_row.measure(jobs)
            finally:
                cold.close()
            _settle(cold.client, before)
            rows.insert(2, cold_row)
            print("  cold containers done", file=sys.stderr)
        if ok:
            with DockerSandbox(pool_size=1) as box:  # one worker: the phases are not stretched by a neighbour
                box.warm()
                box.profile = True
                calibration = str(box.versions.get("plain_runner"))
                for job in jobs:
                    for runner in profiles:
                        box.runner = runner
                        outcome = box.run_pytest(job, args.timeout)
                        if outcome.profile:
                            profiles[runner].append(outcome.profile)
                for _ in range(5):
                    started = time.perf_counter()
                    box._start_worker().close()
                    churn.append(time.perf_counter() - started)
    finally:
        for box in boxes:
            box.close()
    print(f"after: {load()}\n")

    base = rows[0]
    print_table("mode", "verdicts agree with naive", rows, base)
    passes = sum(base.verdicts)
    print(f"\n{passes} pass / {len(base.verdicts) - passes} fail per mode.")
    if scaling:
        print()
        print_table("docker warm pool", "verdicts agree", scaling, base)
    if profiles["auto"]:
        count = len(profiles["auto"])
        print(f"\nWhere one warm validation's time goes (1 worker, mean of {count} runs per runner, ms; "
              f"container churn, start + remove: {statistics.fmean(churn) * 1000:.0f} ms):\n")
        print("| runner | " + " | ".join(PHASES) + " | child CPU user + system | child page faults |")
        print("|---|" + "---:|" * (len(PHASES) + 2))
        for runner, found in profiles.items():
            means = [statistics.fmean(p.get(phase, 0.0) for p in found) * 1000 for phase in PHASES]
            user, system, faults = (statistics.fmean(p.get(k, 0.0) for p in found) for k in ("cpu_user", "cpu_system", "page_faults"))
            name = "plain (default)" if runner == "auto" else runner
            print(f"| {name} | " + " | ".join(f"{m:.1f}" for m in means)
                  + f" | {user * 1000:.1f} + {system * 1000:.1f} | {faults:.0f} |")
        print(f"\n(collect: importing the tests and the candidate; rewrite: pytest's assertion rewriting in the child, or "
              f"the plain runner's parse + rewrite + compile in the server. Page faults: mostly copy-on-write of the fork "
              f"server's memory. Plain runner: {calibration}.)")
    agree_all = all(r.verdicts == base.verdicts for r in rows + scaling)
    print(f"\nAll modes agree on every verdict: {agree_all}.")
    return 0 if agree_all else 1


if __name__ == "__main__":
    sys.exit(main())
