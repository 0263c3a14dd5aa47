"""The strategy judge J ∈ [0, 1]: an LLM's rating plus a deterministic leak check.

J = mean(usefulness, specificity) / 10 from the LLM judge, forced to 0 when either the judge
or the task's deterministic check (``Validator.leaks``) says the strategy gives the answer away.
The deterministic check runs first: when it fires, J = 0 is already known and the LLM judge is
not called (no request, no cost).
The judge's reply is parsed robustly: a JSON object anywhere in it, else ``key: value`` lines.
A reply with no usable score gives J = 0 and ``parsed=False`` (the judge's failure to follow the
format is not the guide's gain).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from gcop_env.cores.base import Core, CoreRequest, CoreResponse, Message, SamplingParams
from gcop_env.problem import Problem
from gcop_env.step.prompts import judge_prompt
from gcop_env.validators.base import Validator

_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.DOTALL)
_KEY_VALUE = re.compile(r"(usefulness|specificity|leaks?_?answer|leak)\W{0,3}\s*[:=]\s*\"?([A-Za-z0-9.]+)", re.IGNORECASE)
_TRUE = {"true", "yes", "1", "y"}


@dataclass(frozen=True)
class JudgeVerdict:
    score: float  # J ∈ [0, 1]
    leak: bool  # the strategy gives the answer away (J forced to 0)
    deterministic_leak: bool
    llm_leak: bool
    usefulness: float | None = None
    specificity: float | None = None
    parsed: bool = True
    raw: str = ""
    llm_called: bool = True  # False when the deterministic leak check settled J = 0 first


def _clip10(value: float) -> float:
    return max(0.0, min(10.0, value))


def parse_judge_reply(text: str) -> tuple[float | None, float | None, bool | None]:
    """(usefulness, specificity, leaks_answer) from a judge reply; None where absent."""
    fields: dict[str, object] = {}
    for blob in reversed(_JSON_OBJECT.findall(text or "")):
        try:
            obj = json.loads(blob)
        except ValueError:
            continue
        if isinstance(obj, dict) and ({"usefulness", "specificity"} & set(obj)):
            fields = {k.lower(): v for k, v in obj.items()}
            break
    if not fields:
        for key, value in _KEY_VALUE.findall(text or ""):
            key = key.lower()
            fields["leaks_answer" if key.startswith("leak") else key] = value

    def number(key: str) -> float | None:
        try:
            return _clip10(float(fields[key]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            return None

    leak_raw = fields.get("leaks_answer", fields.get("leak"))
    leak = None if leak_raw is None else (leak_raw is True or str(leak_raw).strip().lower() in _TRUE)
    return number("usefulness"), number("specificity"), leak


class StrategyJudge:
    """Scores strategies with an LLM (any core) and the task's deterministic leak check."""

    def __init__(self, core: Core, validator: Validator, sampling: SamplingParams | None = None):
        self.core = core
        self.validator = validator
        self.sampling = sampling or SamplingParams(temperature=0.0, max_tokens=256)

    def judge(self, problem: Problem, strategy: str) -> tuple[JudgeVerdict, CoreResponse | None]:
        """The verdict and the judge's response (None when the deterministic leak check settled it).

        Raises :class:`~gcop_env.cores.base.CoreError` when the judge's API fails.
        """
        if self.validator.leaks(problem, strategy):
            return JudgeVerdict(score=0.0, leak=True, deterministic_leak=True, llm_leak=False,
                                parsed=False, llm_called=False), None
        request = CoreRequest(messages=(Message("user", judge_prompt(problem.question, strategy)),),
                              sampling=self.sampling)
        response = self.core.complete(request)
        usefulness, specificity, llm_leak = parse_judge_reply(response.text)
        scores = [s for s in (usefulness, specificity) if s is not None]
        parsed = bool(scores)
        leak = bool(llm_leak)
        score = 0.0 if (leak or not parsed) else sum(scores) / (10.0 * len(scores))
        return JudgeVerdict(score=score, leak=leak, deterministic_leak=False,
                            llm_leak=leak, usefulness=usefulness, specificity=specificity,
                            parsed=parsed, raw=response.text[:2000]), response
