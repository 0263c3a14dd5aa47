"""TorchRL: a GCoP env as a TorchRL env, rolled out with a policy; the infra flag rides in the TensorDict.

    python examples/torchrl_env.py --steps 4        # offline default core: the local Gemma 3 270M

``make_torchrl_env`` wraps an episode of the public scoring call in TorchRL's ``GymWrapper`` (the
text spaces become ``NonTensor`` specs) and reads the step's info into the TensorDict:
``("next", "reward_is_task_outcome")`` is False where an API or the sandbox failed (drop those
steps), and every reward term is there (``task_reward``, ``judge_score``, ``shaped``...). A fixed
guide reply stands in for the policy.
"""

from __future__ import annotations

import argparse

from gcop_env.adapters.torchrl import make_torchrl_env
from gcop_env.cores.local import default_core

GUIDE = ("<think>Find the quantities and how they combine.</think>\n"
         "<strategy>1. List every quantity. 2. Decide which operations link them. 3. Compute step by step.</strategy>")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--core", default=None, help="core spec (default: Claude Haiku 4.5 with ANTHROPIC_API_KEY, "
                                                     "else the local Gemma)")
    parser.add_argument("--env", default="GCoP-GSM8K-v0")
    parser.add_argument("--data-files", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)
    env = make_torchrl_env(args.env, core=args.core or default_core(), split=args.split, data_files=args.data_files,
                           limit=args.limit, gamma=0.0)

    def policy(td):
        return td.set_non_tensor("action", GUIDE)

    rollout = env.rollout(args.steps, policy=policy, break_when_any_done=False)
    env.close()
    keep = rollout["next", "reward_is_task_outcome"].flatten()
    rewards = rollout["next", "reward"].flatten()
    for i in range(args.steps):
        print(f"step {i}: {rollout['next', 'task_id'][i]} reward {rewards[i].item():.3f} "
              f"status {rollout['next', 'status'][i]} task_reward {rollout['next', 'task_reward'][i].item():.1f}")
    scored = rewards[keep]
    summary = {"steps": args.steps, "infra": int((~keep).sum()),
               "mean_reward": scored.mean().item() if len(scored) else float("nan")}
    print(f"{summary['steps']} steps, {summary['infra']} infrastructure failures (left out), "
          f"mean reward {summary['mean_reward']:.3f}")
    return summary


if __name__ == "__main__":
    main()
