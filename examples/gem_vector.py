"""GEM: a vector of GCoP environments through ``gem.make_vec``, one guide step per episode.

    python examples/gem_vector.py --core anthropic:claude-haiku-4-5-20251001 --num-envs 4 --steps 3

Each sub-env gets GEM's ``seed + i`` (its own problem order and core sample stream). GEM resets a
finished episode in the same step and keeps only the reset's info, so the step's reward terms are
read from ``info["final_info"]``; infra-failed steps are retried, then masked and left out here.
A fixed guide reply stands in for the policy.
"""

from __future__ import annotations

import argparse

from gcop_env.cores.local import default_core
from gcop_env.adapters.gem import register_gem_envs  # first: it imports GEM without GEM's INFO logging

import gem  # noqa: E402

GUIDE = ("<think>Find the quantities and how they combine.</think>\n"
         "<strategy>1. List every quantity. 2. Decide which operations link them. 3. Compute step by step.</strategy>")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--core", default=None,
                        help="core spec (default: Claude Haiku 4.5 with ANTHROPIC_API_KEY, else the local Gemma)")
    parser.add_argument("--task", default="GSM8K")
    parser.add_argument("--data-files", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="first N problems only")
    parser.add_argument("--num-envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.core = args.core or default_core()

    register_gem_envs()
    envs = gem.make_vec([f"gcop:{args.task}"] * args.num_envs, seed=args.seed, core=args.core, split=args.split,
                        data_files=args.data_files, limit=args.limit)
    envs.reset()
    scored, masked, task_rewards = 0, 0, []
    for step in range(args.steps):
        _, rewards, _, _, infos = envs.step([GUIDE] * args.num_envs)
        for reward, info in zip(rewards, infos):
            final = info["final_info"]  # the step's info; `info` itself is the next episode's reset
            if final.get("infra_masked"):
                masked += 1
                continue
            scored += 1
            task_rewards.append(final["reward_components"]["task_reward"])
        print(f"step {step}: rewards {[round(float(r), 3) for r in rewards]}")
    summary = {"scored": scored, "infra_masked": masked,
               "task_reward": sum(task_rewards) / len(task_rewards) if task_rewards else float("nan")}
    print(f"scored {scored} episodes, {masked} masked for infrastructure; mean task reward {summary['task_reward']:.3f}")
    for env in envs.envs:
        env.close()
    return summary


if __name__ == "__main__":
    main()
