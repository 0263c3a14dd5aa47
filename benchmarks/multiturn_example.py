"""The measured example of docs/multi-turn.md: ``gcop eval --max-turns 3`` and ``gcop report`` end to end
against a loopback fake server, printing the solve rate and the cumulative cost after each turn.

    python benchmarks/multiturn_example.py [--problems 40] [--max-turns 3] [--out DIR]

What it measures is the pipeline, not a model: the guide and the core are scripted (below), so the
solve rates follow from the script; the cost and token figures are what ``gcop eval`` counted from
the server's usage fields (the fake server counts a token per word) at the prices given here. It runs
three conditions of the real ``gcop eval`` CLI on the first ``--problems`` GSM8K test problems
(``../shared/data/gsm8k``): core-only, guided with one turn, guided with ``--max-turns`` turns; then
``gcop report`` over the three (Table 1 with its Turns column, ``turns.png``).

The scripted world (deterministic; a problem's kind comes from a hash of its question):

* **core** (``fake-core``, priced like Claude Haiku 4.5: $1 / $5 per million tokens; also the judge,
  which always answers usefulness 8, specificity 6, no leak). A problem of depth d (0, 1, 2 or
  "never") has d wrong answers the core falls into in order, gold+1, gold+2, …: it answers gold when
  d = 0, else gold+1; told by the strategy to "avoid gold+k" it answers gold+k+1, or the gold when
  k = d. A "never" problem is answered gold+1 whatever the strategy says. Unguided, it answers gold
  when d = 0, else gold+1.
* **guide** (``fake-guide``, $0: a local model costs nothing): a generic plan on turn 1; on a
  revision turn it reads the wrong number from the env's feedback ("The solver's final answer was N,
  which is wrong.") and says to avoid it. It never sees the gold: it reads only its observation.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k"
PRICES = {"fake-core": [1.0, 5.0], "fake-guide": [0.0, 0.0]}
DEPTHS = (0, 0, 0, 1, 1, 1, 2, 2, None, None)  # None: never solved
FIRST = "<think>Plan the arithmetic.</think><strategy>List every quantity, then combine them step by step.</strategy>"


class World:
    """The scripted guide, core and judge behind one server (see the module doc)."""

    def __init__(self, golds: dict[str, str]):
        self.golds = golds

    @staticmethod
    def depth(question: str) -> int | None:
        return DEPTHS[int(hashlib.sha256(question.encode()).hexdigest(), 16) % len(DEPTHS)]

    def __call__(self, prompt: str) -> str:
        if prompt.startswith("You are a strategist"):
            wrong = re.search(r"The solver's final answer was (\S+), which is wrong\.", prompt)
            if wrong is None:
                return FIRST
            return (f"<think>The solver said {wrong.group(1)}.</think><strategy>Recheck every step and avoid "
                    f"{wrong.group(1)}: that result was wrong.</strategy>")
        if prompt.startswith("You review a strategy"):
            return '{"usefulness": 8, "specificity": 6, "leaks_answer": false}'
        question = next(q for q in self.golds if q in prompt)
        gold, depth = int(float(self.golds[question])), self.depth(question)
        strategy = prompt.split("Suggested strategy:", 1)[1] if "Suggested strategy:" in prompt else ""
        avoided = [int(n) for n in re.findall(r"avoid (-?\d+)", strategy)]
        if depth == 0:
            answer = gold
        elif depth is None or not avoided:
            answer = gold + 1
        else:
            k = avoided[-1] - gold
            answer = gold if k == depth else gold + k + 1
        return f"Working through it, the result is {answer}.\n\\boxed{{{answer}}}"


def run(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--out", default=None, help="run dirs and the report (default: a temporary dir)")
    parser.add_argument("--data-files", default=str(GSM8K))
    args = parser.parse_args(argv)

    os.environ["GCOP_PRICES"] = json.dumps(PRICES)
    from fake_llm import FakeLLMServer
    from gcop_env.validators.gsm8k import load_gsm8k

    from gcop_env.cli.eval import eval_cli
    from gcop_env.cli.report import report_cli

    problems = load_gsm8k("test", data_files=args.data_files)[: args.problems]
    world = World({p.question: p.reference for p in problems})
    depths = [world.depth(p.question) for p in problems]
    print(f"{len(problems)} GSM8K test problems; scripted depth 0 / 1 / 2 / never: "
          + " / ".join(str(sum(d == k for d in depths)) for k in (0, 1, 2, None)))
    with contextlib.ExitStack() as stack:
        out = Path(args.out) if args.out else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        cache = stack.enter_context(tempfile.TemporaryDirectory())
        os.environ["GCOP_CACHE_DIR"] = cache  # a fresh response cache: every call is really made and paid
        server = stack.enter_context(FakeLLMServer(world))
        base = ["--task", "GSM8K", "--data-files", args.data_files, "--split", "test", "--limit", str(args.problems),
                "--core", f"openai:fake-core@{server.openai_base_url}", "--no-progress", "--no-preflight"]
        guide = ["--guide", f"openai:fake-guide@{server.openai_base_url}"]
        runs = {"core-only": base + ["--core-only"], "guided, 1 turn": base + guide,
                f"guided, {args.max_turns} turns": base + guide + ["--max-turns", str(args.max_turns)]}
        dirs = {}
        for name, argv_ in runs.items():
            dirs[name] = out / re.sub(r"\W+", "-", name).strip("-")
            print(f"\n$ gcop eval {' '.join(argv_)} --out {dirs[name]}")
            rc = eval_cli([*argv_, "--out", str(dirs[name])])
            if rc != 0:
                raise SystemExit(f"gcop eval exited {rc}")
        print(f"\n$ gcop report {' '.join(map(str, dirs.values()))} --out {out / 'report'}")
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            rc = report_cli([*map(str, dirs.values()), "--out", str(out / "report")])
        print(buffer.getvalue())
        if rc != 0:
            raise SystemExit(f"gcop report exited {rc}")
        turns = json.loads((dirs[f"guided, {args.max_turns} turns"] / "summary.json").read_text())["metrics"]["turns"]
        print(f"guided, {args.max_turns} turns: after each turn (from summary.json metrics.turns)\n")
        print("| after turn | solved (Wilson 95%) | episodes ended here | $ per problem (cumulative) | "
              "tokens per problem (cumulative) |")
        print("|---|---|---|---|---|")
        for t in range(turns["max_turns"]):
            lo, hi = turns["solved_after_turn_ci95"][t]
            print(f"| {t + 1} | {turns['solved_after_turn'][t]:.3f} [{lo:.3f}, {hi:.3f}] | "
                  f"{turns['episodes_ended_at_turn'][t]} | {turns['usd_after_turn'][t]:.6f} | "
                  f"{turns['tokens_after_turn'][t]:.0f} |")
        print(f"\nmean turns {turns['mean_turns']:.2f}; server requests {len(server.requests)}")
        summaries = {name: json.loads((d / "summary.json").read_text()) for name, d in dirs.items()}
        return {"turns": turns, "depths": depths, "summaries": summaries, "report": out / "report"}


if __name__ == "__main__":
    run()
