"""GRPO through TRL's ``environment_factory``: each rollout resets a GCoP environment from its dataset row.

    python examples/trl_environment.py      # offline default: the local Gemma 3 270M as guide and core
    python examples/trl_environment.py --guide Qwen/Qwen3-0.6B --core anthropic:claude-haiku-4-5-20251001

:class:`gcop_env.adapters.trl.TRLAdapter` gives the dataset (guide prompt + ``task_id``), the
environment factory (``reset(**row)`` picks the row's problem, so a GRPO group stays on one problem;
no method is offered as a tool) and the reward function that scores the batch through the env.
TRL takes ``environment_factory`` only with a chat template that renders tool calls (Qwen3's does);
with a plain template the adapter gives the reward function alone, which trains the same reward.
Prints the ``gcop/*`` metrics of the last logged steps and the run's totals.
"""

from __future__ import annotations

import argparse
import os

import gymnasium as gym
import torch
from transformers import AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

import gcop_env  # noqa: F401 - registers the environments
from gcop_env.cores.local import default_core, default_guide
from gcop_env.adapters.trl import TRLAdapter
from gcop_env.trainers.grpo import METRIC_PREFIX


def main(argv: list[str] | None = None) -> GRPOTrainer:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guide", default=None,
                        help="a transformers model (default: Qwen/Qwen3-0.6B from the hub, else the local Gemma 3 270M)")
    parser.add_argument("--core", default=None,
                        help="core spec (default: Claude Haiku 4.5 with ANTHROPIC_API_KEY, else the local Gemma)")
    parser.add_argument("--env", default="GCoP-GSM8K-v0")
    parser.add_argument("--data-files", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--core-temperature", type=float, default=0.0)
    parser.add_argument("--output-dir", default="runs/trl_environment")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=2048)
    args = parser.parse_args(argv)
    args.guide = args.guide or default_guide(tools=True)  # offline: gcop models prepare-guide --tools
    args.core = args.core or default_core()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory is experimental in TRL

    env = gym.make(args.env, core=args.core, split=args.split, data_files=args.data_files, limit=args.limit,
                   temperature=args.core_temperature)
    adapter = TRLAdapter(env)
    tokenizer = AutoTokenizer.from_pretrained(args.guide)
    trainer_kwargs = adapter.trainer_kwargs(tokenizer)
    print("TRL path:", "environment_factory + reward function" if "environment_factory" in trainer_kwargs
          else "reward function (the chat template cannot render tool calls)")
    config = GRPOConfig(output_dir=args.output_dir, max_steps=args.max_steps, num_generations=args.num_generations,
                        per_device_train_batch_size=args.num_generations,
                        max_completion_length=args.max_completion_length, beta=0.004, learning_rate=1e-6,
                        weight_decay=0.1, logging_steps=1, report_to="none", use_cpu=not torch.cuda.is_available())
    trainer = GRPOTrainer(model=args.guide, args=config, processing_class=tokenizer, train_dataset=adapter.dataset(),
                          **trainer_kwargs)
    trainer.train()
    step_logs = [entry for entry in trainer.state.log_history if any(k.startswith(METRIC_PREFIX) for k in entry)]
    for entry in step_logs[-3:]:
        metrics = {k: round(v, 4) for k, v in entry.items() if k.startswith((METRIC_PREFIX, "reward"))}
        print(f"step {entry['step']}: {metrics}")
    totals = adapter.reward.totals
    print(f"run: {totals.completions} completions scored, {totals.infra_errors} infrastructure errors left out, "
          f"${totals.spent_usd:.4f} spent; means {({k: round(v, 4) for k, v in totals.means().items()})}")
    env.close()
    return trainer


if __name__ == "__main__":
    main()
