"""The structure check I_str: is the guide's output one well-formed strategy block?

Deterministic. Accepted: optional whitespace, an optional ``<think>…</think>``, whitespace, exactly
one non-empty ``<strategy>…</strategy>`` within the length budget, optional whitespace. Anything
else is malformed, with a reason. A malformed output earns shaped reward 0 and the core is not
called.

"Empty" means nothing visible: a strategy (or stray text) made only of whitespace, zero-width or
other invisible characters (Unicode categories Cf, Zs, Zl, Zp, Cc) is empty, so it earns no
bonus and no core call. Any ``str`` is accepted as input; one that is not valid Unicode text
(a lone surrogate, which cannot be encoded or sent to an API) is malformed, never a crash.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

DEFAULT_MAX_STRATEGY_CHARS = 4000

_TAG = re.compile(r"</?(think|strategy)\s*>", re.IGNORECASE)


class StructureError(str, enum.Enum):
    EMPTY_OUTPUT = "empty_output"
    NO_STRATEGY = "no_strategy"  # no <strategy> block at all
    UNCLOSED_TAG = "unclosed_tag"  # an opening tag without its closing tag (or the reverse)
    NESTED_TAG = "nested_tag"  # a tag inside another block
    MULTIPLE_STRATEGIES = "multiple_strategies"
    MULTIPLE_THINKS = "multiple_thinks"
    THINK_AFTER_STRATEGY = "think_after_strategy"
    TEXT_OUTSIDE_TAGS = "text_outside_tags"
    EMPTY_STRATEGY = "empty_strategy"
    TOO_LONG = "strategy_too_long"
    OUTPUT_TOO_LONG = "output_too_long"  # the whole output is over the action space's budget
    INVALID_TEXT = "invalid_text"  # not valid Unicode (a lone surrogate): cannot be sent to the core


@dataclass(frozen=True)
class ParsedGuideOutput:
    """The result of the structure check. ``strategy`` is set only when ``structure_ok``."""

    structure_ok: bool
    strategy: str | None = None
    think: str | None = None
    error: StructureError | None = None
    message: str = ""


_INVISIBLE = frozenset({"Cf", "Zs", "Zl", "Zp", "Cc"})


def is_blank(text: str) -> bool:
    """True when ``text`` shows nothing: only whitespace, zero-width and other invisible characters."""
    return not text.strip() or all(unicodedata.category(ch) in _INVISIBLE for ch in text)


def _surrogate_at(text: str) -> int | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _bad(error: StructureError, message: str) -> ParsedGuideOutput:
    return ParsedGuideOutput(structure_ok=False, error=error, message=message)


def parse_guide_output(text: str, max_strategy_chars: int = DEFAULT_MAX_STRATEGY_CHARS,
                       max_output_chars: int | None = None) -> ParsedGuideOutput:
    """Check the guide's whole output and pull out the strategy."""
    if not isinstance(text, str) or is_blank(text):
        return _bad(StructureError.EMPTY_OUTPUT, "the guide output is empty")
    if max_output_chars is not None and len(text) > max_output_chars:
        return _bad(StructureError.OUTPUT_TOO_LONG, f"output has {len(text)} characters; the budget is {max_output_chars}")
    bad_at = _surrogate_at(text)
    if bad_at is not None:
        return _bad(StructureError.INVALID_TEXT,
                    f"not valid Unicode text: a lone surrogate U+{ord(text[bad_at]):04X} at character {bad_at}")
    blocks: list[tuple[str, str]] = []  # (tag name, inner text) in order
    outside: list[str] = []
    pos = 0
    open_tag: tuple[str, int] | None = None
    for m in _TAG.finditer(text):
        name, closing = m.group(1).lower(), m.group(0).startswith("</")
        if open_tag is None:
            if closing:
                return _bad(StructureError.UNCLOSED_TAG, f"</{name}> without a matching <{name}>")
            outside.append(text[pos:m.start()])
            open_tag = (name, m.end())
        else:
            if not closing or name != open_tag[0]:
                return _bad(StructureError.NESTED_TAG, f"<{m.group(1)}> inside the <{open_tag[0]}> block")
            blocks.append((name, text[open_tag[1]:m.start()]))
            open_tag = None
        pos = m.end()
    if open_tag is not None:
        return _bad(StructureError.UNCLOSED_TAG, f"<{open_tag[0]}> is never closed")
    outside.append(text[pos:])
    names = [n for n, _ in blocks]
    if "strategy" not in names:
        return _bad(StructureError.NO_STRATEGY, "no <strategy>…</strategy> block")
    if names.count("strategy") > 1:
        return _bad(StructureError.MULTIPLE_STRATEGIES, f"{names.count('strategy')} <strategy> blocks; exactly one is allowed")
    if names.count("think") > 1:
        return _bad(StructureError.MULTIPLE_THINKS, "more than one <think> block")
    if names != ["strategy"] and names != ["think", "strategy"]:
        return _bad(StructureError.THINK_AFTER_STRATEGY, "<think> must come before <strategy>")
    stray = next((s.strip() for s in outside if not is_blank(s)), None)
    if stray is not None:
        return _bad(StructureError.TEXT_OUTSIDE_TAGS, f"text outside the tags: {stray[:60]!r}")
    think = blocks[0][1].strip() if names[0] == "think" else None
    strategy = blocks[-1][1].strip()
    if is_blank(strategy):
        return _bad(StructureError.EMPTY_STRATEGY, "the <strategy> block is empty (nothing visible in it)")
    if len(strategy) > max_strategy_chars:
        return _bad(StructureError.TOO_LONG, f"strategy has {len(strategy)} characters; the budget is {max_strategy_chars}")
    return ParsedGuideOutput(structure_ok=True, strategy=strategy, think=think)


def parse_advice(text: str, max_output_chars: int | None = None) -> ParsedGuideOutput:
    """No structure requirement (the Advisor recipe): the whole non-empty output is the advice.

    Only an empty output or one over the action space's budget is refused (there is nothing, or
    too much, to pass to the core).
    """
    if not isinstance(text, str) or not text.strip():
        return _bad(StructureError.EMPTY_OUTPUT, "the guide output is empty")
    if max_output_chars is not None and len(text) > max_output_chars:
        return _bad(StructureError.OUTPUT_TOO_LONG, f"output has {len(text)} characters; the budget is {max_output_chars}")
    return ParsedGuideOutput(structure_ok=True, strategy=text.strip())
