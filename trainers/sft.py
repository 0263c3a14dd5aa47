"""Strategy SFT: fine-tune the guide on the accepted (problem, strategy) pairs of a curation run.

Each accepted row becomes one conversational prompt/completion example:

    prompt     = [user: guide_prompt(question)]       (the environment's observation)
    completion = [assistant: <think>…</think><strategy>…</strategy>]

TRL tokenizes the prompt alone and prompt + completion with the model's chat template and masks
the prompt tokens out of the loss (``completion_only_loss``), so the loss is on the guide's output
only. This needs no ``{% generation %}`` markers in the template. A tokenizer without any chat
template gets a plain ChatML one (saved with the model).

Revision turns (multi-turn episodes, issue 20; ``revision_turns``, on by default): a row accepted
only after refinement also becomes a *revision example*, the multi-turn episode in which the
teacher played the guide (:func:`revision_example`):

    prompt     = [user: guide_prompt(question), assistant: failed reply 1,
                  user: revision observation 2 (previous strategy, the core's failing answer, the
                        env's feedback), …]
    completion = [assistant: the accepted strategy]

The observations are the env's own (:func:`gcop_env.step.episode.revision_observation`, with
``max_turns`` in "attempt t of N"), so the guide learns to revise from what it will be shown; the
loss is on the accepted revision only (the failed replies are context). A chain longer than
``max_turns``, or with a round whose feedback was not recorded (a strategy that leaked the answer,
whose core runs were skipped; a row from a curation before issue 20), makes no revision example.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from gcop_env.step.episode import DEFAULT_MAX_TURNS, revision_observation
from gcop_env.step.prompts import guide_prompt
from gcop_env.step.strategy import parse_guide_output
from gcop_env.recipe import Recipe, read_recipe, write_recipe
from gcop_env.trainers.config import SFTRunConfig, write_config
from gcop_env.trainers.training import (RUN_CONFIG, TrainSummary, common_trainer_args, last_checkpoint, load_guide,
                                        save_final_model)
from gcop_env.utils.files import read_jsonl_rows, write_json

log = logging.getLogger(__name__)

def sft_examples(corpus: str | Path, min_q_hat: float | None = None, revision_turns: bool = False,
                 max_turns: int = DEFAULT_MAX_TURNS) -> list[dict[str, Any]]:
    """Conversational prompt/completion examples from the accepted rows of a curation JSONL.

    ``revision_turns``: also one revision example per row accepted after refinement (see the module doc).
    """
    rows = read_jsonl_rows(corpus)
    if not rows:
        raise ValueError(f"corpus {corpus} has no rows; run `gcop curate --out {corpus}` first")
    examples = []
    for row in rows:
        if not row.get("accepted") or not row.get("guide_output"):
            continue
        if min_q_hat is not None and row.get("q_hat", 0.0) < min_q_hat:
            continue
        examples.append({"prompt": [{"role": "user", "content": guide_prompt(row["question"])}],
                         "completion": [{"role": "assistant", "content": row["guide_output"]}],
                         "problem_id": row["problem_id"], "turns": 1})
        revision = revision_example(row, max_turns) if revision_turns else None
        if revision is not None:
            examples.append(revision)
    if not examples:
        raise ValueError(f"corpus {corpus} has {len(rows)} rows but no accepted strategy to train on")
    return examples


def revision_example(row: dict[str, Any], max_turns: int = DEFAULT_MAX_TURNS) -> dict[str, Any] | None:
    """The multi-turn example of a row accepted after refinement, or None (see the module doc)."""
    if not row.get("accepted") or row.get("accepted_from") != "refinement" or not row.get("guide_output"):
        return None
    rounds = row.get("rounds") or []
    failed = rounds[:-1]
    if not failed or len(rounds) > max_turns:
        return None
    if any(not isinstance(r, dict) or "guide_output" not in r or "feedback" not in r for r in failed):
        return None
    question = row["question"]
    messages = [{"role": "user", "content": guide_prompt(question)}]
    for turn, record in enumerate(failed, start=2):
        parsed = parse_guide_output(record["guide_output"])
        scored = parsed.structure_ok and "core_output" in record
        messages.append({"role": "assistant", "content": record["guide_output"]})
        messages.append({"role": "user", "content": revision_observation(
            question, turn, max_turns, record["feedback"], record["guide_output"],
            parsed.strategy if scored else None, record.get("core_output"))})
    return {"prompt": messages, "completion": [{"role": "assistant", "content": row["guide_output"]}],
            "problem_id": row["problem_id"], "turns": len(rounds)}


def build_sft_trainer(config: SFTRunConfig) -> Any:
    """The configured TRL ``SFTTrainer`` (not yet trained)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    examples = sft_examples(config.corpus, config.min_q_hat, revision_turns=config.revision_turns,
                            max_turns=config.max_turns)
    args = common_trainer_args(config)
    model, tokenizer, peft_config = load_guide(config.guide, config, bf16=args["bf16"])
    sft_args = SFTConfig(**args, learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                         max_length=config.max_length, completion_only_loss=True, assistant_only_loss=False,
                         **config.trainer_args)
    return SFTTrainer(model=model, args=sft_args, train_dataset=Dataset.from_list(examples),
                      processing_class=tokenizer, peft_config=peft_config)


def train_sft(config: SFTRunConfig) -> TrainSummary:
    """Run SFT as configured. Writes ``run_config.json``, checkpoints, the model and ``summary.json``."""
    write_config(config, Path(config.output_dir) / RUN_CONFIG)
    base_recipe = read_recipe(config.guide)  # before training: a broken record fails now, not after it
    trainer = build_sft_trainer(config)
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=last_checkpoint(config.output_dir))
    save_final_model(trainer, trainer.processing_class, config.output_dir, merged_lora=config.lora)
    write_recipe(config.output_dir, Recipe.SFT, command="sft", base_guide=config.guide, base_recipe=base_recipe,
                 corpus=config.corpus)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    summary = TrainSummary(
        command="sft", output_dir=config.output_dir, steps=trainer.state.global_step,
        examples=len(trainer.train_dataset), train_runtime_s=time.monotonic() - started,
        metrics={"train_loss": result.training_loss, "first_loss": losses[0] if losses else None,
                 "last_loss": losses[-1] if losses else None,
                 "revision_examples": sum(1 for e in trainer.train_dataset if e.get("turns", 1) > 1)})
    write_json(Path(config.output_dir) / "summary.json", summary.as_dict())
    return summary


