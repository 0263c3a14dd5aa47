"""The ``gcop curate | sft | grpo`` commands: argparse over the config dataclasses.

Each function takes ``argv`` (without the sub-command) and returns an exit status, so the
top-level ``gcop`` entry point can dispatch to it. Every flag is a field of the command's config
dataclass (:mod:`gcop_env.trainers.config`); ``--config FILE`` (YAML or JSON) sets any of them and
flags override the file. ``python -m gcop_env.cli grpo ...`` (or the older ``python -m
gcop_env.trainers.cli grpo ...``) runs them under ``accelerate launch``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from gcop_env.cli.args import OneLineErrorParser, build_parser as config_parser, parse_config, usage_error
from gcop_env.cli.budget import budget_message
from gcop_env.cli.exit_codes import EXIT_BUDGET, EXIT_OK, EXIT_UNFINISHED, exit_interrupted
from gcop_env.trainers.config import CurateConfig, GRPORunConfig, SFTRunConfig


CONFIGS = {"curate": CurateConfig, "sft": SFTRunConfig, "grpo": GRPORunConfig}


def build_parser(command: str) -> OneLineErrorParser:
    """The parser of ``gcop curate``, ``sft`` or ``grpo`` (the one :func:`parse_config` builds)."""
    return config_parser(CONFIGS[command], f"gcop {command}")


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def guide_path_problem(guide: str) -> str | None:
    """Why ``guide`` cannot be a model (:func:`gcop_env.cores.hf_core.local_model_problem`), or None."""
    from gcop_env.cores.hf_core import local_model_problem

    problem = local_model_problem(guide)
    return f"--guide {problem}" if problem else None


def out_path_problem(out: str) -> str | None:
    """Why the output file cannot be written (checked before anything is paid for), or None."""
    from pathlib import Path

    if not out.strip():  # Path("") is the current directory
        return "--out is empty; give a file path"
    path = Path(out)
    if path.is_dir():
        return f"--out {out} is a directory; give a file path"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        return f"--out {out} is not writable ({exc.strerror or exc})"
    return None


def curate_cli(argv: list[str] | None = None) -> int:
    """``gcop curate``: exit 0 when every problem finished, 2 when some are left for a re-run,
    4 when the budget ran out and 130 when stopped by Ctrl-C / SIGTERM (finished rows are saved;
    re-run to resume)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = parse_config(CurateConfig, argv, prog="gcop curate")
    _setup_logging()
    from gcop_env.cores.budget import UnpricedModel
    from gcop_env.envs.tasks import ValidatorOptionsError
    from gcop_env.trainers.curate import ResumeMismatch, curate
    from gcop_env.utils.files import DataError, InUse, JsonlError
    from gcop_env.utils.interrupt import stop_on_signal

    problem = out_path_problem(config.out)
    if problem:
        return usage_error("gcop curate", problem)
    with stop_on_signal(what="curation") as stop:
        try:
            summary = curate(config, stop=stop)
        except (DataError, JsonlError, ResumeMismatch, UnpricedModel, InUse, ValidatorOptionsError) as exc:
            # bad input or --out: nothing spent
            return usage_error("gcop curate", exc)
    for line in summary.lines():
        print(line)
    if summary.interrupted:
        return exit_interrupted()
    if summary.budget_exhausted:
        from gcop_env.cores.budget import BudgetStatus

        status = BudgetStatus(**{k: v for k, v in summary.budget.items() if not k.startswith("left_")})
        saved = f"{summary.finished} finished rows are saved in {summary.out}."
        print(budget_message("gcop curate", argv, status, saved), file=sys.stderr)
        return EXIT_BUDGET
    return EXIT_UNFINISHED if summary.unfinished else EXIT_OK


def sft_cli(argv: list[str] | None = None) -> int:
    """``gcop sft``: fine-tune the guide on the accepted strategies."""
    config = parse_config(SFTRunConfig, argv, prog="gcop sft")
    problem = guide_path_problem(config.guide)
    if problem:
        return usage_error("gcop sft", problem)
    if not Path(config.corpus).is_file():
        return usage_error("gcop sft", f"--corpus {config.corpus} does not exist; run `gcop curate --out "
                                       f"{config.corpus}` first")
    _setup_logging()
    from gcop_env.trainers.sft import sft_examples, train_sft
    from gcop_env.utils.files import JsonlError

    try:
        sft_examples(config.corpus, config.min_q_hat)  # a bad or empty corpus fails before the model loads
    except (JsonlError, ValueError) as exc:
        return usage_error("gcop sft", exc)
    summary = train_sft(config)
    for line in summary.lines():
        print(line)
    return EXIT_OK


def grpo_cli(argv: list[str] | None = None) -> int:
    """``gcop grpo``: GRPO on the guide with the environment's shaped reward. Exit 0 when trained, 4 when
    the budget ran out and 130 when stopped (both after a checkpoint; re-run to resume)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = parse_config(GRPORunConfig, argv, prog="gcop grpo")
    problem = guide_path_problem(config.guide)
    if problem:
        return usage_error("gcop grpo", problem)
    _setup_logging()
    from gcop_env.cores.budget import BudgetStatus, UnpricedModel
    from gcop_env.envs.tasks import ValidatorOptionsError
    from gcop_env.trainers.grpo import FinishedRunMismatch, train_grpo
    from gcop_env.utils.interrupt import stop_on_signal
    from gcop_env.trainers.grpo_trainer import VLLMSetupError, check_vllm_setup

    try:  # before anything loads: vLLM's version, server mode without CUDA
        check_vllm_setup(config.use_vllm, config.vllm_mode)
    except VLLMSetupError as exc:
        return usage_error("gcop grpo", exc)
    with stop_on_signal(what="training (after the current step, with a checkpoint)") as stop:
        try:
            summary = train_grpo(config, stop=stop)
        except (UnpricedModel, ValidatorOptionsError, FinishedRunMismatch, VLLMSetupError) as exc:
            return usage_error("gcop grpo", exc)
    if summary.metrics.get("already_finished"):
        print(f"gcop grpo: already finished: {summary.output_dir} holds this run ({summary.steps} steps; its model "
              f"and summary.json are there), so nothing is trained or paid. Choose another --output-dir to train again.")
        return EXIT_OK
    for line in summary.lines():
        print(line)
    if stop.requested:
        print(f"interrupted at step {summary.steps}: checkpoint {summary.metrics.get('checkpoint')}; re-run the "
              "same command to resume from it", file=sys.stderr)
        return exit_interrupted()
    if summary.metrics.get("budget_exhausted"):
        status = BudgetStatus(**{k: v for k, v in summary.metrics["budget"].items() if not k.startswith("left_")})
        saved = (f"training stopped after step {summary.steps} with checkpoint {summary.metrics.get('checkpoint')} "
                 "(completions whose core call was refused were left out of that step's loss, as in an outage).")
        print(budget_message("gcop grpo", argv, status, saved), file=sys.stderr)
        return EXIT_BUDGET
    return EXIT_OK


if __name__ == "__main__":  # python -m gcop_env.trainers.cli curate ... (the name before gcop_env.cli)
    from gcop_env.cli.exit_codes import EXIT_USAGE

    commands = {"curate": curate_cli, "sft": sft_cli, "grpo": grpo_cli}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(f"usage: python -m gcop_env.cli {{{'|'.join(commands)}}} [flags]", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    sys.exit(commands[sys.argv[1]](sys.argv[2:]))
