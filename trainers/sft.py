"""Strategy SFT: fine-tune the guide on the accepted (problem, strategy) pairs of a curation run.

Each accepted row becomes one conversational prompt/completion example:

    prompt     = [user: guide_prompt(question)]       (the environment's observation)
    completion = [assistant: <think>…</think><strategy>…</strategy>]

TRL tokenizes the prompt alone and prompt + completion with the model's chat template and masks
the prompt tokens out of the loss (``completion_only_loss``), so the loss is on the guide's output
only. This needs no ``{% generation %}`` markers in the template. A tokenizer without any chat
template gets a plain ChatML one (saved with the model).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from gcop_env.step.prompts import guide_prompt
from gcop_env.recipe import Recipe, read_recipe, write_recipe
from gcop_env.trainers.config import SFTRunConfig, write_config
from gcop_env.trainers.training import (RUN_CONFIG, TrainSummary, common_trainer_args, last_checkpoint, load_guide,
                                        save_final_model)
from gcop_env.utils.files import read_jsonl_rows, write_json

log = logging.getLogger(__name__)

def sft_examples(corpus: str | Path, min_q_hat: float | None = None) -> list[dict[str, Any]]:
    """Conversational prompt/completion examples from the accepted rows of a curation JSONL."""
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
                         "problem_id": row["problem_id"]})
    if not examples:
        raise ValueError(f"corpus {corpus} has {len(rows)} rows but no accepted strategy to train on")
    return examples


def build_sft_trainer(config: SFTRunConfig) -> Any:
    """The configured TRL ``SFTTrainer`` (not yet trained)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    examples = sft_examples(config.corpus, config.min_q_hat)
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
                 "last_loss": losses[-1] if losses else None})
    write_json(Path(config.output_dir) / "summary.json", summary.as_dict())
    return summary


