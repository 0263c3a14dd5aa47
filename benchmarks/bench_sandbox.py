"""Validations per second of the sandbox backends on the KodCode sample, against the leanest naive harness.

    python benchmarks/bench_sandbox.py [--data-files F] [--limit N] [--workers W] [--scaling 1,2,4]

Runs every mode on the same jobs (each row's reference solution; every fifth one broken so that
the verdicts are worth comparing) with the same number of parallel workers, checks that all
modes agree on every verdict, and prints Markdown tables. The modes take turns, a round of
``--round`` jobs each, each round starting one mode further and each mode's round followed by an
untimed ``--settle`` pause, so that a shared machine's changing load weighs on all of them alike.
Ratios measured this way, in one run, are what count; absolute rates follow the load (printed
before and after). The cold-container mode runs alone after them (Docker removes a container in
the background, which would otherwise land on whichever mode ran next).

1. throughput and latency (p50/p95 per validation) per mode, and the ratio to naive:

   * naive: one ``python -m pytest -q -p no:cacheprovider`` subprocess per validation, with
     plugin autoload off (``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``) and ``PYTHONDONTWRITEBYTECODE=1``
     as in the sandbox, in a fresh directory on a memory file system (``/dev/shm`` where there is
     one): what KodCode's own harness does, at its leanest (no isolation; pass = exit code 0);
   * process backend: warm supervisor, trusted isolation (the default);
   * docker warm pool (the default): trusted isolation, plain runner where it can;
   * docker warm pool, in-process: every run in one process with the monitor (``isolation="in-process"``,
     how every run was before trusted isolation);
   * docker warm pool, ``runner="pytest"``;
   * docker cold: a fresh locked-down container per validation.

2. the Docker warm pool at 1, 2 and 4 workers (``--scaling``);
3. what one validation costs, in CPU (1 worker, the jobs in order): the container's own (its
   cgroup's counter), Docker's (the daemons and the container's shim), and this process's, per
   validation, under each isolation, against the naive harness's CPU per validation (its pytest
   processes', the same jobs in order): a cost ratio that a loaded machine bends less than rates;
4. what a call from the tests into the solution costs under trusted isolation (``--calls``
   calls in one test, against one call: the difference per call), with the in-process figure
   beside it;
5. where the time of one warm validation goes under trusted isolation (the judge's phases, its
   CPU, the candidate process's CPU and page faults, the transport), 1 worker.

The machine's load (``os.getloadavg``) is printed before and after.
"""

from __future__ import annotations

import argparse
import ast
import os
import resource
import shutil
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
PHASES = ("setup", "config", "collect", "rewrite", "tests", "cleanup", "transport")


def broken(solution: str) -> str:
    tree = ast.parse(solution)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name != "__init__":
            node.body = [ast.Return(ast.Constant(None))]
    return ast.unparse(tree)


