"""Multi-turn GRPO in a plain torch loop: the guide revises its strategy after the core fails.

    python examples/multiturn_grpo_loop.py --guide Qwen/Qwen3-0.6B --core anthropic:claude-haiku-4-5-20251001

Each step takes one problem and runs a group of episodes on it in a multi-turn env (``max_turns=3``):
the guide reads its whole conversation (each observation, its replies) and writes a strategy; after a
failed turn the env's next observation holds the core's answer and the feedback. The env's credit rule
gives each turn a credit; the group normalises them per turn (``gcop_env.step.credit``), and each turn's
tokens are pushed by their own advantage. Episodes with an infrastructure failure are skipped.
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import gcop_env  # noqa: F401 - registers the environments
from gcop_env.step.credit import group_advantages, turn_credits


def turn_log_prob(model, tokenizer, conversation: list[dict], reply_ids: torch.Tensor) -> torch.Tensor:
    """log p(reply | conversation) under the guide, with gradients."""
    prompt = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)["input_ids"]
    sequence = torch.cat([prompt, reply_ids[None]], dim=1)
    logits = model(sequence).logits[0, prompt.shape[1] - 1:-1]
    return torch.log_softmax(logits.float(), dim=-1).gather(1, reply_ids[:, None]).sum()


def run_episode(env, model, tokenizer, index: int, max_new_tokens: int) -> tuple[list, dict] | None:
    """One episode: [(conversation, reply ids)] per turn and the last info; None after an infra failure."""
    observation, _ = env.reset(options={"index": index})
    conversation, turns, info = [{"role": "user", "content": observation}], [], {}
    done = False
    while not done:
        prompt = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        with torch.no_grad():
            out = model.generate(**prompt, do_sample=True, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id)
        reply_ids = out[0, prompt["input_ids"].shape[1]:]
        reply = tokenizer.decode(reply_ids, skip_special_tokens=True)
        observation, _, terminated, truncated, info = env.step(reply)
        if not info["reward_is_task_outcome"]:
            return None  # an outage is not a wrong answer: the episode leaves the update
        turns.append((list(conversation), reply_ids))
        conversation += [{"role": "assistant", "content": reply}, {"role": "user", "content": observation}]
        done = terminated or truncated
    return turns, info


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guide", default="Qwen/Qwen3-0.6B")
    parser.add_argument("--core", default="anthropic:claude-haiku-4-5-20251001")
    parser.add_argument("--env", default="GCoP-GSM8K-MultiTurn-v0")
    parser.add_argument("--data-files", default=None)
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--steps", type=int, default=50, help="problems, one group of episodes each")
    parser.add_argument("--group", type=int, default=4, help="episodes per problem (the GRPO group)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-6)
    args = parser.parse_args(argv)

    env = gym.make(args.env, core=args.core, split=args.split, data_files=args.data_files, limit=args.limit,
                   gamma=0.0)
    rule, n_problems = env.unwrapped.credit, len(env.unwrapped.problems)
    tokenizer = AutoTokenizer.from_pretrained(args.guide)
    model = AutoModelForCausalLM.from_pretrained(args.guide)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    history = []
    for step in range(args.steps):
        episodes = [run_episode(env, model, tokenizer, step % n_problems, args.max_new_tokens)
                    for _ in range(args.group)]
        credits = [None if e is None else turn_credits(rule, [t["shaped"] for t in e[1]["turns"]],
                                                       [t["cost_penalty"] for t in e[1]["turns"]]) for e in episodes]
        advantages = group_advantages(credits, rule)
        loss = torch.zeros(())
        for episode, values in zip(episodes, advantages):
            if episode is None:
                continue
            for (conversation, reply_ids), advantage in zip(episode[0], values):
                if advantage:
                    loss = loss - advantage * turn_log_prob(model, tokenizer, conversation, reply_ids)
        if loss.requires_grad:
            optimizer.zero_grad()
            (loss / args.group).backward()
            optimizer.step()
        scored = [e[1] for e in episodes if e is not None]
        record = {"step": step, "scored": len(scored), "infra_skipped": args.group - len(scored),
                  "solved": sum(i["success"] for i in scored), "mean_turns": sum(i["turn"] for i in scored) / max(1, len(scored)),
                  "turn1_success": sum(i["turns"][0]["success"] for i in scored),
                  "return": sum(i["credit"]["return"] for i in scored) / max(1, len(scored))}
        history.append(record)
        print(f"step {step}: {record}")
    env.close()
    return history


if __name__ == "__main__":
    main()
