"""Last-``\\boxed{}`` extraction: the old quadratic scan against the linear one, on hostile replies.

A reply of repeated ``\\boxed{`` (no brace ever closes) made the old scan walk to the end of the
text from every occurrence: O(n²). The new one matches all braces in one pass. Prints seconds per
reply size and the growth factor per doubling (≈2 is linear, ≈4 quadratic), measured in one run.

    python benchmarks/bench_boxed_scan.py
"""

from __future__ import annotations

import time

from gcop_env.validators.gsm8k import _last_boxed, extract_answer


def old_last_boxed(text: str) -> str | None:
    """The extraction before the fix (validators/gsm8k.py at f307563), for comparison."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = text.find("{", start)
        if i != -1 and text[start + len("\\boxed"):i].strip() == "":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1:j]
                j += 1
        start = text.rfind("\\boxed", 0, start)
    return None


def seconds(fn, text: str) -> float:
    started = time.perf_counter()
    fn(text)
    return time.perf_counter() - started


def main() -> None:
    unit = "\\boxed{"
    print(f"{'reply':>10} {'old _last_boxed':>16} {'new _last_boxed':>16} {'new extract_answer':>19}")
    previous: dict[str, float] = {}
    for kb in (4, 8, 16, 125, 250, 500, 1000):
        text = unit * (kb * 1000 // len(unit))
        old = seconds(old_last_boxed, text) if kb <= 16 else None  # 60 KB took over 100 s
        new = seconds(_last_boxed, text)
        full = seconds(extract_answer, text)
        growth = "" if "new" not in previous else f"   growth x{new / previous['new']:.1f} (new)" + (
            f", x{old / previous['old']:.1f} (old)" if old is not None and "old" in previous else "")
        print(f"{kb:>8}KB {('%.3fs' % old) if old is not None else 'skipped':>16} {new:>15.3f}s {full:>18.3f}s{growth}")
        previous = {"new": new, **({"old": old} if old is not None else {})}


if __name__ == "__main__":
    main()
