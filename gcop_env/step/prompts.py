"""Every prompt the package sends, in one place, under one version.

``PROMPT_VERSION`` is part of every cache key: change a prompt, bump the version, and old cached
responses are no longer served for the new prompts.

Roles: the *guide* (trainable) reads a problem and writes guidance, never the final answer; the
*core* (black box) solves the problem, free to follow the strategy or use its own approach; the
*judge* scores a strategy's usefulness and flags answer leakage; the *teacher* (curation only)
sees the reference solution and writes strategies in the guide's output format, then refines
them from the core's failures.
"""

from __future__ import annotations

from gcop_env.cores.cache import PROMPT_VERSION  # noqa: F401 - kept in the cache, where every key uses it

GUIDE_PROMPT = """\
You are a strategist who guides another model that will solve the problem below. Do not solve \
the problem and do not state the final answer or write the final code. Instead, think about \
what makes the problem tricky, then write a short, concrete strategy the solver can follow: \
the steps to take, the quantities or cases to track, and the mistakes to avoid.

Reply in exactly this format:
<think>your private reasoning about the problem</think>
<strategy>the step-by-step strategy for the solver</strategy>

Problem:
{question}"""

CORE_MATH_GUIDED = """\
Solve the following problem. A strategist has suggested an approach; use it if it helps, or \
use your own approach if you find a better one.

Problem:
{question}

Suggested strategy:
{strategy}

Reason step by step, then give only the final numerical answer in \\boxed{{}}."""

CORE_MATH_UNGUIDED = """\
Solve the following problem.

Problem:
{question}

Reason step by step, then give only the final numerical answer in \\boxed{{}}."""

CORE_CODE_GUIDED = """\
Write a Python solution to the following problem. A strategist has suggested an approach; use \
it if it helps, or use your own approach if you find a better one.

Problem:
{question}

Suggested strategy:
{strategy}

Reply with one fenced ```python code block that contains the complete implementation \
(imports included). Do not include tests or example usage."""

CORE_CODE_UNGUIDED = """\
Write a Python solution to the following problem.

Problem:
{question}

Reply with one fenced ```python code block that contains the complete implementation \
(imports included). Do not include tests or example usage."""

JUDGE_PROMPT = """\
You review a strategy that a strategist wrote to guide a solver on a problem. The strategist \
was told to give guidance only, never the final answer or the finished code.

Problem:
{question}

Strategy:
{strategy}

Rate the strategy:
- usefulness: 0-10, how much following it would help a solver reach a correct solution
- specificity: 0-10, how concrete and actionable it is for this particular problem
- leaks_answer: true if the strategy states the final answer (or gives the complete code), else false

Reply with only a JSON object, for example:
{{"usefulness": 7, "specificity": 6, "leaks_answer": false}}"""

TEACHER_PROMPT = """\
You write strategies that guide a solver model on problems. You see the problem and a reference \
solution; the solver will see only the problem and your strategy. Write guidance, not the answer: \
explain the approach, the steps, the quantities or cases to track and the mistakes to avoid, \
but never state the final answer or write the finished code.

Problem:
{question}

Reference solution (for you only; do not copy its final answer into the strategy):
{solution}

Reply in exactly this format:
<think>your private reasoning about what makes the problem tricky</think>
<strategy>the step-by-step strategy for the solver</strategy>"""

TEACHER_REFINE_PROMPT = """\
You write strategies that guide a solver model on problems. You see the problem and a reference \
solution; the solver will see only the problem and your strategy. Write guidance, not the answer: \
never state the final answer or write the finished code.

Problem:
{question}

Reference solution (for you only; do not copy its final answer into the strategy):
{solution}

Your previous strategy:
{strategy}

It did not work well enough. {feedback}

Write an improved strategy that fixes what went wrong. Reply in exactly this format:
<think>your private reasoning about what went wrong and how to fix it</think>
<strategy>the step-by-step strategy for the solver</strategy>"""

# Multi-turn episodes (gcop_env.envs.multiturn): the guide's revision request after a failed turn.
# It is self-contained (problem, previous strategy, the solver's answer, the validator's feedback),
# so a guide that keeps no history can answer it; the feedback never holds the gold or a reward test.
REVISION_PROMPT = """\
You are a strategist who guides another model that will solve the problem below. Do not solve \
the problem and do not state the final answer or write the final code. Your previous strategy \
did not lead the solver to a correct solution. Read what happened and write a revised strategy \
(attempt {turn} of {max_turns}) that fixes what went wrong.

Problem:
{question}

{previous}

Feedback:
{feedback}

Reply in exactly this format:
<think>your private reasoning about what went wrong and how to fix it</think>
<strategy>the revised step-by-step strategy for the solver</strategy>"""

