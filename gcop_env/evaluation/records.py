"""The run dir's files and one record per (problem, sample): what was asked, what came back, the
verdict and the cost of each role (guide, core, judge), with the guide's price and where it came from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gcop_env.cores.base import CallInterrupted, CoreResponse
from gcop_env.cores.budget import BudgetExceeded
from gcop_env.cores.pricing import lookup_price
from gcop_env.evaluation.config import EvalConfig
from gcop_env.evaluation.guides import parse_guide_spec
from gcop_env.problem import Problem
from gcop_env.step.scoring import StepOutcome

SCHEMA = 1
RECORDS = "records.jsonl"
SUMMARY = "summary.json"
RUN_CONFIG = "run_config.json"
ROLES = ("guide", "core", "judge")


# ----------------------------------------------------------------------------------- costs


@dataclass
class GuidePrice:
    """How the guide's tokens become dollars, and where the price came from."""

    input_per_mtok: float
    output_per_mtok: float
    source: str  # flag | price-table | local-default | unpriced | external

    @property
    def priced(self) -> bool:
        return self.source in ("flag", "price-table")

    def usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6

    def note(self) -> str:
        return {
            "flag": f"guide priced from --guide-price {self.input_per_mtok:g},{self.output_per_mtok:g} USD/Mtok",
            "price-table": f"guide priced from the price table ({self.input_per_mtok:g},{self.output_per_mtok:g} USD/Mtok)",
            "local-default": "local guide: priced at $0 (pass --guide-price IN,OUT to price its tokens)",
            "unpriced": "guide model not in the price table: priced at $0 (pass --guide-price IN,OUT)",
            "external": "pre-written strategies: the guide's cost is unknown and counted as $0",
        }[self.source]


def resolve_guide_price(config: EvalConfig) -> GuidePrice:
    if config.kind == "strategies":
        return GuidePrice(0.0, 0.0, "external")
    if config.kind != "guided":
        return GuidePrice(0.0, 0.0, "local-default")
    if config.guide_price is not None:
        return GuidePrice(config.guide_price[0], config.guide_price[1], "flag")
    backend, model, _ = parse_guide_spec(config.guide)
    if backend in ("hf", "vllm"):
        return GuidePrice(0.0, 0.0, "local-default")
    price = lookup_price(backend, model)
    return GuidePrice(price[0], price[1], "price-table") if price else GuidePrice(0.0, 0.0, "unpriced")


def _role(calls=0, cached=0, tin=0, tout=0, usd=0.0, latency=0.0) -> dict[str, Any]:
    return {"calls": calls, "cached_calls": cached, "input_tokens": tin, "output_tokens": tout, "usd": usd,
            "latency_s": latency}


def _guide_role(response: CoreResponse | None, price: GuidePrice) -> dict[str, Any]:
    if response is None:
        return _role()
    return _role(1, int(response.cached), response.input_tokens, response.output_tokens,
                 price.usd(response.input_tokens, response.output_tokens),
                 0.0 if response.cached else response.latency_s)


def _scorer_role(role) -> dict[str, Any]:
    return _role(role.calls, role.cached_calls, role.input_tokens, role.output_tokens, role.usd, role.latency_s)


# ------------------------------------------------------------------------------------- rows


def make_row(task: str, split: str, condition: str, problem: Problem, sample: int, outcome: StepOutcome | None, *,
             guide_output: str | None = None, guide_response: CoreResponse | None = None,
             guide_price: GuidePrice | None = None, guide_error: str | Exception | None = None,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One record of the contract (see the module docstring of :mod:`gcop_env.evaluation`)."""
    row: dict[str, Any] = {"task": task, "split": split, "task_id": problem.task_id,
                           "problem_sha256": problem.fingerprint(), "condition": condition,
                           "sample": sample, "guide_output": guide_output, "strategy": None, "structure_ok": None,
                           "core_output": None, "status": None, "reward": None, "success": None, "error": None}
    cost = {"guide": _guide_role(guide_response, guide_price or GuidePrice(0, 0, "local-default")),
            "core": _role(), "judge": _role()}
    if guide_error is not None:  # the guide failed: infrastructure, not a wrong answer
        stage = "budget" if isinstance(guide_error, BudgetExceeded) else \
            "interrupted" if isinstance(guide_error, CallInterrupted) else "guide"
        row.update(status="infra", error=f"{stage}: {guide_error}")
    else:
        assert outcome is not None
        guided = guide_output is not None
        if guided:
            row["structure_ok"] = outcome.parsed.structure_ok
            row["strategy"] = outcome.parsed.strategy
        row["core_output"] = outcome.core_output
        cost["core"] = _scorer_role(outcome.cost.core)
        cost["judge"] = _scorer_role(outcome.cost.judge)
        if outcome.error:
            row.update(status="infra", error=f"{outcome.error_stage}: {outcome.error}")
        elif guided and not outcome.parsed.structure_ok:
            # The scorer does not call the core for a malformed strategy: R = 0 by the env's rule.
            row.update(status="malformed", reward=0.0, success=False,
                       structure_error=outcome.parsed.error.value if outcome.parsed.error else None,
                       structure_message=outcome.parsed.message)
        else:
            v = outcome.validation
            row.update(status=v.status.value, reward=float(v.reward), success=bool(v.reward >= 1.0),
                       validation=_jsonable(v.details))
            if outcome.verdict is not None:
                row["judge"] = {"score": outcome.verdict.score, "leak": outcome.verdict.leak,
                                "parsed": outcome.verdict.parsed}
    row["cost"] = cost
    if extra:
        row.update(extra)
    return row


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return json.loads(json.dumps(value, default=str))
