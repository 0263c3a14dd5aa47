"""OpenEnv: GCoP served as an OpenEnv environment, used through OpenEnv's own WebSocket client.

    python examples/openenv_client.py --sessions 4        # serves GCoP-GSM8K-v0 here, then plays it
    python examples/openenv_client.py --url http://127.0.0.1:8000   # a running `gcop serve openenv`

Needs ``pip install 'gcop-env[openenv]'`` (a venv of its own if verifiers is installed too). Each
session is its own episode on the server (``reset(task_id=...)``, then ``step(GuideAction(text=...))``);
a fixed guide reply stands in for the policy. An infrastructure failure comes back as
``reward=None``. Prints each session's reward and status.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time

GUIDE = ("<think>Find the quantities and how they combine.</think>\n"
         "<strategy>1. List every quantity. 2. Decide which operations link them. 3. Compute step by step.</strategy>")


async def play(url: str, task_ids: list[str]) -> list:
    from gcop_env.adapters.openenv import GCoPEnvClient, GuideAction

    async def session(task_id: str):
        async with GCoPEnvClient(base_url=url) as client:
            await client.reset(task_id=task_id)
            return await client.step(GuideAction(text=GUIDE))

    return await asyncio.gather(*(session(task_id) for task_id in task_ids))  # concurrent sessions


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="a running server (default: serve one here on loopback)")
    parser.add_argument("--core", default=None, help="core spec (default: Claude Haiku 4.5 with ANTHROPIC_API_KEY, "
                                                     "else the local Gemma)")
    parser.add_argument("--env", default="GCoP-GSM8K-v0")
    parser.add_argument("--data-files", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--sessions", type=int, default=4)
    args = parser.parse_args(argv)
    server = None
    task_ids = [f"gsm8k/{args.split}/{i}" for i in range(args.sessions)]
    if args.url is None:
        import socket

        import uvicorn

        from gcop_env.adapters.openenv import make_app
        from gcop_env.cores.local import default_core

        app = make_app(args.env, core=args.core or default_core(), split=args.split, data_files=args.data_files,
                       limit=args.sessions, gamma=0.0)
        task_ids = app.state.gcop_scoring.task_ids
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        args.url = f"http://127.0.0.1:{port}"
    try:
        results = asyncio.run(play(args.url, task_ids))
    finally:
        if server is not None:
            server.should_exit = True
    for task_id, result in zip(task_ids, results):
        print(f"{task_id}: reward {result.reward} status {result.observation.status}")
    scored = [r.reward for r in results if r.reward is not None]  # reward None: an infrastructure failure
    summary = {"sessions": len(results), "infra": len(results) - len(scored),
               "mean_reward": statistics.fmean(scored) if scored else float("nan")}
    print("{sessions} sessions, {infra} infrastructure failures, mean reward {mean_reward:.3f}".format(**summary))
    return summary


if __name__ == "__main__":
    main()
