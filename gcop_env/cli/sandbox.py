"""``gcop sandbox build-image`` and ``gcop sandbox check``: make and test the sandbox image."""

from __future__ import annotations

import argparse
import sys

from gcop_env.cli.args import OneLineErrorParser
from gcop_env.cli.exit_codes import EXIT_FAILED, EXIT_OK
from gcop_env.sandbox.image import (
    DEFAULT_IMAGE,
    DEFAULT_SUITE,
    ImageBuildError,
    build_image,
    check_image,
    image_is_current,
    image_recipe,
    recipe_hash,
)


def _image_command(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    """A sub-command about the sandbox image: each one takes ``--tag``."""
    command = sub.add_parser(name, **kwargs)
    command.add_argument("--tag", default=DEFAULT_IMAGE, help=f"image tag (default $GCOP_SANDBOX_IMAGE or {DEFAULT_IMAGE})")
    return command


def build_parser(prog: str = "gcop sandbox") -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog=prog, description="Build and check the Docker image code runs in.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = _image_command(
        sub,
        "build-image",
        help="build the sandbox image",
        description="Build the sandbox image: offline by default (debootstrap + docker import, needs root "
        "and debootstrap, a few minutes), or from the Dockerfile with --registry.",
    )
    how = build.add_mutually_exclusive_group()
    how.add_argument("--offline", dest="offline", action="store_true", default=True, help="debootstrap + docker import (default)")
    how.add_argument("--registry", dest="offline", action="store_false", help="docker build of sandbox/image/Dockerfile")
    build.add_argument("--suite", default=DEFAULT_SUITE, help=f"Debian suite for the offline build (default {DEFAULT_SUITE})")
    build.add_argument("--mirror", default=None, help="Debian mirror URL for the offline build")
    when = build.add_mutually_exclusive_group()
    when.add_argument("--if-missing", action="store_true", help="do nothing when the image exists (whatever its recipe)")
    when.add_argument(
        "--if-outdated",
        action="store_true",
        help="do nothing when the image exists and was built from this version's recipe (its label); else build",
    )
    build.add_argument(
        "--host", default=None, help="Docker engine URL to build on (default DOCKER_HOST); the offline build runs here"
    )
    copy = _image_command(
        sub,
        "copy-image",
        help="copy the sandbox image to another Docker engine",
        description="Stream the image from one engine to another (docker save | docker -H URL load), e.g. to "
        "each host in $GCOP_DOCKER_HOSTS. Does nothing when the target has the same image id.",
    )
    copy.add_argument("--to", dest="to", nargs="+", required=True, help="engine URL(s) to copy to (unix://, tcp://, ssh://)")
    copy.add_argument("--from", dest="source", default=None, help="engine URL to copy from (default DOCKER_HOST)")
    hosts = _image_command(
        sub,
        "hosts",
        help="check the Docker engines of a multi-host sandbox",
        description="For each engine (arguments, else $GCOP_DOCKER_HOSTS): does it answer, does it have the "
        "current image, how many containers it would keep warm. Exit 1 when any is unusable.",
    )
    hosts.add_argument("urls", nargs="*", help="engine URLs (default: $GCOP_DOCKER_HOSTS)")
    check = _image_command(
        sub,
        "check",
        help="check the sandbox image (or a dataset's imports against it)",
        description="Without --data-files: run a right and a wrong solution in the image (with --sandbox process: "
        "in the process backend, and say which isolation and file-system confinement its runs get). With --data-files: "
        "list the modules the rows' solutions and tests import and import each one inside the sandbox; "
        "exit 1 when any is missing (rows that need it would be scored wrongly).",
    )
    check.add_argument("--data-files", nargs="+", default=None, help="dataset files (.jsonl[.gz], .json, .parquet)")
    check.add_argument("--sandbox", choices=("docker", "process"), default="docker", help="backend to probe (default docker)")
    return parser


def sandbox_cli(argv: list[str] | None = None, prog: str = "gcop sandbox") -> int:
    """Entry point for ``gcop sandbox ...``; returns the exit status."""
    args = build_parser(prog).parse_args(argv)
    if args.command == "build-image":
        return _build(args)
    if args.command == "copy-image":
        return _copy(args)
    if args.command == "hosts":
        return _hosts(args)
    if args.data_files:
        return _check_dataset(args)
    if args.sandbox == "process":
        return _check_process()
    result = check_image(args.tag)
    print(("ok: " if result.ok else "error: ") + result.message + f" ({result.seconds:.1f}s)")
    return EXIT_OK if result.ok else 1


