"""What the SFT and GRPO trainers share: loading the guide (LoRA, weight dtype, chat template),
the TRL arguments, the device, checkpoints, the final model, the stop callback and the summary."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from gcop_env.trainers.config import TrainRunOptions

log = logging.getLogger(__name__)

RUN_CONFIG = "run_config.json"  # the resolved config (the model's own config.json sits beside it)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class TrainSummary:
    """What a training run did: steps, losses or rewards, spend, where the model went."""

    command: str
    output_dir: str
    steps: int
    examples: int
    train_runtime_s: float
    metrics: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.metrics.items()
                          if not isinstance(v, (dict, list)))
        return [f"{self.command}: {self.steps} steps on {self.examples} examples in {self.train_runtime_s:.1f}s",
                shown, f"model and summary: {self.output_dir}"]


def guide_weights_dtype(options: TrainRunOptions, bf16: bool) -> Any:
    """The dtype the guide's weights are loaded (and, unless frozen, updated) in.

    bf16 *weights* lose small updates: AdamW's step at lr 1e-6 is about 1e-6 per weight, while
    bf16 resolves about 1/256 of a weight, so nearly every update rounds back to the old value.
    So by default the trained weights are float32 (master weights) and bf16 is a compute dtype
    (autocast, the Trainer's ``bf16=True``). A LoRA run trains only the adapters, which PEFT keeps
    in float32, so its frozen base may stay in bf16 and save the memory.
    """
    import torch

    choice = getattr(options, "weights_dtype", "auto")
    if choice == "bfloat16" or (choice == "auto" and options.lora and bf16):
        return torch.bfloat16
    return torch.float32


def load_guide(path: str, options: TrainRunOptions, bf16: bool = False) -> tuple[Any, Any, Any]:
    """(model, tokenizer, peft_config or None) for a guide, with a chat template and a pad token.

    ``bf16`` is whether the run computes in bf16; the weights' dtype is :func:`guide_weights_dtype`.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if not tokenizer.chat_template:
        log.warning("%s has no chat template; using ChatML", path)
        tokenizer.chat_template = CHATML_TEMPLATE
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = guide_weights_dtype(options, bf16)
    if str(dtype) == "torch.bfloat16" and not options.lora:
        log.warning("training %s with bfloat16 weights: updates below bf16's resolution are lost "
                    "(most of them at lr 1e-6); weights_dtype=auto keeps float32 master weights", path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    peft_config = None
    if options.lora:
        from peft import LoraConfig

        targets: Any = options.lora_target_modules
        if targets != "all-linear":
            targets = [t.strip() for t in targets.split(",") if t.strip()]
        peft_config = LoraConfig(r=options.lora_r, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout,
                                 target_modules=targets, task_type="CAUSAL_LM")
    return model, tokenizer, peft_config


def common_trainer_args(config: TrainRunOptions) -> dict[str, Any]:
    """The TRL/transformers arguments every trainer here shares."""
    use_cpu, bf16 = resolve_device(config.use_cpu, config.bf16)
    args = dict(output_dir=config.output_dir, max_steps=config.max_steps, num_train_epochs=config.num_train_epochs,
                per_device_train_batch_size=config.per_device_train_batch_size,
                gradient_accumulation_steps=config.gradient_accumulation_steps,
                logging_steps=config.logging_steps, save_steps=config.save_steps,
                save_total_limit=config.save_total_limit, report_to=_report_to(config.report_to), seed=config.seed,
                bf16=bf16, use_cpu=use_cpu)
    if config.gradient_checkpointing:
        args["gradient_checkpointing"] = True
    return args


def last_checkpoint(output_dir: str) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir``: a re-run continues from it."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None


def save_final_model(trainer: Any, tokenizer: Any, output_dir: str, merged_lora: bool) -> Any:
    """Save the trained guide as a plain model directory (a LoRA adapter is merged in); returns it.

    Under ``accelerate launch`` only the main process writes. A full model goes through
    ``trainer.save_model``, which gathers the weights of a sharded run (DeepSpeed ZeRO-3, FSDP)
    before writing; ``model.save_pretrained`` in every process would write each rank's shard over
    the others. (Merging a LoRA adapter into a sharded model is not supported: train LoRA without
    ZeRO-3/FSDP, or save the adapter and merge it afterwards.)
    """
    model = trainer.model
    accelerator = getattr(trainer, "accelerator", None)
    is_main = accelerator is None or accelerator.is_main_process
    if merged_lora and hasattr(model, "merge_and_unload"):
        if is_main:
            model.save_pretrained(Path(output_dir) / "adapter")
        model = model.merge_and_unload()
        if is_main:
            model.save_pretrained(output_dir)
    else:
        trainer.save_model(output_dir)
    if is_main:
        tokenizer.save_pretrained(output_dir)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return model


def _report_to(value: str) -> Any:
    items = [v.strip() for v in value.split(",") if v.strip()]
    return "none" if not items or items == ["none"] else items


def resolve_device(use_cpu: bool | None, bf16: bool | None) -> tuple[bool, bool]:
    """(use_cpu, bf16) with the unset ones decided by the hardware."""
    import torch

    has_gpu = torch.cuda.is_available()
    cpu = (not has_gpu) if use_cpu is None else use_cpu
    bf = (not cpu and torch.cuda.is_bf16_supported()) if bf16 is None else bf16
    return cpu, bf


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def stop_callback(stop: Any) -> Any:
    """A ``transformers`` callback that ends training after the current step once ``stop`` is set,
    saving a checkpoint first, so a Ctrl-C'd run resumes from where it stopped."""
    from transformers import TrainerCallback

    class StopOnRequest(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if stop.requested:
                control.should_save = True
                control.should_training_stop = True
            return control

    return StopOnRequest()
