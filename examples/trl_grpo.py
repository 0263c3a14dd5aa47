"""The environment's shaped reward in a TRL GRPO script of your own.

    python examples/trl_grpo.py --guide Qwen/Qwen3-0.6B --core anthropic:claude-3-5-haiku-20241022

``ShapedReward`` wraps the env's scorer as a TRL reward function: it scores a batch of guide
outputs concurrently, returns None for infrastructure failures and logs each reward term as its
own metric; ``InfraAwareGRPOTrainer`` (TRL's ``GRPOTrainer``) drops the None-rewarded completions
from the loss. ``gcop grpo`` is this script with every knob exposed.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch
from trl import GRPOConfig

import gcop_env  # noqa: F401 - registers the environments
from gcop_env.trainers.grpo import ShapedReward, grpo_dataset
from gcop_env.trainers.grpo_trainer import InfraAwareGRPOTrainer


def main(argv: list[str] | None = None) -> InfraAwareGRPOTrainer:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guide", default="Qwen/Qwen3-0.6B")
    parser.add_argument("--core", default="anthropic:claude-3-5-haiku-20241022")
    parser.add_argument("--env", default="GCoP-GSM8K-v0")
    parser.add_argument("--data-files", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--output-dir", default="runs/trl_grpo")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=2048)
    args = parser.parse_args(argv)

    env = gym.make(args.env, core=args.core, split=args.split, data_files=args.data_files, limit=args.limit)
    problems = env.unwrapped.problems
    reward = ShapedReward(env.unwrapped.scorer, problems)
    config = GRPOConfig(output_dir=args.output_dir, max_steps=args.max_steps, num_generations=args.num_generations,
                        per_device_train_batch_size=args.num_generations,
                        max_completion_length=args.max_completion_length, beta=0.004, learning_rate=1e-6,
                        weight_decay=0.1, logging_steps=1, report_to="none", use_cpu=not torch.cuda.is_available())
    trainer = InfraAwareGRPOTrainer(model=args.guide, reward_funcs=[reward], args=config,
                                    train_dataset=grpo_dataset(problems))
    trainer.train()
    print({k: v for k, v in trainer.state.log_history[-1].items() if k.startswith(("gcop/", "reward"))})
    env.close()
    return trainer


if __name__ == "__main__":
    main()