def _check_process() -> int:
    """``gcop sandbox check --sandbox process``: grade a right and a wrong solution with the process
    backend, and say what isolation its runs get (users, and the host files a candidate can read)."""
    import time

    from gcop_env.sandbox.process_backend import ProcessSandbox

    tests = "from solution import *\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    started = time.monotonic()
    try:
        with ProcessSandbox(pool_size=1) as box:
            good = box.run_pytest({"solution.py": "def add(a, b):\n    return a + b\n", "test_solution.py": tests}, 10)
            bad = box.run_pytest({"solution.py": "def add(a, b):\n    return a - b\n", "test_solution.py": tests}, 10)
            versions = dict(box.versions)
    except Exception as exc:
        print(f"error: the process sandbox failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    seconds = time.monotonic() - started
    broken = next((o.infra_error for o in (good, bad) if o.infra_error), None)
    if broken or not good.all_passed or bad.all_passed:
        print(f"error: the process sandbox gave wrong verdicts: {broken or (good.all_passed, bad.all_passed)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"ok: the process backend works: python {versions.get('python')}, pytest {versions.get('pytest')} ({seconds:.1f}s)")
    print(f"isolation: {versions.get('isolation')}")
    filesystem = str(versions.get("filesystem"))
    print(f"filesystem: {filesystem}")
    if not filesystem.startswith("confined"):
        print("warning: candidate code can read every file its user may read on this host (a dataset's test files "
              "included): use the Docker backend for training", file=sys.stderr)
    return EXIT_OK


def _build(args: argparse.Namespace) -> int:
    try:
        client = _engine(args.host)
    except Exception as exc:
        print(f"error: no Docker engine answers at {args.host or 'DOCKER_HOST'} ({exc}); start one (scripts/setup_docker.sh)", file=sys.stderr)
        return EXIT_FAILED
    present = image_recipe(args.tag, client)
    if args.if_missing and present is not None:
        print(f"{args.tag} is present")
        return EXIT_OK
    if args.if_outdated and present is not None:
        if image_is_current(args.tag, client, args.suite):
            print(f"{args.tag} is present and current (recipe {present})")
            return EXIT_OK
        want = recipe_hash(args.offline, args.suite)
        print(f"{args.tag} was built from another recipe ({present or 'unlabelled'}; this version's is {want}): rebuilding")
    try:
        build_image(args.tag, offline=args.offline, suite=args.suite, mirror=args.mirror, client=client)
    except (ImageBuildError, Exception) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _engine(url: str | None):
    """A client for ``url`` (TLS/ssh as :class:`~gcop_env.sandbox.hosts.DockerHost`), or for DOCKER_HOST; pinged."""
    import docker

    from gcop_env.sandbox.hosts import DockerHost

    client = DockerHost(url).client(60.0) if url else docker.from_env()
    client.ping()
    return client


def _copy(args: argparse.Namespace) -> int:
    from gcop_env.sandbox.hosts import copy_image

    try:
        source = _engine(args.source)
        source.images.get(args.tag)
    except Exception as exc:
        print(f"error: cannot read {args.tag} from {args.source or 'DOCKER_HOST'}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    failed = 0
    for url in args.to:
        try:
            seconds = copy_image(source, _engine(url), args.tag)
        except Exception as exc:
            print(f"error: copying {args.tag} to {url} failed: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{url}: " + (f"copied {args.tag} in {seconds:.1f}s" if seconds else f"already has {args.tag} (same id)"))
    return EXIT_FAILED if failed else 0


def _hosts(args: argparse.Namespace) -> int:
    from gcop_env.sandbox.hosts import HOSTS_ENV, DockerFleet, HostState, hosts_from_env

    try:
        hosts = args.urls or hosts_from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not hosts:
        print(f"error: name the engines (arguments) or set ${HOSTS_ENV} (comma-separated URLs)", file=sys.stderr)
        return EXIT_FAILED
    try:
        with DockerFleet(hosts, image=args.tag, heartbeat=0) as fleet:
            stats = fleet.stats()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print("| host | state | warm containers | why not usable |")
    print("|---|---|---:|---|")
    for host in stats:
        print(f"| {host.url} | {host.state.value} | {host.capacity if host.state is HostState.UP else '-'} | {host.last_error} |")
    return EXIT_OK if all(host.state is HostState.UP for host in stats) else 1


def _check_dataset(args: argparse.Namespace) -> int:
    from gcop_env.sandbox import make_sandbox
    from gcop_env.sandbox.imports import probe_modules, scan_dataset

    try:
        found = scan_dataset(args.data_files)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    options = {"image": args.tag} if args.sandbox == "docker" else {}
    where = f"image {args.tag}" if args.sandbox == "docker" else "the process backend (this Python)"
    try:
        with make_sandbox(args.sandbox, pool_size=1, memory_mb=1024, **options) as sandbox:
            results = probe_modules(sandbox, found.modules)
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    missing = {name: why for name, why in results.items() if why is not None}
    print(f"{found.rows} rows import {len(results)} modules; {len(missing)} not importable in {where}")
    print("| module | rows (solutions) | rows (tests) | importable |")
    print("|---|---:|---:|---|")
    for name in sorted(results, key=lambda n: (results[n] is None, -(found.solutions[n] + found.tests[n]), n)):
        state = "yes" if results[name] is None else f"NO: {results[name]}"
        print(f"| {name} | {found.solutions[name]} | {found.tests[name]} | {state} |")
    if missing:
        rows = {n: found.solutions[n] + found.tests[n] for n in missing}
        print(
            f"error: rows that import {', '.join(sorted(missing))} would fail for every answer "
            f"({sum(rows.values())} row-imports); add the packages to the image recipe (sandbox/image.py) "
            "or drop those rows",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(sandbox_cli())
