"""What the response cache costs and saves: the open-time integrity check, and duplicate requests.

    python benchmarks/bench_cache.py [--entries N] [--threads T] [--delay-s D]

Prints, measured in one run:

* the time to open a cache of N entries with the integrity and schema check, and to open it again
  in the same process (the check is done once per file state);
* T threads asking one identical question of a loopback server that answers after D seconds:
  requests that reached the server and wall time, with in-flight de-duplication (the product
  path) and without it (T independent cores, each with its own cache: what every thread paid
  before).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_llm import FakeLLMServer  # noqa: E402

from gcop_env.cores import cache as cache_module  # noqa: E402
from gcop_env.cores.cache import ResponseCache  # noqa: E402
from gcop_env.cores import CoreRequest, Message, RetryPolicy, make_core  # noqa: E402


def bench_open(entries: int, workdir: Path) -> None:
    path = workdir / "responses.sqlite"
    ResponseCache(path).close()
    value = json.dumps({"text": "x" * 1500, "input_tokens": 100, "output_tokens": 300, "latency_s": 1.0,
                        "backend": "anthropic", "model": "m"})
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("INSERT INTO responses VALUES (?, ?, ?)", ((f"{i:064x}", value, 0.0) for i in range(entries)))
    conn.close()
    cache_module._checked.clear()
    start = time.perf_counter()
    ResponseCache(path).close()
    first = time.perf_counter() - start
    start = time.perf_counter()
    ResponseCache(path).close()
    again = time.perf_counter() - start
    print(f"open: {entries} entries ({path.stat().st_size / 1e6:.0f} MB): {first:.3f} s with the integrity check, "
          f"{again * 1000:.1f} ms re-opened in the same process")


def bench_duplicates(threads: int, delay_s: float, workdir: Path) -> None:
    request = CoreRequest(messages=(Message("user", "the same question"),))

    def run(cores) -> tuple[int, float]:
        with FakeLLMServer(lambda p: (time.sleep(delay_s), "answer")[1]) as server:
            built = [make_core(f"openai:m@{server.openai_base_url}", cache=c, retry=RetryPolicy(max_attempts=1))
                     for c in cores]
            for core in built:
                core.inner._get_client()  # build the SDK clients outside the timed span
            start = time.perf_counter()
            workers = [threading.Thread(target=built[i % len(built)].complete, args=(request,)) for i in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            return server.count(), time.perf_counter() - start

    shared = run([ResponseCache(workdir / "shared.sqlite")])
    separate = run([ResponseCache(workdir / f"own-{i}.sqlite") for i in range(threads)])
    print(f"{threads} identical concurrent requests, server answers in {delay_s:.2f} s: "
          f"{shared[0]} request(s) in {shared[1]:.2f} s with in-flight de-duplication; "
          f"{separate[0]} request(s) in {separate[1]:.2f} s without (ratio {separate[0] / max(1, shared[0]):.0f}x paid)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--delay-s", type=float, default=0.3)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="gcop-bench-cache-"))
    try:
        bench_open(args.entries, workdir)
        bench_duplicates(args.threads, args.delay_s, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
