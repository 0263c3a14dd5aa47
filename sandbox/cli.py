"""``gcop sandbox build-image`` and ``gcop sandbox check``: make and test the sandbox image."""

from __future__ import annotations

import argparse
import sys

from gcop_env.sandbox.image import DEFAULT_IMAGE, DEFAULT_SUITE, ImageBuildError, build_image, check_image


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Build and check the Docker image code runs in.")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser(
        "build-image",
        help="build the sandbox image",
        description="Build the sandbox image: offline by default (debootstrap + docker import, needs root "
        "and debootstrap, about a minute), or from the Dockerfile with --registry.",
    )
    build.add_argument("--tag", default=DEFAULT_IMAGE, help=f"image tag (default {DEFAULT_IMAGE})")
    how = build.add_mutually_exclusive_group()
    how.add_argument("--offline", dest="offline", action="store_true", default=True, help="debootstrap + docker import (default)")
    how.add_argument("--registry", dest="offline", action="store_false", help="docker build of sandbox/image/Dockerfile")
    build.add_argument("--suite", default=DEFAULT_SUITE, help=f"Debian suite for the offline build (default {DEFAULT_SUITE})")
    build.add_argument("--mirror", default=None, help="Debian mirror URL for the offline build")
    build.add_argument("--if-missing", action="store_true", help="do nothing when the image exists")
    check = sub.add_parser("check", help="run a right and a wrong solution in the sandbox image")
    check.add_argument("--tag", default=DEFAULT_IMAGE, help=f"image tag (default {DEFAULT_IMAGE})")
    return parser


def sandbox_cli(argv: list[str] | None = None, prog: str = "gcop sandbox") -> int:
    """Entry point for ``gcop sandbox ...``; returns the exit status."""
    args = _parser(prog).parse_args(argv)
    if args.command == "build-image":
        try:
            import docker

            client = docker.from_env()
            client.ping()
        except Exception as exc:
            print(f"error: no Docker engine answers ({exc}); start one (scripts/setup_docker.sh)", file=sys.stderr)
            return 1
        if args.if_missing:
            try:
                client.images.get(args.tag)
                print(f"{args.tag} is present")
                return 0
            except Exception:
                pass
        try:
            build_image(args.tag, offline=args.offline, suite=args.suite, mirror=args.mirror, client=client)
        except (ImageBuildError, Exception) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        return 0
    result = check_image(args.tag)
    print(("ok: " if result.ok else "error: ") + result.message + f" ({result.seconds:.1f}s)")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(sandbox_cli())
