"""Answer extraction for code tasks: the program inside a core's reply.

The core is asked for one fenced python block with the full implementation; replies still come
as several blocks (the solution, then example usage, or a first try and a fix), as a restated
signature with its body, or as bare code with prose around it. :func:`extract_code` picks the
block that defines the entry point and looks like the solution, not its usage.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

from gcop_env.utils.python_ast import parse_python

# ```python ... ``` or ~~~py ... ~~~; an unclosed last fence (a truncated reply) runs to the end.
_FENCE = re.compile(
    r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+.#-]*)[^\n]*\n(?P<body>.*?)(?:^[ \t]*(?P=fence)[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
_PYTHON_TAGS = {"python", "py", "python3", "py3", "pycon", ""}
_CODE_START = re.compile(r"^(?:def |async def |class |import |from \S+ import |@\w)", re.MULTILINE)


@dataclass(frozen=True)
class ExtractedCode:
    """The code found in a reply, and where it came from (for the validation details)."""

    code: str
    source: str  # "fenced", "bare" or "none"
    blocks: int = 0  # fenced python blocks in the reply
    chosen: int | None = None  # index of the chosen block
    defines_entry_point: bool = False

    @property
    def found(self) -> bool:
        return bool(self.code.strip())


def _defined_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _parse(code: str) -> ast.Module | None:
    try:
        return parse_python(code)  # thread-safe on 3.11 (gcop_env.utils.python_ast)
    except (SyntaxError, ValueError):
        return None


def _score(code: str, entry_point: str | None) -> tuple[int, int, int]:
    """Higher is more likely the solution: (defines the entry point, parses & defines, size)."""
    tree = _parse(code)
    if tree is None:
        defines = entry_point is not None and re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(entry_point)}\b", code, re.M)
        return (1 if defines else 0, 0, len(code))
    names = _defined_names(tree)
    has_defs = any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in tree.body)
    return (1 if entry_point and entry_point in names else 0, 2 if has_defs else 1, len(code))


def _dedent_reply_code(text: str) -> str:
    lines = text.strip("\n").splitlines()
    code = "\n".join(line.rstrip() for line in lines) + "\n"
    dedented = textwrap.dedent(code)
    if dedented != code and _parse(code) is None and _parse(dedented) is not None and _CODE_START.search(dedented):
        return dedented  # a whole program indented (e.g. inside a markdown list)
    return code


def extract_code(reply: str, entry_point: str | None = None) -> ExtractedCode:
    """The program in ``reply``.

    * Fenced blocks tagged python (or untagged): the one that defines ``entry_point`` wins, then
      one that parses and defines something (usage examples define nothing), then the longest;
      among equals the last (a reply's final version). Blocks in other languages are ignored
      unless nothing else is there.
    * No fence: the reply itself when it parses, else the text from the first line that starts
      code (``def``, ``class``, ``import``, a decorator), trimmed of trailing prose until it parses.
    """
    reply = reply or ""
    blocks = [(m.group("lang").lower(), m.group("body")) for m in _FENCE.finditer(reply)]
    python_blocks = [body for lang, body in blocks if lang in _PYTHON_TAGS and body.strip()]
    if not python_blocks:
        python_blocks = [body for _, body in blocks if body.strip() and _parse(body) is not None]
    if python_blocks:
        scored = [(_score(body, entry_point), index) for index, body in enumerate(python_blocks)]
        best_score, best = max(scored)  # ties go to the later block
        return ExtractedCode(
            code=_dedent_reply_code(python_blocks[best]),
            source="fenced",
            blocks=len(python_blocks),
            chosen=best,
            defines_entry_point=bool(best_score[0]),
        )
    return _bare_code(reply, entry_point)


def _bare_code(reply: str, entry_point: str | None) -> ExtractedCode:
    text = reply.strip("\n")
    if not text.strip():
        return ExtractedCode("", "none")
    if _parse(text) is not None and _CODE_START.search(text):
        return ExtractedCode(_dedent_reply_code(text), "bare", defines_entry_point=_score(text, entry_point)[0] == 1)
    start = _CODE_START.search(text)
    if start is None:
        return ExtractedCode("", "none")
    lines = text[start.start():].splitlines()
    # Drop trailing prose one line at a time until the rest parses.
    for end in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:end])
        if _parse(candidate) is not None:
            return ExtractedCode(
                _dedent_reply_code(candidate), "bare", defines_entry_point=_score(candidate, entry_point)[0] == 1
            )
    return ExtractedCode(_dedent_reply_code("\n".join(lines)), "bare")


def has_code_block(text: str) -> bool:
    """True when ``text`` holds a fenced block with code in it (used by the leak checks)."""
    return any(body.strip() for _, body in ((m.group("lang"), m.group("body")) for m in _FENCE.finditer(text or "")))


def _significant_lines(code: str) -> list[str]:
    """Lines of ``code`` that carry the solution: no blanks, comments, docstrings or trivia."""
    tree = _parse(code)
    doc_lines: set[int] = set()
    if tree is not None:
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                value = body[0].value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    doc_lines.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    kept = []
    for number, line in enumerate(code.splitlines(), start=1):
        stripped = " ".join(line.split())
        if number in doc_lines or not stripped or stripped.startswith("#"):
            continue
        if len(stripped) < 12 or stripped in {"else:", "try:", "return True", "return False", "return None"}:
            continue
        kept.append(stripped)
    return kept


def reveals_code(strategy: str, reference_code: str | None, threshold: float = 0.5) -> bool:
    """The deterministic leak check for code tasks.

    True when the strategy holds a fenced code block, a function written out (a ``def`` line
    followed by at least two indented lines), or at least ``threshold`` of the reference
    solution's significant lines verbatim (whitespace-normalised).
    """
    strategy = strategy or ""
    if has_code_block(strategy):
        return True
    if re.search(r"^[ \t]*def [A-Za-z_]\w*\s*\(.*\)[^\n]*:[ \t]*\n(?:[ \t]+\S[^\n]*\n?){2,}", strategy, re.M):
        return True
    if reference_code:
        lines = _significant_lines(reference_code)
        if len(lines) >= 2:
            normalised = " ".join(strategy.split())
            found = sum(1 for line in lines if line in normalised)
            if found / len(lines) >= threshold:
                return True
    return False
