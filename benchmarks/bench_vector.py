"""Vector envs against a slow core: sync, async (shared memory and pipes) and the native thread pool.

    python benchmarks/bench_vector.py [--num-envs 16] [--steps 64] [--delay-s 0.2]

A loopback OpenAI-compatible server (its own process, so its threads do not share the measured
process's interpreter) answers every request after ``--delay-s``. Each mode runs in a fresh
process of its own, makes ``gym.make_vec("GCoP-GSM8K-v0", num_envs=N, ...)`` with the response
cache off (every step really calls the server) and no judge or baseline (one core call per step),
in ``SameStep`` autoreset (every ``step()`` scores N guide outputs). It prints, per mode:

* start-up: ``make_vec`` plus the first ``reset`` (processes, data, clients);
* warm wall time of ``--steps`` scored steps (``steps / N`` calls of ``step()``, after one warm-up
  ``step()``), and its ratio to the ideal ``steps / N × delay`` (every call overlapped): the
  median and the worst of ``--repeats`` timed runs;
* memory: peak RSS (VmHWM) summed over the process and its children (counts shared pages once
  per process, so an upper bound) and PSS (shared pages split between processes) at the end;
* server requests: checked equal to the scored steps, so no step was served from anywhere else.

Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

MODES = {
    "sync": ("sync", {}),
    "async (shared memory)": ("async", {"shared_memory": True}),
    "async (pipes)": ("async", {"shared_memory": False}),
    "native (threads)": ("vector_entry_point", {}),
}
REPLY = "Adding the quantities as the strategy says gives 18.\n\\boxed{18}"
GUIDE = ("<think>Find the quantities and combine them.</think>\n"
         "<strategy>1. List every quantity. 2. Decide which operations link them. 3. Compute step by step.</strategy>")


# -- the slow core: a process of its own ---------------------------------------------------------
class SlowCore:
    """The server process; ``count()`` asks it how many requests it has received."""

    def __init__(self, delay_s: float):
        ctx = multiprocessing.get_context("spawn")
        url_queue = ctx.Queue()
        self._stop = ctx.Event()
        self._counter = ctx.Value("i", 0)
        self._process = ctx.Process(target=_serve_counting, args=(delay_s, url_queue, self._stop, self._counter),
                                    daemon=True)
        self._process.start()
        self.url = url_queue.get(timeout=60)

    def count(self) -> int:
        return self._counter.value

    def close(self) -> None:
        self._stop.set()
        self._process.join(timeout=10)


def _serve_counting(delay_s: float, url_queue, stop, counter) -> None:
    from http.server import ThreadingHTTPServer

    from fake_llm import FakeLLMServer

    def respond(prompt: str) -> str:
        with counter.get_lock():
            counter.value += 1
        time.sleep(delay_s)
        return REPLY

    # a listen() backlog for N clients connecting at once (the default 5 drops SYNs: 1 s retries)
    ThreadingHTTPServer.request_queue_size = 256  # this process is the server's alone
    with FakeLLMServer(respond) as server:
        # the fake writes headers and body separately: with Nagle's algorithm and the client's
        # delayed ACK every reply would stall 40 ms more than the delay asked for (real APIs set this)
        server.httpd.RequestHandlerClass.disable_nagle_algorithm = True
        url_queue.put(server.openai_base_url)
        stop.wait()


# -- memory of a process tree, from /proc --------------------------------------------------------
def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found


def _tree(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        frontier = [c for p in frontier for c in _children(p)]
        pids += frontier
    return pids


def _kib(path: str, field: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory_mib(pid: int) -> dict[str, float]:
    pids = _tree(pid)
    peak = sum(_kib(f"/proc/{p}/status", "VmHWM") for p in pids)
    pss = sum(_kib(f"/proc/{p}/smaps_rollup", "Pss") for p in pids)
    return {"processes": len(pids), "peak_rss_mib": peak / 1024, "pss_mib": pss / 1024}


# -- one mode, in a fresh process ----------------------------------------------------------------
def run_mode(mode: str, url: str, num_envs: int, steps: int, data: str, repeats: int) -> dict:
    import gymnasium as gym
    import numpy as np

    import gcop_env  # noqa: F401 - registers the envs

    vectorization_mode, vector_kwargs = MODES[mode]
    kwargs = dict(core=f"openai:bench@{url}", split="test", data_files=data, gamma=0.0, kappa=0.0, cache=False)
    if vectorization_mode == "vector_entry_point":
        kwargs["autoreset_mode"] = "SameStep"
    else:
        vector_kwargs = {**vector_kwargs, "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    start = time.perf_counter()
    envs = gym.make_vec("GCoP-GSM8K-v0", num_envs=num_envs, vectorization_mode=vectorization_mode,
                        vector_kwargs=vector_kwargs, **kwargs)
    envs.reset(seed=0)
    startup_s = time.perf_counter() - start
    actions = [GUIDE] * num_envs
    envs.step(actions)  # warm-up: clients, connections, threads
    scored = infra = 0
    warm_s = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps // num_envs):
            _, rewards, terminations, _, info = envs.step(actions)
            final = info["final_info"]
            scored += int(terminations.sum())
            infra += int((~final["reward_is_task_outcome"].astype(bool)).sum())
            assert np.isfinite(rewards).all()
        warm_s.append(time.perf_counter() - start)
    memory = tree_memory_mib(os.getpid())
    envs.close()
    return {"mode": mode, "startup_s": startup_s, "warm_s": warm_s, "scored": scored, "infra": infra, **memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=64, help="scored steps (a multiple of --num-envs)")
    parser.add_argument("--delay-s", type=float, default=0.2, help="the core's answer time")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of --steps per mode (median and worst shown)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gsm8k"))
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one mode, print JSON
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps % args.num_envs:
        parser.error(f"--steps ({args.steps}) must be a multiple of --num-envs ({args.num_envs})")
    if args.child:
        print(json.dumps(run_mode(args.child, args.url, args.num_envs, args.steps, args.data, args.repeats)))
        return

    ideal_s = args.steps / args.num_envs * args.delay_s
    print(f"{args.steps} steps at N={args.num_envs}, core answering in {args.delay_s * 1000:.0f} ms: "
          f"ideal {ideal_s:.2f} s (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"warm: median (worst) of {args.repeats} timed runs of {args.steps} steps each, after a warm-up step")
    print(f"{'mode':24} {'start-up':>9} {'warm':>15} {'× ideal':>15} {'procs':>5} {'peak RSS':>10} {'PSS':>9}  requests")
    core = SlowCore(args.delay_s)
    try:
        with tempfile.TemporaryDirectory(prefix="gcop-bench-vector-") as cache_dir:
            env = {**os.environ, "GCOP_CACHE_DIR": cache_dir}
            for mode in args.modes:
                before = core.count()
                child = subprocess.run([sys.executable, __file__, "--child", mode, "--url", core.url,
                                        "--num-envs", str(args.num_envs), "--steps", str(args.steps),
                                        "--repeats", str(args.repeats), "--data", args.data], capture_output=True, text=True, env=env, check=False)
                if child.returncode != 0:
                    print(f"{mode:24} FAILED:\n{child.stderr[-2000:]}")
                    continue
                r = json.loads(child.stdout.strip().splitlines()[-1])
                requests = core.count() - before
                expected = r["scored"] + args.num_envs  # the measured steps and the warm-up step
                check = "ok" if requests == expected and r["infra"] == 0 and r["scored"] == args.steps * args.repeats else \
                    f"MISMATCH (expected {expected}, infra {r['infra']}, scored {r['scored']})"
                median, worst = statistics.median(r["warm_s"]), max(r["warm_s"])
                print(f"{mode:24} {r['startup_s']:8.2f}s {median:6.2f}s ({worst:5.2f}s) "
                      f"{median / ideal_s:6.2f}× ({worst / ideal_s:5.2f}×) "
                      f"{r['processes']:5d} {r['peak_rss_mib']:8.0f} MiB {r['pss_mib']:6.0f} MiB  {requests} {check}")
    finally:
        core.close()


if __name__ == "__main__":
    main()