# pytest's own plugins only, as in the sandbox: third-party plugins that happen to be installed
# here (hypothesis, in the dev extras, adds about a second per run) are no part of KodCode's harness.
NAIVE_ENV = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"}
NAIVE_BASE = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def naive(files: dict[str, str], timeout: float) -> bool:
    work = tempfile.mkdtemp(prefix="gcop-naive-", dir=NAIVE_BASE)
    try:
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
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_table(first: str, last: str, rows, base) -> None:
    """Rows as a Markdown table: rate, p50/p95 latency, ratio to ``base`` and verdicts equal to its."""
    print(f"| {first} | validations/s | p50 latency (ms) | p95 latency (ms) | vs naive | {last} |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        agree = sum(a == b for a, b in zip(row.verdicts, base.verdicts))
        print(f"| {row.name} | {row.rate:.1f} | {row.percentile(0.5) * 1000:.0f} | {row.percentile(0.95) * 1000:.0f} "
              f"| {row.rate / base.rate:.1f}x | {agree}/{len(base.verdicts)} |")


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


# ------------------------------------------------------------------------------ CPU per validation

_TICK = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _container_cpu(container) -> float:
    path = f"/sys/fs/cgroup/cpuacct/docker/{container.id}/cpuacct.usage"
    try:
        with open(path) as handle:
            return int(handle.read()) / 1e9
    except OSError:
        return container.stats(stream=False)["cpu_stats"]["cpu_usage"]["total_usage"] / 1e9


def cpu_cost(isolation: str, jobs, timeout: float) -> dict[str, float]:
    """ms of CPU per validation: the container's, Docker's daemons' and shim's, this process's."""
    with DockerSandbox(pool_size=1, isolation=isolation) as box:
        box.warm()
        box.run_pytest(jobs[0], timeout)
        worker = box._idle.get()
        box._idle.put(worker)
        init = int(worker.container.top(ps_args="-o pid")["Processes"][0][0])
        with open(f"/proc/{init}/stat") as handle:
            shim = int(handle.read().rsplit(")", 1)[1].split()[1])
        daemons = [int(p) for p in subprocess.run(["pgrep", "-x", "dockerd|containerd"], capture_output=True,
                                                   text=True).stdout.split()]

        def snapshot():
            return (_container_cpu(worker.container), _process_cpu(shim) + sum(map(_process_cpu, daemons)),
                    time.process_time())

        before = snapshot()
        for job in jobs:
            box.run_pytest(job, timeout)
        after = snapshot()
    n = len(jobs)
    container, docker, host = ((b - a) / n * 1000 for a, b in zip(before, after))
    return {"container": container, "docker": docker, "host": host, "total": container + docker + host}


def naive_cpu(jobs, timeout: float) -> float:
    """ms of CPU per validation of the naive harness: its pytest processes' (reaped children's) and
    this process's, the jobs one after another (the sandbox's CPU costs are per job, like this)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    mine = time.process_time()
    for job in jobs:
        naive(job, timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime) + time.process_time() - mine
    return spent / len(jobs) * 1000


# ------------------------------------------------------------------------------ crossing calls

CALLS_SOLUTION = "def add(a, b):\n    return a + b\n"
CALLS_TESTS = "from solution import add\n\ndef test_calls():\n    total = 0\n    for i in range({n}):\n        total = add(total, i)\n" \
              "    assert total == {total}\n"


def crossing_cost(kind: str, isolation: str, calls: int, repeats: int = 15) -> float:
    """µs per call from the tests into the solution (median of ``repeats``: many calls minus one call)."""
    box = DockerSandbox(pool_size=1, isolation=isolation) if kind == "docker" else ProcessSandbox(pool_size=1, isolation=isolation)
    try:
        box.warm()

        def seconds(n):
            files = {"solution.py": CALLS_SOLUTION, "test_solution.py": CALLS_TESTS.format(n=n, total=n * (n - 1) // 2)}
            outcome = box.run_pytest(files, 60)
            assert outcome.all_passed, outcome
            return outcome.duration_s

        seconds(calls)
        many = statistics.median(seconds(calls) for _ in range(repeats))
        one = statistics.median(seconds(1) for _ in range(repeats))
    finally:
        box.close()
    return (many - one) / (calls - 1) * 1e6


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
    parser.add_argument("--calls", type=int, default=2000, help="calls into the solution in the crossing test (0: skip)")
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
    rows = [Row("naive: `python -m pytest` per validation (lean)", lambda f: naive(f, args.timeout), args.workers)]
    process = ProcessSandbox(pool_size=args.workers)
    boxes.append(process)
    rows.append(Row("process backend (trusted)", verdict(process), args.workers))
    scaling: list[Row] = []
    cold_row = None
    ok, why = docker_available()
    if ok:
        if not args.skip_cold:
            cold = DockerSandbox(pool_size=args.workers, reuse=False)
            cold_row = Row("docker, cold container per validation", verdict(cold), args.workers)
        for name, options in (("**docker, warm pool (default: trusted)**", {}),
                              ("docker, warm pool, in-process (the monitor's)", {"isolation": "in-process"}),
                              ("docker, warm pool, trusted, pytest runner", {"runner": "pytest"})):
            box = DockerSandbox(pool_size=args.workers, **options)
            boxes.append(box)
            rows.append(Row(name, verdict(box), args.workers))
        for workers in [int(w) for w in args.scaling.split(",") if w.strip()]:
            pool = DockerSandbox(pool_size=workers)
            boxes.append(pool)
            scaling.append(Row(f"docker warm (trusted), {workers} workers", verdict(pool), workers))
    else:
        print(f"  docker: skipped ({why})", file=sys.stderr)
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
            before = len(cold.client.containers.list(all=True, filters={"label": LABEL}))
            try:
                cold_row.measure(jobs)
            finally:
                cold.close()
            _settle(cold.client, before)
            rows.insert(2, cold_row)
            print("  cold containers done", file=sys.stderr)
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
    agree_all = all(r.verdicts == base.verdicts for r in rows + scaling)

    if ok:
        print(f"\nCPU per validation (ms; 1 worker, the {len(jobs)} jobs in order; {load()}):\n")
        print("| isolation | the container | Docker (daemons + shim) | this process | total | naive / this |")
        print("|---|---:|---:|---:|---:|---:|")
        lean = naive_cpu(jobs, args.timeout)
        print(f"| naive (its pytest processes) | - | - | {lean:.2f} | {lean:.2f} | 1.0x |")
        for isolation in ("auto", "in-process"):
            cost = cpu_cost(isolation, jobs, args.timeout)
            name = "trusted (default)" if isolation == "auto" else "in-process"
            print(f"| {name} | {cost['container']:.2f} | {cost['docker']:.2f} | {cost['host']:.2f} | {cost['total']:.2f} "
                  f"| {lean / cost['total']:.1f}x |")
    if args.calls:
        kind = "docker" if ok else "process"
        print(f"\nA call from the tests into the solution ({kind}, {args.calls} calls in one test vs one call, median of 15):"
              f" trusted {crossing_cost(kind, 'auto', args.calls):.1f} µs, in-process "
              f"{crossing_cost(kind, 'in-process', args.calls):.2f} µs.")
    if ok:
        profiles = []
        with DockerSandbox(pool_size=1) as box:  # one worker: the phases are not stretched by a neighbour
            box.warm()
            box.profile = True
            for job in jobs:
                outcome = box.run_pytest(job, args.timeout)
                if outcome.profile:
                    profiles.append(outcome.profile)
        if profiles:
            keys = PHASES + ("cpu_user", "cpu_system", "page_faults", "candidate_cpu", "candidate_faults", "server_cpu")
            means = {k: statistics.fmean(p.get(k, 0.0) for p in profiles) for k in keys}
            print(f"\nWhere one warm trusted validation's time goes (1 worker, mean of {len(profiles)}, ms):\n")
            print("| " + " | ".join(PHASES) + " | judge CPU (user + system) | judge page faults | candidate process CPU | "
                  "its page faults | supervisor CPU |")
            print("|" + "---:|" * (len(PHASES) + 5))
            print("| " + " | ".join(f"{means[p] * 1000:.1f}" for p in PHASES)
                  + f" | {means['cpu_user'] * 1000:.1f} + {means['cpu_system'] * 1000:.1f} | {means['page_faults']:.0f}"
                  + f" | {means['candidate_cpu'] * 1000:.1f} | {means['candidate_faults']:.0f} | {means['server_cpu'] * 1000:.1f} |")
            print("\n(collect: importing the tests, which waits for the candidate process to start and import the "
                  "solution; rewrite: the plan's parse, rewrite and compile, in the supervisor; the candidate's CPU "
                  "is up to the end of the tests.)")
    print(f"\nAll modes agree on every verdict: {agree_all}. {load()}")
    return 0 if agree_all else 1


if __name__ == "__main__":
    sys.exit(main())
