"""The Docker sandbox across engines: routing split, throughput against one engine, an engine lost mid-run.

    python benchmarks/bench_sandbox_hosts.py --second-engine [--limit N] [--threads T] [--pool-size P]
    python benchmarks/bench_sandbox_hosts.py --hosts unix:///var/run/docker.sock,tcp://gpu2:2376

Jobs: HumanEval problems (offline), each once with its reference solution and once broken, so the
verdicts are worth comparing. Modes, on the same jobs, each with ``--threads`` callers:

* one engine: :class:`DockerSandbox` on the first host (``--pool-size`` warm containers);
* fleet: :class:`DockerFleet` over all hosts (``--pool-size`` per host), with the split of
  validations per host and the agreement of every verdict with the one-engine run;
* fleet, engine lost (only with ``--second-engine``, which starts a second ``dockerd`` here as the
  tests do): the second engine is SIGKILLed a third of the way through; prints the runs moved,
  infra outcomes, wrong verdicts (must be 0), then restarts it and times its re-admission.

With ``--second-engine`` both engines share this machine's CPUs, so the fleet cannot be faster
than one engine here: the row shows routing overhead, not a speed-up. The machine's load is printed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gcop_env.sandbox.docker_backend import DockerSandbox, docker_available
from gcop_env.sandbox.hosts import DockerFleet, HostState, copy_image, parse_hosts
from gcop_env.sandbox.image import DEFAULT_IMAGE
from gcop_env.validators.base import Status
from gcop_env.validators.humaneval import HumanEvalValidator, load_humaneval

TESTS = Path(__file__).resolve().parents[1] / "tests"


def jobs(limit: int, seed: int = 0):
    problems = random.Random(seed).sample(load_humaneval(), max(1, limit // 2))
    wrong = "def {}(*args, **kwargs):\n    return None\n"
    out = [(p, f"```python\n{p.solution}\n```", Status.PASS) for p in problems]
    out += [(p, f"```python\n{wrong.format(p.metadata['entry_point'])}\n```", Status.FAIL) for p in problems]
    random.Random(seed + 1).shuffle(out)
    return out


def run(sandbox, work, threads: int) -> tuple[list, float]:
    validator = HumanEvalValidator(sandbox=sandbox, infra_retries=0)  # failover is the sandbox's, not the validator's
    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda job: validator.validate(job[0], job[1]), work))
    return results, time.monotonic() - started


def split(fleet: DockerFleet) -> str:
    return ", ".join(f"{s.url}: {s.validations}" for s in fleet.stats())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", default=None, help="comma-separated engine URLs (the first is the one-engine baseline)")
    parser.add_argument("--second-engine", action="store_true", help="start a second dockerd here (as the tests do)")
    parser.add_argument("--limit", type=int, default=60, help="validations per mode (half right, half wrong)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--pool-size", type=int, default=2, help="warm containers per engine")
    args = parser.parse_args()
    ok, why = docker_available()
    if not ok:
        print(f"error: {why}", file=sys.stderr)
        return 1
    engine = None
    if args.second_engine:
        import docker

        sys.path.insert(0, str(TESTS))
        from _second_engine import URL, SecondEngine

        engine = SecondEngine()
        up_s = engine.start()
        copy_s = copy_image(docker.from_env(), docker.DockerClient(base_url=URL), DEFAULT_IMAGE)
        print(f"second dockerd up in {up_s:.1f}s; image {'copied in %.1fs' % copy_s if copy_s else 'already there (same id)'}")
        hosts = [os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock", URL]
    elif args.hosts:
        hosts = [h.url for h in parse_hosts(args.hosts)]
    else:
        parser.error("give --hosts or --second-engine")
    try:
        work = jobs(args.limit)
        print(f"load before: {os.getloadavg()[0]:.1f}; {len(work)} validations, {args.threads} threads, pool {args.pool_size}/engine")
        print("| mode | validations | wall s | validations/s | per host | verdicts as one engine | moved | infra |")
        print("|---|---:|---:|---:|---|---:|---:|---:|")
        with DockerSandbox(pool_size=args.pool_size, client=parse_hosts(hosts[0])[0].client(60)) as single:
            single.warm()
            alone, wall = run(single, work, args.threads)
        truth = [r.status for r in alone]
        assert truth == [job[2] for job in work], "the one-engine verdicts are not the expected ones"
        print(f"| one engine | {len(work)} | {wall:.1f} | {len(work) / wall:.1f} | {hosts[0]}: {len(work)} | - | - | - |")
        with DockerFleet(hosts, pool_size=args.pool_size) as fleet:
            fleet.warm()
            spread, wall = run(fleet, work, args.threads)
            same = sum(r.status == t for r, t in zip(spread, truth))
            infra = sum(r.status == Status.INFRA for r in spread)
            moved = sum(s.moved for s in fleet.stats())
            print(f"| fleet | {len(work)} | {wall:.1f} | {len(work) / wall:.1f} | {split(fleet)} | {same}/{len(work)} | {moved} | {infra} |")
        if engine is not None:
            lost_run(engine, hosts, work, truth, args)
        print(f"load after: {os.getloadavg()[0]:.1f}")
    finally:
        if engine is not None:
            engine.stop()
    return 0


def lost_run(engine, hosts, work, truth, args) -> None:
    with DockerFleet(hosts, pool_size=args.pool_size, max_backoff=1.0) as fleet:
        fleet.warm()
        third = len(work) // 3

        def kill() -> None:
            while sum(s.validations for s in fleet.stats()) < third:
                time.sleep(0.01)
            engine.kill()

        killer = threading.Thread(target=kill)
        killer.start()
        results, wall = run(fleet, work, args.threads)
        killer.join()
        same = sum(r.status == t for r, t in zip(results, truth))
        infra = sum(r.status == Status.INFRA for r in results)
        wrong = len(work) - same - infra
        moved = sum(s.moved for s in fleet.stats())
        print(
            f"| fleet, 2nd engine SIGKILLed after {third} | {len(work)} | {wall:.1f} | {len(work) / wall:.1f} | {split(fleet)} "
            f"| {same}/{len(work)} | {moved} | {infra} |"
        )
        restarted = time.monotonic()
        up_s = engine.start()
        while fleet.stats()[1].state is not HostState.UP and time.monotonic() - restarted < 60:
            time.sleep(0.05)
        back = time.monotonic() - restarted
        state = fleet.stats()[1].state.value
        print(f"\nwrong verdicts after the kill: {wrong}; restarted engine answered in {up_s:.1f}s, back in rotation "
              f"after {back:.1f}s (state {state})")


if __name__ == "__main__":
    sys.exit(main())
