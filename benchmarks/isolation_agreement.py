"""Do trusted isolation and the in-process mode give the same verdicts? Counts on the data at hand.

    python benchmarks/isolation_agreement.py [--backend process|docker] [--workers 2]

Runs every reference solution of the KodCode sample (170) and of HumanEval (164), each as written
and broken (every function made to return None), under trusted isolation (the default,
``isolation="auto"``) and the old in-process mode (``isolation="in-process"``: tests and solution in
one process, with the monitor), and prints, per dataset: the pass counts in each mode, how many
verdicts agree, how many runs agree test by test (each test's id and outcome, the counts, the
collection errors), and the share of runs that had trusted isolation.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_sandbox import broken  # (every function made to return None; this script's directory is on the path)

from gcop_env.sandbox.process_backend import ProcessSandbox
from gcop_env.validators.humaneval import _CHECK, load_humaneval
from gcop_env.validators.kodcode import load_kodcode

DEFAULT_KODCODE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kodcode" / "kodcode_prefill_sample.jsonl"


def jobs(kodcode_path: str) -> dict[str, list[tuple[str, str, str]]]:
    kodcode = [(p.task_id, p.solution, p.reference) for p in load_kodcode("all", kodcode_path)]
    humaneval = [(p.task_id, p.metadata["prompt"] + p.metadata["canonical_solution"],
                  _CHECK.format(test=p.reference, entry_point=p.metadata["entry_point"])) for p in load_humaneval()]
    return {"KodCode sample": kodcode, "HumanEval": humaneval}


def shape(outcome) -> tuple:
    return (outcome.all_passed, tuple((t.nodeid, t.outcome) for t in outcome.tests),
            (outcome.collected, outcome.passed, outcome.failed, outcome.errors, outcome.skipped, outcome.not_run),
            len(outcome.collect_errors), outcome.timed_out, outcome.infra_error)


def make(backend: str, isolation: str, workers: int):
    if backend == "docker":
        from gcop_env.sandbox.docker_backend import DockerSandbox

        return DockerSandbox(pool_size=workers, isolation=isolation)
    return ProcessSandbox(pool_size=workers, isolation=isolation)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("process", "docker"), default="process")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--kodcode", default=str(DEFAULT_KODCODE))
    args = parser.parse_args(argv)
    boxes = {iso: make(args.backend, iso, args.workers) for iso in ("auto", "in-process")}
    started = time.monotonic()
    print(f"backend: {args.backend}, {args.workers} workers")
    print("| dataset | runs | pass (trusted) | pass (in-process) | same verdict | same per-test outcomes | trusted isolation |")
    print("|---|---|---|---|---|---|---|")
    disagreements = []
    try:
        for dataset, rows in jobs(args.kodcode).items():
            runs = [(name, variant, tests) for name, solution, tests in rows for variant in (solution, broken(solution))]

            def both(run):
                name, solution, tests = run
                files = {"solution.py": solution, "test_solution.py": tests}
                return name, {iso: box.run_pytest(files, args.timeout) for iso, box in boxes.items()}

            with ThreadPoolExecutor(args.workers) as pool:
                results = list(pool.map(both, runs))
            passes = {iso: sum(r[iso].all_passed for _, r in results) for iso in boxes}
            same_verdict = sum(r["auto"].all_passed == r["in-process"].all_passed for _, r in results)
            same_tests = sum(shape(r["auto"]) == shape(r["in-process"]) for _, r in results)
            trusted = sum(r["auto"].isolation == "trusted" for _, r in results)
            disagreements += [(dataset, name) for name, r in results if shape(r["auto"]) != shape(r["in-process"])]
            print(f"| {dataset} | {len(results)} | {passes['auto']} | {passes['in-process']} | {same_verdict}/{len(results)} "
                  f"| {same_tests}/{len(results)} | {trusted}/{len(results)} ({100 * trusted / len(results):.0f}%) |")
        for iso, box in boxes.items():  # (the process backend: whether Landlock confined the candidates' files)
            print(f"filesystem ({iso}): {box.versions.get('filesystem')}")
    finally:
        for box in boxes.values():
            box.close()
    for dataset, name in disagreements:
        print(f"disagreement: {dataset} {name}")
    print(f"({time.monotonic() - started:.0f} s)")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