REVISION_PREVIOUS = """\
Your previous strategy:
{strategy}

The solver's answer with it:
{answer}"""

REVISION_MALFORMED = """\
Your previous reply (not a well-formed strategy, so the solver was not called):
{reply}"""

# core_history="previous": the core sees its own failed attempt and the same feedback as the guide.
CORE_PREVIOUS_ATTEMPT = """\


Your previous attempt at this problem:
{answer}

Feedback on that attempt:
{feedback}

"""

CORE_TEMPLATES = {
    ("math", True): CORE_MATH_GUIDED,
    ("math", False): CORE_MATH_UNGUIDED,
    ("code", True): CORE_CODE_GUIDED,
    ("code", False): CORE_CODE_UNGUIDED,
}


def guide_prompt(question: str) -> str:
    return GUIDE_PROMPT.format(question=question.strip())


def core_prompt(question: str, answer_format: str, strategy: str | None) -> str:
    """The core's prompt, guided when ``strategy`` is given, unguided when it is None."""
    try:
        template = CORE_TEMPLATES[(answer_format, strategy is not None)]
    except KeyError:
        raise ValueError(f"unknown answer format {answer_format!r}; expected 'math' or 'code'") from None
    return template.format(question=question.strip(), strategy=(strategy or "").strip())


def judge_prompt(question: str, strategy: str) -> str:
    return JUDGE_PROMPT.format(question=question.strip(), strategy=strategy.strip())


def teacher_prompt(question: str, solution: str) -> str:
    """The curation teacher's first request: write a strategy for ``question`` knowing ``solution``."""
    return TEACHER_PROMPT.format(question=question.strip(), solution=(solution or "(none given)").strip())


def teacher_refine_prompt(question: str, solution: str, strategy: str, feedback: str) -> str:
    """The teacher's refinement request: the previous strategy plus what went wrong with it."""
    return TEACHER_REFINE_PROMPT.format(question=question.strip(), solution=(solution or "(none given)").strip(),
                                        strategy=strategy.strip(), feedback=feedback.strip())


# In-context learning baseline (ICL): worked examples of the nearest training problems, then the
# unguided core prompt unchanged, so the examples are the only difference from core-only.
ICL_HEADER = "Here are worked examples of similar problems, each with its solution."

ICL_EXAMPLE = """\
Example {number}:
Problem:
{question}

Solution:
{solution}"""


def icl_core_prompt(question: str, answer_format: str, examples: list[tuple[str, str]]) -> str:
    """The core's ICL prompt: ``examples`` as (question, solution) pairs, then the unguided prompt."""
    blocks = [ICL_EXAMPLE.format(number=i, question=q.strip(), solution=s.strip())
              for i, (q, s) in enumerate(examples, start=1)]
    unguided = core_prompt(question, answer_format, None)
    if not blocks:
        return unguided
    return "\n\n".join([ICL_HEADER, *blocks, unguided])


def revision_prompt(question: str, turn: int, max_turns: int, feedback: str, *, strategy: str | None = None,
                    answer: str | None = None, malformed_reply: str | None = None) -> str:
    """The guide's observation for turn ``turn`` (2..max_turns) after a failed turn.

    ``strategy`` and ``answer``: the previous turn's strategy and the core's answer to it (both
    already bounded by the caller); ``malformed_reply`` instead when the previous reply was not a
    well-formed strategy (the core was not called).
    """
    if strategy is not None:
        previous = REVISION_PREVIOUS.format(strategy=strategy.strip(), answer=(answer or "(no answer)").strip())
    else:
        previous = REVISION_MALFORMED.format(reply=(malformed_reply or "").strip() or "(empty)")
    return REVISION_PROMPT.format(question=question.strip(), turn=turn, max_turns=max_turns, previous=previous,
                                  feedback=feedback.strip())


def core_prompt_with_attempt(question: str, answer_format: str, strategy: str, answer: str, feedback: str) -> str:
    """The guided core prompt plus the core's previous attempt and its feedback (``core_history="previous"``)."""
    guided = core_prompt(question, answer_format, strategy)
    head, sep, tail = guided.rpartition("\n\n")  # the last paragraph is the reply instruction
    attempt = CORE_PREVIOUS_ATTEMPT.format(answer=answer.strip() or "(empty)", feedback=feedback.strip())
    return head + attempt.rstrip("\n") + sep + tail
