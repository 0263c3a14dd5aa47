"""The environment's shaped reward in a TRL GRPO script of your own.

    python examples/trl_grpo.py      # offline default: the local Gemma 3 270M as guide and core
    python examples/trl_grpo.py --guide Qwen/Qwen3-0.6B --core anthropic:claude-haiku-4-5-20251001

``ShapedReward`` wraps the env's scorer as a TRL reward function: it scores a batch of guide
outputs concurrently, returns None for infrastructure failures and logs each reward term as its
own metric; ``AsyncShapedReward`` makes it an ``async def`` that TRL awaits on its event loop
(at most ``max_inflight`` steps in flight, beside any other async reward function); ``InfraAwareGRPOTrainer`` (TRL's ``GRPOTrainer``) drops the None-rewarded completions
from the loss. At the end the script prints the ``gcop/*`` and reward metrics of the last logged
training steps, and the run's totals. ``examples/trl_environment.py`` does the same through TRL's
``environment_factory``. ``gcop grpo`` is this script with every knob exposed.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch
from trl import GRPOConfig

import gcop_env  # noqa: F401 - registers the environments
from gcop_env.cores.local import default_core, default_guide
from gcop_env.trainers.async_reward import AsyncShapedReward
from gcop_env.trainers.grpo import METRIC_PREFIX, ShapedReward, grpo_dataset
from gcop_env.trainers.grpo_trainer import InfraAwareGRPOTrainer


def main(argv: list[str] | None = None) -> InfraAwareGRPOTrainer:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guide", default=None,
                        help="a transformers model (default: Qwen/Qwen3-0.6B from the hub, else the local Gemma 3 270M)")
    parser.add_argument("--core", default=None,
                        help="core spec (default: Claude Haiku 4.5 with ANTHROPIC_API_KEY, else the local Gemma)")
    parser.add_argument("--env", default="GCoP-GSM8K-v0")
    parser.add_argument("--data-files", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--output-dir", default="runs/trl_grpo")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--max-completion-length", type=int, default=2048)
    args = parser.parse_args(argv)
    args.guide = args.guide or default_guide()  # offline: gcop models prepare-guide
    args.core = args.core or default_core()

    env = gym.make(args.env, core=args.core, split=args.split, data_files=args.data_files, limit=args.limit)
    problems = env.unwrapped.problems
    reward = AsyncShapedReward(ShapedReward(env.unwrapped.scorer, problems), max_inflight=16)
    config = GRPOConfig(output_dir=args.output_dir, max_steps=args.max_steps, num_generations=args.num_generations,
                        per_device_train_batch_size=args.num_generations,
                        max_completion_length=args.max_completion_length, beta=0.004, learning_rate=1e-6,
                        weight_decay=0.1, logging_steps=1, report_to="none", use_cpu=not torch.cuda.is_available())
    trainer = InfraAwareGRPOTrainer(model=args.guide, reward_funcs=[reward], args=config,
                                    train_dataset=grpo_dataset(problems))
    trainer.train()
    # log_history ends with the run summary (train_runtime, ...); the metrics are in the step logs
    step_logs = [entry for entry in trainer.state.log_history if any(k.startswith(METRIC_PREFIX) for k in entry)]
    for entry in step_logs[-3:]:
        metrics = {k: round(v, 4) for k, v in entry.items() if k.startswith((METRIC_PREFIX, "reward"))}
        print(f"step {entry['step']}: {metrics}")
    totals = reward.totals
    print(f"run: {totals.completions} completions scored, {totals.infra_errors} infrastructure errors left out, "
          f"${totals.spent_usd:.4f} spent; means {({k: round(v, 4) for k, v in totals.means().items()})}")
    env.close()
    return trainer


if __name__ == "__main__":
    main()
