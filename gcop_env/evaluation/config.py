"""``gcop eval``'s configuration: one condition (core-only, ICL, guided, strategies) of one task split.

A config dataclass on the same field system as the trainers' (:mod:`gcop_env.utils.fields`): every
field checked, with its range, before anything is loaded or paid for. ``--preset paper`` is in
:data:`PRESETS`."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcop_env.cores import parse_core_spec
from gcop_env.cores.models import DEFAULT_CORE
from gcop_env.cores.options import CoreCallOptions
from gcop_env.evaluation.guides import DEFAULT_GUIDE_STOP, guide_identity, parse_guide_spec
from gcop_env.step.strategy import DEFAULT_MAX_STRATEGY_CHARS
from gcop_env.utils.fields import option, validate_fields
from gcop_env.utils.numbers import check_number

KINDS = ("core-only", "icl", "guided", "strategies")

# `--preset paper`: the paper's protocol. Splits: GSM8K test (1,319 problems); KodCode: the
# seeded 1,000-problem sample of KodCode-Light-RL-10K, 80/20, its 200-problem test part (the
# loader's default protocol); HumanEval: all 164. Sampling: the guide at temperature 0.6 / top-p
# 0.95 with up to 2,048 tokens (as in GRPO), the core greedy with up to 1,024 tokens, one
# strategy per problem. Flags given on the command line override the preset.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "split": "test", "limit": None, "guide_samples": 1, "guide_temperature": 0.6, "guide_top_p": 0.95,
        "guide_max_tokens": 2048, "core_temperature": 0.0, "core_top_p": 1.0, "core_max_tokens": 1024,
    },
}



class EvalInputError(ValueError):
    """Bad input found before anything was spent: the message says what and what to do.

    (A field out of its range is a :class:`~gcop_env.utils.fields.ConfigError`, like every command's.)"""


def _price_pair(text: str) -> tuple[float, float]:
    try:
        parts = [float(x) for x in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) != 2 or min(parts) < 0:
        raise argparse.ArgumentTypeError(f"expected IN,OUT in USD per million tokens (e.g. 0.2,0.6), got {text!r}")
    return parts[0], parts[1]


@dataclass
class EvalConfig(CoreCallOptions):
    """One condition's whole configuration (written to ``run_config.json`` and ``summary.json``).

    The fields are ``gcop eval``'s flags (:mod:`gcop_env.cli.eval`), except ``kind``, ``icl_k``,
    ``guide`` and ``strategies``, which its condition flags set (``--core-only``, ``--icl K``,
    ``--guide SPEC``, ``--strategies FILE``). The core call options (cache, retries, timeout,
    preflight, budget) are :class:`~gcop_env.cores.options.CoreCallOptions`, shared with the trainers.
    """

    task: str = option("GSM8K", "registered task (see `gcop tasks`)")
    split: str = option("test", "split to evaluate")
    data_files: str | None = option(None, "local data file or dir instead of the hub")
    limit: int | None = option(None, "only the first N problems", lo=1)
    core: str = option(DEFAULT_CORE, "core spec")
    out: str = option("runs/eval", "the run dir (re-use it to resume)", metavar="DIR", required=True)
    kind: str = option("core-only", "the condition: core-only | icl | guided | strategies", choices=KINDS, cli=False)
    name: str | None = option(None, "the condition's label in reports (default: derived from kind, guide, recipe)")
    icl_k: int | None = option(None, "ICL: the K nearest training (problem, solution) pairs in the core's prompt",
                               lo=1, cli=False)
    embedder: str = option("default", "--icl: 'default' (offline PyPI model) or a sentence-transformers name/path")
    guide: str | None = option(None, "guided generation: hf:PATH[?gguf_file=NAME], openai:MODEL@URL, or vllm:PATH",
                               cli=False)
    strategies: str | None = option(None, "score pre-written guide outputs: JSONL rows {task_id, guide_output[, "
                                          "sample]}", cli=False)
    recipe: str | None = option(None, "the guide's training recipe for reports (default: recorded in the guide's dir "
                                      "by gcop sft/grpo, else None; external for servers and --strategies)")
    guide_samples: int = option(1, "N strategies per problem (α̂ averages over them)", lo=1, group="guide")
    guide_temperature: float = option(0.6, "the guide's temperature (the paper's)", lo=0, group="guide")
    guide_top_p: float = option(0.95, "the guide's top-p (the paper's)", lo=0, hi=1, lo_open=True, group="guide")
    guide_max_tokens: int = option(1024, "the guide's reply budget", lo=1, group="guide")
    guide_prefill: str = option("", "local guides: text the reply is forced to start with (e.g. '<think>')",
                                group="guide")
    guide_stop: str | None = option(DEFAULT_GUIDE_STOP, "local guides: stop after this string ('' for none)",
                                    group="guide")
    guide_price: tuple[float, float] | None = option(
        None, "guide price in USD per million input,output tokens (default: the price table for API models; 0 for "
              "local guides, and the summary says so)", parse=_price_pair, metavar="IN,OUT", group="guide")
    guide_batch_size: int = option(8, "local guides: prompts per generate() (one batch generated ahead of the core "
                                      "calls)", lo=1, group="guide")
    core_temperature: float = option(0.0, "the core's temperature", lo=0, group="core")
    core_top_p: float = option(1.0, "the core's top-p", lo=0, hi=1, lo_open=True, group="core")
    core_max_tokens: int = option(1024, "the core's reply budget", lo=1, group="core")
    max_strategy_chars: int = option(DEFAULT_MAX_STRATEGY_CHARS, "strategy length budget (structure check)", lo=1,
                                     group="core")
    judge: str | None = option(None, "guided/strategies: also rate each strategy with this judge (usefulness, leak; "
                                     "its cost is the judge role). Default: off", metavar="SPEC", group="core")
    judge_max_tokens: int = option(256, "the judge's reply budget", lo=1, group="core")
    lam: float = option(0.0, "λ of the net utility V − λ·T (T: total USD per problem)", lo=0, group="run")
    workers: int = option(8, "calls in flight: one job per problem and sample, the next started as each finishes",
                          lo=1, group="run")
    validator_options: dict = option({}, "JSON kwargs for the validator, e.g. '{\"sandbox\": \"docker\"}'")
    preset: str | None = option(None, "'paper': the paper's split and sampling (guide 0.6/0.95, 2048 tokens; core "
                                      "greedy, 1024 tokens; all problems); flags given here override it",
                                choices=tuple(sorted(PRESETS)))
    max_turns: int = option(1, "guided: turns per episode; after a failed turn the guide sees the core's answer and "
                               "the validator's feedback and revises (every turn is recorded; the summary gives the "
                               "solve rate and cumulative cost after each turn)", lo=1, group="multi-turn")
    core_history: str = option("fresh", "multi-turn: fresh (the core answers each turn anew) or previous (it also "
                                        "sees its previous attempt and the feedback)", choices=("fresh", "previous"),
                               group="multi-turn")

    def __post_init__(self) -> None:
        validate_fields(self)
        need = {"icl": ("icl_k", self.icl_k), "guided": ("guide", self.guide), "strategies": ("strategies", self.strategies)}
        if self.kind in need and not need[self.kind][1]:
            raise EvalInputError(f"condition {self.kind} needs {need[self.kind][0]}")
        if self.guide_price is not None:
            price = tuple(self.guide_price)
            try:
                if len(price) != 2:
                    raise ValueError(f"--guide-price needs IN,OUT (USD per million tokens), got {self.guide_price}")
                self.guide_price = (check_number("--guide-price IN", price[0], 0),  # type: ignore[assignment]
                                    check_number("--guide-price OUT", price[1], 0))
            except ValueError as exc:
                raise EvalInputError(str(exc)) from None
        if self.judge and self.kind not in ("guided", "strategies"):
            raise EvalInputError(f"--judge rates strategies; the {self.kind} condition has none")
        if self.max_turns > 1 and self.kind != "guided":
            raise EvalInputError(f"--max-turns {self.max_turns}: only a guide (--guide) revises after a failed turn; "
                                 f"the {self.kind} condition has one turn")
        try:  # a bad spec fails here, before anything is loaded or called
            parse_core_spec(self.core)
            if self.judge:
                parse_core_spec(self.judge)
            if self.kind == "guided":
                parse_guide_spec(self.guide)
        except ValueError as exc:
            raise EvalInputError(str(exc)) from None

    def identity(self) -> dict[str, Any]:
        """What makes two runs the same condition (a run dir resumes only with the same identity).

        Left out: ``limit`` (raising it extends a run), ``lam`` (applied in the summary only),
        ``workers`` / batch size, retries and timeouts, the preflight and the budget, ``name``, ``out``.
        """
        ident = {k: v for k, v in dataclasses.asdict(self).items() if k not in LOOSE and not self._single_turn_default(k)}
        if self.guide_price is not None:
            ident["guide_price"] = list(self.guide_price)
        if self.kind == "guided" and self.guide:  # vllm: memory options do not change the condition
            ident["guide"] = guide_identity(self.guide)
        if self.strategies:
            ident["strategies_sha256"] = hashlib.sha256(Path(self.strategies).read_bytes()).hexdigest()
        return ident

    def resolved(self) -> dict[str, Any]:
        """The config as ``summary.json`` records it (what the run's numbers depend on; not the
        preflight or the budget, which a resumed run may change)."""
        resolved = {k: v for k, v in dataclasses.asdict(self).items()
                    if k not in RUN_ONLY and not self._single_turn_default(k)}
        if self.guide_price is not None:
            resolved["guide_price"] = list(self.guide_price)
        return resolved

    def _single_turn_default(self, name: str) -> bool:
        """A multi-turn field of a single-turn run: left out of the identity and the summary, so that a
        run dir of an earlier version (which had no such field) resumes and reads the same."""
        return name in MULTI_TURN_FIELDS and self.max_turns == 1


MULTI_TURN_FIELDS = ("max_turns", "core_history")
# Fields that do not change what a finished row means (a run dir resumes across them).
RUN_ONLY = ("preflight", "max_usd", "max_total_tokens")
LOOSE = frozenset({"limit", "lam", "workers", "guide_batch_size", "max_retries", "retry_backoff_s", "timeout_s",
                   "name", "out", "cache", "preset", *RUN_ONLY})
