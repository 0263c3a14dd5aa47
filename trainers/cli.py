"""The ``gcop curate | sft | grpo`` commands: argparse over the config dataclasses.

Each function takes ``argv`` (without the sub-command) and returns an exit status, so the
top-level ``gcop`` entry point can dispatch to it. Every flag is a field of the command's config
dataclass (:mod:`gcop_env.trainers.config`); ``--config FILE`` (YAML or JSON) sets any of them and
flags override the file.
"""

from __future__ import annotations

import logging
import sys

from gcop_env.trainers.config import CurateConfig, GRPORunConfig, SFTRunConfig, parse_config
from gcop_env.usage import usage_error


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def curate_cli(argv: list[str] | None = None) -> int:
    """``gcop curate``: exit 0 when every problem finished, 2 when some are left for a re-run,
    130 when stopped by Ctrl-C / SIGTERM (finished rows are saved; re-run to resume)."""
    config = parse_config(CurateConfig, argv, prog="gcop curate")
    _setup_logging()
    from gcop_env.interrupt import exit_interrupted, stop_on_signal
    from gcop_env.trainers.common import JsonlError
    from gcop_env.trainers.curate import ResumeMismatch, curate
    from gcop_env.validators.data import DataError

    with stop_on_signal(what="curation") as stop:
        try:
            summary = curate(config, stop=stop)
        except (DataError, JsonlError, ResumeMismatch) as exc:  # bad input or --out: nothing was spent
            return usage_error("gcop curate", exc)
    for line in summary.lines():
        print(line)
    if summary.interrupted:
        return exit_interrupted()
    return 2 if summary.unfinished else 0


def sft_cli(argv: list[str] | None = None) -> int:
    """``gcop sft``: fine-tune the guide on the accepted strategies."""
    config = parse_config(SFTRunConfig, argv, prog="gcop sft")
    _setup_logging()
    from gcop_env.trainers.sft import train_sft

    summary = train_sft(config)
    for line in summary.lines():
        print(line)
    return 0


def grpo_cli(argv: list[str] | None = None) -> int:
    """``gcop grpo``: GRPO on the guide with the environment's shaped reward."""
    config = parse_config(GRPORunConfig, argv, prog="gcop grpo")
    _setup_logging()
    from gcop_env.trainers.grpo import train_grpo

    summary = train_grpo(config)
    for line in summary.lines():
        print(line)
    return 0


if __name__ == "__main__":  # python -m gcop_env.trainers.cli curate ...
    commands = {"curate": curate_cli, "sft": sft_cli, "grpo": grpo_cli}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m gcop_env.trainers.cli {{{'|'.join(commands)}}} [flags]", file=sys.stderr)
        sys.exit(2)
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
