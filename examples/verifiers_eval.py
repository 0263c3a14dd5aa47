"""verifiers: evaluate a guide on GCoP tasks with ``vf-eval`` (verifiers 0.4, the taskset ``gcop-tasks``).

    python examples/verifiers_eval.py -n 5           # offline default: the local Gemma 3 270M as guide and core
    python examples/verifiers_eval.py --guide-url http://127.0.0.1:8000/v1 --model my-guide \\
        --core anthropic:claude-haiku-4-5-20251001 -n 50

verifiers lives in a venv of its own (its ``mcp`` pin excludes OpenEnv's): ``vf-eval`` is taken
from ``--vf-eval``, else beside this Python, else ``.venv-verifiers/bin/vf-eval`` of the repo
(``bash scripts/adapter_venv.sh verifiers`` makes it). Without ``--guide-url`` this script serves
``--guide`` (a transformers directory; default: the hub guide, else the local Gemma) as an
OpenAI-compatible endpoint on loopback (:class:`gcop_env.cores.chat_server.ChatServer`, what
``gcop serve chat`` runs), so the guide's model runs here and verifiers needs no torch.

The command it runs is the one a user types::

    vf-eval gcop-tasks -m MODEL --client.base-url URL --no-push -n N \\
        --env.taskset.data-files DIR --env.taskset.task.core CORE --env.taskset.task.options '{...}'

``--no-push`` keeps the results local (``vf-eval`` uploads them to a hosted service by
default); the taskset's own harness gives the guide one chat turn and no shell (verifiers'
default ``bash`` harness would give it one), and its env runs the harness here (no hosted
sandbox). Prints each rollout's reward and status and the mean reward.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def find_vf_eval(given: str | None) -> str:
    for candidate in (given, Path(sys.executable).parent / "vf-eval", REPO / ".venv-verifiers" / "bin" / "vf-eval"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise SystemExit("vf-eval not found: pip install 'gcop-env[verifiers]' in a venv of its own "
                     "(bash scripts/adapter_venv.sh verifiers), or pass --vf-eval PATH")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guide", default=None, help="a transformers guide to serve (default: hub, else local Gemma)")
    parser.add_argument("--guide-url", default=None, help="an OpenAI-compatible endpoint already serving the guide")
    parser.add_argument("--model", default="guide", help="the model name sent to --guide-url")
    parser.add_argument("--core", default=None, help="core spec (default: Claude Haiku 4.5 with ANTHROPIC_API_KEY, "
                                                     "else the local Gemma)")
    parser.add_argument("--env", default="GCoP-GSM8K-v0")
    parser.add_argument("--data-files", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("-n", "--num-tasks", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256, help="the guide's reply budget")
    parser.add_argument("--options", default='{"gamma": 0}', help="other gym.make keywords (JSON)")
    parser.add_argument("--vf-eval", default=None, help="the vf-eval executable")
    parser.add_argument("--output-dir", default="runs/verifiers")
    args = parser.parse_args(argv)
    vf_eval = find_vf_eval(args.vf_eval)
    from gcop_env.cores.local import default_core

    core = args.core or default_core()
    server = None
    if args.guide_url is None:
        from gcop_env.cores import make_core
        from gcop_env.cores.chat_server import ChatServer
        from gcop_env.cores.local import default_guide

        server = ChatServer(make_core(f"hf:{args.guide or default_guide()}", cache=False),
                            max_tokens=args.max_tokens).start()
        args.guide_url, args.model = server.base_url, "guide"
    out = Path(args.output_dir)
    command = [vf_eval, "gcop-tasks", "-m", args.model, "--client.base-url", args.guide_url, "--no-push", "--no-rich",
               "-n", str(args.num_tasks), "-o", str(out), "--sampling.max-tokens", str(args.max_tokens),
               "--env.taskset.env-id", args.env, "--env.taskset.split", args.split,
               "--env.taskset.task.core", core, "--env.taskset.task.options", args.options]
    if args.data_files:
        command += ["--env.taskset.data-files", args.data_files]
    print("running:", " ".join(command[:12]), "...", flush=True)
    try:
        with tempfile.TemporaryDirectory() as cwd:
            done = subprocess.run(command, env={**os.environ, "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY", "none")},
                                  cwd=cwd, capture_output=True, text=True)
    finally:
        if server is not None:
            server.stop()
    if done.returncode != 0:
        raise SystemExit(f"vf-eval failed ({done.returncode}):\n{done.stderr[-3000:]}")
    runs = sorted(out.glob("*/traces.jsonl"), key=lambda p: p.stat().st_mtime)
    rewards, errors = [], 0
    for line in runs[-1].read_text().splitlines():
        trace = json.loads(line)["traces"][0]
        gcop = trace["info"].get("gcop", {})
        reward = (trace["rewards"].get("gcop_shaped") or {}).get("score")
        print(f"{trace['task']['data']['task_id']}: reward {reward} status {gcop.get('status')}"
              + (f" error {trace['errors'][-1]['message'][:80]}" if trace["errors"] else ""))
        if reward is None:
            errors += 1
        else:
            rewards.append(reward)
    summary = {"rollouts": len(rewards) + errors, "errored": errors,
               "mean_reward": sum(rewards) / len(rewards) if rewards else float("nan")}
    print(f"{summary['rollouts']} rollouts, {errors} errored (infrastructure), mean reward {summary['mean_reward']:.3f}; "
          f"traces: {runs[-1]}")
    return summary


if __name__ == "__main__":
    main()
