"""The metrics of a run (accuracy with its interval, executability, cost and latency per problem,
net utility) from its records, and ``summary.json``: the metrics, the condition, the resolved
config and the notes a reader must know."""

from __future__ import annotations

import platform
from typing import Any

from gcop_env._version import __version__
from gcop_env.envs.tasks import TaskSpec
from gcop_env.evaluation.conditions import Condition
from gcop_env.evaluation.config import EvalConfig
from gcop_env.evaluation.records import ROLES, SCHEMA, GuidePrice
from gcop_env.evaluation.stats import wilson_interval


def summarize_rows(rows_by_problem: list[list[dict]], *, kind: str, lam: float) -> dict[str, Any]:
    """The metrics of the contract, from the rows of each problem (in problem order)."""
    records = [r for rows in rows_by_problem for r in rows]
    n_problems = len(rows_by_problem)
    first = [min(rows, key=lambda r: r["sample"]) for rows in rows_by_problem if rows]
    scored_first = [r for r in first if r["status"] != "infra"]
    wins = sum(1 for r in scored_first if r["success"])
    accuracy = wins / len(scored_first) if scored_first else None
    ci = list(wilson_interval(wins, len(scored_first))) if scored_first else None
    executability = None
    if kind in ("guided", "strategies"):
        per_problem = []
        for rows in rows_by_problem:
            scored = [r for r in rows if r["status"] != "infra"]
            if scored:
                per_problem.append(sum(1.0 for r in scored if r["success"]) / len(scored))
        executability = sum(per_problem) / len(per_problem) if per_problem else None
    structure = [r["structure_ok"] for r in records if r.get("structure_ok") is not None]
    status_counts: dict[str, int] = {}
    for r in records:
        status_counts[r["status"]] = status_counts.get(r["status"], 0) + 1
    n = len(records)
    cost: dict[str, dict[str, float]] = {}
    for role in ROLES:
        tokens = sum(r["cost"][role]["input_tokens"] + r["cost"][role]["output_tokens"] for r in records)
        usd = sum(r["cost"][role]["usd"] for r in records)
        cost[role] = {"tokens": tokens / n if n else 0.0, "usd": usd / n if n else 0.0}
    cost["total"] = {k: sum(cost[role][k] for role in ROLES) for k in ("tokens", "usd")}
    latency = sum(r["cost"][role]["latency_s"] for r in records for role in ROLES) / n if n else 0.0
    empty_guide = sum(1 for r in records if r.get("structure_error") == "empty_output")
    metrics = {
        "n_problems": n_problems, "n_records": n, "n_scored": len(scored_first),
        "n_infra": status_counts.get("infra", 0),
        "accuracy": accuracy, "accuracy_ci95": ci,
        "executability": executability,
        "structure_ok_rate": (sum(structure) / len(structure)) if structure else None,
        "status_counts": dict(sorted(status_counts.items())),
        "cost_per_problem": cost,
        "cost_total_usd": sum(r["cost"][role]["usd"] for r in records for role in ROLES),
        "latency_per_problem_s": latency,
        "lam": lam,
        "net_utility": (accuracy - lam * cost["total"]["usd"]) if accuracy is not None else None,
        "guide_empty_outputs": empty_guide if kind in ("guided", "strategies") else None,
    }
    judged = [r["judge"] for r in records if r.get("judge")]
    if judged:
        # A judge reply with no usable score is J = 0 for the reward, but not a rating of 0: the means are
        # over the rated strategies (a leak, caught by the check or the judge, is rated 0), with the count
        # of unparsed replies beside them.
        rated = [j for j in judged if j.get("parsed", True) or j["leak"]]
        metrics["judge_unparsed"] = len(judged) - len(rated)
        metrics["judge_score_mean"] = sum(j["score"] for j in rated) / len(rated) if rated else None
        metrics["judge_leak_rate"] = sum(1 for j in rated if j["leak"]) / len(rated) if rated else None
    return metrics


def metric_notes(metrics: dict[str, Any], kind: str, guide_samples: int, price: GuidePrice) -> list[str]:
    """What a reader of the numbers must know (written into summary.json and printed)."""
    notes = []
    if kind in ("guided", "strategies"):
        notes.append(price.note())
        if kind == "guided" and guide_samples == 1:
            notes.append("executability α̂ with N = 1 guide sample per problem is the guided accuracy")
        else:
            notes.append("executability α̂: mean over problems of the core's success rate over each problem's strategies")
    notes.append("accuracy is Pass@1 (sample 0 of each problem) over the problems without an infrastructure error; "
                 "95% CI: Wilson score interval")
    notes.append("cost and latency per problem: one attempt (guide + core + judge), averaged over all records; "
                 "latency counts live calls only (cache hits take 0 s)")
    if metrics["n_infra"]:
        notes.append(f"WARNING: {metrics['n_infra']} record(s) hit an infrastructure error; they are left out of "
                     f"accuracy (not counted as wrong). Re-run the same command to retry them.")
    if metrics.get("judge_unparsed"):
        notes.append(f"WARNING: {metrics['judge_unparsed']} judge repl(ies) held no usable score; they are left out "
                     f"of judge_score_mean and judge_leak_rate (J = 0 for those rows)")
    if metrics.get("guide_empty_outputs"):
        notes.append(f"WARNING: the guide emitted nothing for {metrics['guide_empty_outputs']} record(s) "
                     f"(status malformed, R = 0)")
    return notes


def _versions() -> dict[str, str]:
    return {"gcop_env": __version__, "python": platform.python_version()}


def build_summary(config: EvalConfig, condition: Condition, task: TaskSpec,
                  rows_by_problem: list[list[dict]]) -> dict[str, Any]:
    metrics = summarize_rows(rows_by_problem, kind=condition.kind, lam=config.lam)
    notes = []
    if getattr(config, "max_turns", 1) > 1:  # per-turn solve rate and cumulative cost (gcop_env.evaluation.multiturn)
        from gcop_env.evaluation.multiturn import turn_metrics, turn_notes
        metrics["turns"] = turn_metrics(rows_by_problem, config.max_turns)
        notes = turn_notes(metrics["turns"])
    price = condition.guide_price()
    metrics["guide_priced"] = price.priced
    metrics["guide_price_usd_per_mtok"] = {"input": price.input_per_mtok, "output": price.output_per_mtok,
                                           "source": price.source}
    resolved = config.resolved()
    return {"schema": SCHEMA, "condition": condition.describe(), "task": task.name, "split": config.split,
            "data_files": config.data_files, "limit": config.limit, "config": resolved, "versions": _versions(),
            "metrics": metrics,
            "notes": metric_notes(metrics, condition.kind, config.guide_samples, price) + notes}
