"""The environment from a plain training loop: a few lines of REINFORCE in torch, no TRL.

    python examples/reinforce_loop.py      # offline default: the local Gemma 3 270M as guide and core
    python examples/reinforce_loop.py --guide Qwen/Qwen3-0.6B --core anthropic:claude-haiku-4-5-20251001

Each episode: reset → the guide samples its output → env.step scores it → one policy-gradient
step on log p(output) weighted by (reward − running baseline). Steps whose core call failed for
infrastructure reasons (``info["reward_is_task_outcome"]`` False) are skipped, not learned from.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import gcop_env  # noqa: F401 - registers the environments
from gcop_env.cores.local import default_core, default_guide


def main(argv: list[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guide", default=None,
                        help="a transformers model (default: Qwen/Qwen3-0.6B from the hub, else the local Gemma 3 270M)")
    parser.add_argument("--core", default=None,
                        help="core spec (default: Claude Haiku 4.5 with ANTHROPIC_API_KEY, else the local Gemma)")
    parser.add_argument("--env", default="GCoP-GSM8K-v0")
    parser.add_argument("--data-files", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N problems")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-5)
    args = parser.parse_args(argv)
    args.guide = args.guide or default_guide()  # offline: gcop models prepare-guide
    args.core = args.core or default_core()

    env = gym.make(args.env, core=args.core, split=args.split, data_files=args.data_files, limit=args.limit,
                   gamma=0.0)
    tokenizer = AutoTokenizer.from_pretrained(args.guide)
    model = AutoModelForCausalLM.from_pretrained(args.guide)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    baseline, rewards = 0.0, []
    for episode in range(args.episodes):
        observation, _ = env.reset(seed=episode)
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": observation}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        n_prompt = prompt["input_ids"].shape[1]
        with torch.no_grad():
            sequence = model.generate(**prompt, do_sample=True, max_new_tokens=args.max_new_tokens,
                                      pad_token_id=tokenizer.pad_token_id)
        output_ids = sequence[0, n_prompt:]
        guide_text = tokenizer.decode(output_ids, skip_special_tokens=True)
        _, reward, _, _, info = env.step(guide_text)
        if not info["reward_is_task_outcome"]:
            print(f"episode {episode}: infrastructure error, skipped: {info['error']}")
            continue
        logits = model(sequence).logits[0, n_prompt - 1:-1]
        log_prob = torch.log_softmax(logits.float(), dim=-1).gather(1, output_ids[:, None]).sum()
        loss = -(reward - baseline) * log_prob
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        baseline = 0.9 * baseline + 0.1 * reward
        rewards.append(reward)
        rc = info["reward_components"]
        print(f"episode {episode}: reward {reward:.3f} structure_ok={rc['structure_ok']} "
              f"task_reward={rc['task_reward']} cost=${info['cost']['total_usd']:.5f}")
    env.close()
    return rewards


if __name__ == "__main__":
    main()
