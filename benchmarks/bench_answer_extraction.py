"""GSM8K answer extraction: gcop against math-verify and lm-eval's regexes, on hand-labelled replies.

Three sets, all public in the repo:

* ``tests/validators/data/gsm8k_answers.yaml``: 294 hard replies in 12 families (cue then other numbers, a
  later correction, the answer first, number words, ambiguous answers, …), labelled by reading;
  written beside gcop's rules, so gcop's figure on it is optimistic;
* ``tests/validators/data/gsm8k_answers_heldout.yaml``: 48 replies written after gcop's rules were fixed;
* every offline GSM8K reference solution (train + test) with its ``#### N`` line and calculator
  notes removed: plain chain-of-thought, the gold from the dataset (``--no-solutions`` skips it).

A reply *agrees* with its label when the extractor reads the labelled number (exactly, as a
rational), or reads nothing where the label says the reply commits to no single answer
(ambiguous or none). math-verify: ``verify(parse("$label$"), parse(reply))``; nothing read is
``parse(reply) == []``. lm-eval: the gsm8k task's ``flexible-extract`` and ``strict-match`` filters
and its ``exact_match`` post-processing (case, ``,``, ``$``, a trailing ``.``); ``[invalid]`` is
nothing read. "gcop before" is the rule this replaced (last box, last '####', last number).
Prints agreement per family and in total, and microseconds per reply.

    pip install math-verify lm-eval    # optional: a missing one is left out of the table
    python benchmarks/bench_answer_extraction.py [--no-solutions]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from fractions import Fraction
from pathlib import Path

import yaml

from gcop_env.validators.gsm8k import _last_boxed, extract_answer, load_gsm8k, normalize_number, reference_value

REPO = Path(__file__).resolve().parents[1]
SETS = {"hard (294, tuned on)": REPO / "tests/validators/data/gsm8k_answers.yaml",
        "held-out (48)": REPO / "tests/validators/data/gsm8k_answers_heldout.yaml"}


def gcop(reply: str, label: str | None) -> bool:
    value, _ = extract_answer(reply)
    return value is None if label is None else value == Fraction(label)


def gcop_before(reply: str, label: str | None) -> bool:
    """The extraction this replaced (validators/gsm8k.py at bd0d3f0): the last \\boxed{}, else the
    last '#### N', else the last number of the reply."""
    value = None
    boxed = _last_boxed(reply)
    if boxed is not None:
        value = normalize_number(boxed)
    hashes = re.findall(r"####[ \t]*([^\n]+)", reply)
    if value is None and hashes:
        value = normalize_number(hashes[-1])
    if value is None:
        value = normalize_number(reply, spaced_thousands=False)
    return value is None if label is None else value == Fraction(label)


def math_verify_agrees():
    try:
        from math_verify import parse, verify
    except ImportError:
        return None

    def agrees(reply: str, label: str | None) -> bool:
        parsed = parse(reply)
        if label is None:
            return parsed == []
        return bool(parsed) and verify(parse(f"${label}$"), parsed)
    return agrees


def lm_eval_filters():
    """lm-eval's gsm8k filters: its own RegexFilter when installed, else the same patterns here."""
    flexible, strict = r"(-?[$0-9.,]{2,})|(-?[0-9]+)", r"#### (\-?[0-9\.\,]+)"
    try:
        from lm_eval.filters.extraction import RegexFilter
    except ImportError:
        return None
    filters = {"lm-eval flexible": RegexFilter(regex_pattern=flexible, group_select=-1),
               "lm-eval strict": RegexFilter(regex_pattern=strict, group_select=0)}

    def normalize(text: str) -> str:  # the task's exact_match: regexes_to_ignore, ignore_case
        for pattern in (",", r"\$", r"(?s).*#### ", r"\.$"):
            text = re.sub(pattern, "", text)
        return text.strip().lower()

    def make(f):
        def agrees(reply: str, label: str | None) -> bool:
            got = f.apply([[reply]], [{}])[0][0]
            return got == "[invalid]" if label is None else normalize(got) == normalize(label)
        return agrees
    return {name: make(f) for name, f in filters.items()}


def extractors() -> dict:
    found = {"gcop": gcop, "gcop before": gcop_before}
    mv = math_verify_agrees()
    if mv is not None:
        found["math-verify"] = mv
    else:
        print("math-verify not installed: left out (pip install math-verify)", file=sys.stderr)
    lm = lm_eval_filters()
    if lm is not None:
        found.update(lm)
    else:
        print("lm-eval not installed: left out (pip install lm-eval)", file=sys.stderr)
    return found


def score(cases: list[tuple[str, str, str | None]], tools: dict) -> tuple[dict, dict]:
    """(agreements per tool and family, seconds per tool)."""
    agreed = {name: {} for name in tools}
    seconds = dict.fromkeys(tools, 0.0)
    for family, reply, label in cases:
        for name, agrees in tools.items():
            started = time.perf_counter()
            ok = agrees(reply, label)
            seconds[name] += time.perf_counter() - started
            n, k = agreed[name].get(family, (0, 0))
            agreed[name][family] = (n + 1, k + int(bool(ok)))
    return agreed, seconds


def table(title: str, cases, tools) -> None:
    agreed, seconds = score(cases, tools)
    families = list(dict.fromkeys(f for f, _, _ in cases))
    names = list(tools)
    print(f"\n### {title}\n")
    print("| family | n | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for family in families:
        n = agreed[names[0]][family][0]
        print(f"| {family} | {n} | " + " | ".join(f"{100 * agreed[t][family][1] / n:.1f}" for t in names) + " |")
    total = len(cases)
    print(f"| **all** | {total} | " + " | ".join(
        f"**{100 * sum(k for _, k in agreed[t].values()) / total:.1f}**" for t in names) + " |")
    print("| µs per reply | | " + " | ".join(f"{1e6 * seconds[t] / total:.0f}" for t in names) + " |")


def solution_cases() -> list[tuple[str, str, str | None]]:
    data = REPO.parent / "shared" / "data" / "gsm8k"
    problems = load_gsm8k("test", data_files=str(data)) + load_gsm8k("train", data_files=str(data))
    cases = []
    for p in problems:
        body = re.sub(r"<<[^>]*>>", "", p.solution.rsplit("####", 1)[0]).strip()
        cases.append(("natural solution", body, str(reference_value(p.reference))))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-solutions", action="store_true", help="skip the 8,792 natural solutions (slow for math-verify)")
    args = parser.parse_args()
    tools = extractors()
    for title, path in SETS.items():
        cases = [(c["family"], c["reply"], c["answer"]) for c in yaml.safe_load(path.read_text(encoding="utf-8"))]
        table(f"{title}: {path.relative_to(REPO)}", cases, tools)
    if not args.no_solutions:
        table("GSM8K reference solutions without their '#### N' line (train + test)", solution_cases(), tools)


if __name__ == "__main__":
    main()
