"""What a command prints when its budget ran out: the spend, the cap, what is saved, and the
command line that resumes with a larger budget."""

from __future__ import annotations

import shlex
from typing import Sequence

from gcop_env.cores.budget import BudgetStatus


def resume_command(prog: str, argv: Sequence[str], status: BudgetStatus) -> str:
    """The command line that resumes with a larger budget: ``argv`` with each cap flag replaced by
    twice the cap, or by the cap plus two worst cases of the refused call when that is more (a cap
    of 0, or one too small for more than a call or two)."""
    args = list(argv)
    replaced = []
    for flag, cap in (("--max-usd", status.max_usd), ("--max-total-tokens", status.max_total_tokens)):
        if cap is None:
            continue
        if flag == "--max-usd":
            value = f"{max(cap * 2, cap + 2 * status.refused_call_usd):.4g}"
        else:
            value = str(max(1, cap * 2, cap + 2 * status.refused_call_tokens))
        args = _drop_flag(args, flag)
        replaced += [flag, value]
    return " ".join([prog, *map(shlex.quote, args + replaced)])


def _drop_flag(args: list[str], flag: str) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == flag:
            skip = True
            continue
        if arg.startswith(flag + "="):
            continue
        out.append(arg)
    return out


def budget_message(prog: str, argv: Sequence[str], status: BudgetStatus, saved: str) -> str:
    """The lines a command prints when its budget ran out: spend, cap, what is saved, how to resume."""
    why = f" ({status.refusal})" if status.refusal else ""
    return (f"{prog}: budget exhausted: {status.describe()}; {status.refused} call(s) refused{why}, none sent.\n"
            f"  {saved}\n"
            f"  Resume with a larger budget (the re-run's budget counts from 0; finished work is skipped and paid\n"
            f"  answers come from the cache, so nothing is redone or paid twice):\n"
            f"    {resume_command(prog, argv, status)}")
