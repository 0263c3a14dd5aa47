"""SkyRL-gym: a GCoP environment made the way SkyRL's generator makes one per trajectory.

    python examples/skyrl_env.py --core anthropic:claude-haiku-4-5-20251001 --limit 4

SkyRL reads ``env_class`` and the extras (here ``task_id``) from each dataset row and calls
``skyrl_gym.make(env_class, env_config=..., extras=...)``, ``init(prompt)`` and ``step(reply)``.
In a SkyRL training config the same keys go under ``environment.skyrl_gym.gcop``. A fixed guide
reply stands in for the policy; the script prints each episode's reward and SkyRL's aggregated
metrics.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import skyrl_gym
from omegaconf import DictConfig

import gcop_env  # noqa: F401 - registers the environments
from gcop_env.cores.local import default_core
from gcop_env.adapters.skyrl import SkyRLGuideEnv, register_skyrl_env, skyrl_dataset_rows

GUIDE = ("<think>Find the quantities and how they combine.</think>\n"
         "<strategy>1. List every quantity. 2. Decide which operations link them. 3. Compute step by step.</strategy>")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--core", default=None,
                        help="core spec (default: Claude Haiku 4.5 with ANTHROPIC_API_KEY, else the local Gemma)")
    parser.add_argument("--env", default="GCoP-GSM8K-v0")
    parser.add_argument("--data-files", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=4)
    args = parser.parse_args(argv)
    args.core = args.core or default_core()

    env_class = register_skyrl_env()
    env_config = DictConfig({"env_id": args.env, "core": args.core, "split": args.split,
                             "data_files": args.data_files, "limit": args.limit})
    rows = skyrl_dataset_rows(gym.make(args.env, core=args.core, split=args.split, data_files=args.data_files,
                                       limit=args.limit))
    metrics = []
    for row in rows:  # what SkyRL's generator does for each trajectory
        env = skyrl_gym.make(row["env_class"], env_config=env_config, extras={"task_id": row["task_id"]})
        prompt, _ = env.init(row["prompt"])
        out = env.step(GUIDE)
        metrics.append(env.get_metrics())
        print(f"{row['task_id']}: reward {out['reward']:.3f} done={out['done']} "
              f"infra_error={metrics[-1]['infra_error']:.0f}")
        env.close()
    aggregated = SkyRLGuideEnv.aggregate_metrics(metrics)
    print("aggregated:", {k: round(v, 4) for k, v in aggregated.items()})
    assert env_class == rows[0]["env_class"]
    return aggregated


if __name__ == "__main__":
    main()
