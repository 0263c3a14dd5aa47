"""Property-based fuzzing: any ``str`` (or any bytes) in, a defined result out, in bounded time.

Covers the structure parser, both answer extractors (GSM8K numbers, code), the cache key and the
JSONL readers. Strings include lone surrogates, invisible characters and fragments of the syntax
each parser looks for, so the interesting corners are hit, not only random letters. The time
bound is Hypothesis' per-example ``deadline`` (generous: the machine is shared).
"""

from __future__ import annotations

import json
import os
import string
from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from gcop_env.cores.cache import request_key
from gcop_env.cores.base import CoreRequest, Message, SamplingParams
from gcop_env.step.strategy import ParsedGuideOutput, StructureError, is_blank, parse_guide_output
from gcop_env.utils.files import JsonlAppender, JsonlError, read_jsonl_rows
from gcop_env.validators.code_extract import ExtractedCode, extract_code
from gcop_env.validators.data import DataError, read_data_file
from gcop_env.validators.gsm8k import extract_answer, format_number, reference_value
from gcop_env.validators.math_answer import SOURCES
from gcop_env.validators.score import read_predictions

_BASE = dict(deadline=timedelta(seconds=5), database=None,  # no .hypothesis/ directory in the repo
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
_SCALE = float(os.environ.get("GCOP_FUZZ_SCALE", "1"))  # e.g. 10 for a long hunt
FUZZ = settings(max_examples=int(1000 * _SCALE), print_blob=True, **_BASE)  # pure string functions: cheap
FUZZ_FILES = settings(max_examples=int(300 * _SCALE), print_blob=True, **{**_BASE, "deadline": timedelta(seconds=10)})

pytest.importorskip("pyarrow.parquet")  # imported once here, not inside the first timed example

# every code point, lone surrogates (Cs) included
ANY_CHAR = st.characters(exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=300)


def pieces(*fragments: str) -> st.SearchStrategy[str]:
    """Strings glued from the syntax a parser looks for, invisible characters, surrogates and noise."""
    noise = ["", " ", "\n", "\u200b", "\ufeff", "\u3000", "\ud800", "\udfff", "\x00", "é", "中", "x"]
    return st.lists(st.one_of(st.sampled_from(list(fragments) + noise), st.text(ANY_CHAR, max_size=8)),
                    max_size=30).map("".join)


# -- the structure check --------------------------------------------------------------------------
GUIDE_TEXT = st.one_of(ANY_TEXT, pieces("<think>", "</think>", "<strategy>", "</strategy>", "<STRATEGY >",
                                        "</Think>", "<strategy", "plan", "Add the numbers."))


@FUZZ
@given(GUIDE_TEXT, st.integers(1, 50))
@example("<strategy>\u200b</strategy>", 10)
@example("<strategy>a\ud800</strategy>", 10)
def test_structure_parser_any_text(text, max_chars):
    parsed = parse_guide_output(text, max_strategy_chars=max_chars, max_output_chars=200)
    assert isinstance(parsed, ParsedGuideOutput)
    assert parse_guide_output(text, max_strategy_chars=max_chars, max_output_chars=200) == parsed
    if parsed.structure_ok:
        assert parsed.error is None and isinstance(parsed.strategy, str)
        assert not is_blank(parsed.strategy) and len(parsed.strategy) <= max_chars
        parsed.strategy.encode("utf-8")  # what reaches the core is always valid text
        if parsed.think is not None:
            parsed.think.encode("utf-8")
    else:
        assert isinstance(parsed.error, StructureError) and parsed.message and parsed.strategy is None


@FUZZ
@given(st.text(ANY_CHAR.filter(lambda c: c not in "<>"), min_size=1, max_size=100))
def test_structure_parser_keeps_any_visible_strategy(body):
    parsed = parse_guide_output(f"<think>t</think>\n<strategy>{body}</strategy>")
    try:
        body.encode("utf-8")
    except UnicodeEncodeError:
        assert parsed.error is StructureError.INVALID_TEXT
        return
    if is_blank(body):
        assert parsed.error is StructureError.EMPTY_STRATEGY
    else:
        assert parsed.structure_ok and parsed.strategy == body.strip()


# -- the GSM8K answer extractor ---------------------------------------------------------------------
MATH_TEXT = st.one_of(ANY_TEXT, pieces("\\boxed{", "\\boxed", "{", "}", "####", "\\frac", "\\dfrac", "12", "3", ".5",
                                       "-", "\u2212", ",", "{,}", "\\,", "/", "^", "^{", "e5", "E", "\\times", "10",
                                       "\\text{", "$", "%", "(", ")", "0", "999999999999",
                                       # the answer statements: cues, corrections, hedges, words, asides
                                       "the answer is ", "Answer:", "Final answer", " not ", "if ", " or ",
                                       "either ", " maybe ", "between ", " and ", "**", "\n", ". ", "So ", "=",
                                       "fifty", "twenty-", "one", "a dozen", "Check: ", "(", " which ", "Mr. "))


@FUZZ
@given(MATH_TEXT)
def test_gsm8k_extractor_any_text(text):
    value, source = extract_answer(text)
    assert source in SOURCES
    assert (value is None) == (source in ("none", "ambiguous"))
    if value is not None:
        assert isinstance(value, Fraction)
        assert reference_value(format_number(value)) == value  # what the details show reads back exactly


@FUZZ
@given(st.integers(-10**12, 10**12), st.integers(1, 10**6), ANY_TEXT.filter(lambda t: "boxed" not in t))
def test_gsm8k_boxed_values_are_read_exactly(numerator, denominator, prose):
    value = Fraction(numerator, denominator)
    minus = "\u2212" if value < 0 else ""
    forms = [f"\\boxed{{{format_number(value)}}}",
             f"\\boxed{{{minus}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}}}",
             f"\\boxed{{{value.numerator}/{value.denominator}}}"]
    for form in forms:
        assert extract_answer(prose + " " + form) == (value, "boxed"), form


@FUZZ
@given(st.integers(0, 10**15))
def test_gsm8k_thousands_separators(n):
    grouped = f"{n:,}"
    for sep in (",", "{,}", "\\,"):
        assert extract_answer(f"\\boxed{{{grouped.replace(',', sep)}}}") == (Fraction(n), "boxed")


# -- the code extractor ---------------------------------------------------------------------------
CODE_TEXT = st.one_of(ANY_TEXT, pieces("```", "```python\n", "~~~py\n", "\n```\n", "def f(x):\n", "    return x\n",
                                       "class A:\n", "import os\n", "    ", "@dec\n", "print(f(1))\n", "f"))


@FUZZ
@given(CODE_TEXT, st.sampled_from([None, "f", "solve"]))
def test_code_extractor_any_text(text, entry_point):
    extracted = extract_code(text, entry_point)
    assert isinstance(extracted, ExtractedCode) and isinstance(extracted.code, str)
    assert extracted.source in {"fenced", "bare", "none"}
    assert extracted.found == bool(extracted.code.strip())
    assert extracted.source != "none" or not extracted.found


@FUZZ
@given(st.text(ANY_CHAR.filter(lambda c: c not in "`~"), max_size=200),
       st.text(ANY_CHAR.filter(lambda c: c not in "`~"), max_size=200))
def test_code_extractor_finds_a_fenced_solution_among_prose(before, after):
    code = "def solve(x):\n    return x + 1\n"
    extracted = extract_code(f"{before}\n```python\n{code}```\n{after}", "solve")
    assert extracted.source == "fenced" and extracted.defines_entry_point and extracted.code == code


# -- the cache key (gcop_env/cores/cache.py is owned by the models engineer) ---------------------------------
VALID_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)


def _key(content: str, system: str = "", index: int = 0) -> str:
    request = CoreRequest(messages=(Message("user", content),), system=system, sampling=SamplingParams(),
                          sample_index=index)
    return request_key("openai", "m", request, "v1")


@FUZZ
@given(VALID_TEXT, VALID_TEXT)
def test_cache_key_is_a_stable_digest_that_tells_texts_apart(a, b):
    key = _key(a)
    assert len(key) == 64 and set(key) <= set(string.hexdigits.lower()) and key == _key(a)
    assert (key == _key(b)) == (a == b)
    assert _key(a, system=b) != _key(b, system=a) or a == b


@FUZZ
@given(ANY_TEXT)
@example("\ud800")
def test_cache_key_accepts_any_str(text):
    key = _key(text)
    assert len(key) == 64 and key == _key(text)


# -- the JSONL readers ------------------------------------------------------------------------------
JSONL_BYTES = st.one_of(
    st.binary(max_size=400),
    st.lists(st.sampled_from([b"{}", b'{"a": 1}', b"\n", b"[1]", b"{", b'"x"', b"\xff", b"\xe9", b"\\ud800",
                              b'{"s": "\\ud800"}', b"\r\n", b" ", b"null", b'{"a": "\xc3\xa9"}']), max_size=20).map(b"".join))


@FUZZ_FILES
@given(JSONL_BYTES)
@example(b"\x1c")  # blank to str.strip, not to bytes.strip: found by this test
def test_read_jsonl_rows_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("j") / "rows.jsonl"
    path.write_bytes(data)
    try:
        rows = read_jsonl_rows(path, repair=True)
    except JsonlError as exc:
        assert str(path) in str(exc) and exc.line >= 1
        assert path.read_bytes() == data  # a refused file is never cut
        return
    assert all(isinstance(r, dict) for r in rows)
    after = path.read_bytes()
    assert after == b"" or after.endswith(b"\n")  # the next appended row starts a clean line
    assert data.startswith(after) or after == data + b"\n"  # cut at the torn tail, or a newline added
    JsonlAppender(path).append({"next": 1})
    assert read_jsonl_rows(path) == rows + [{"next": 1}]


ROWS = st.lists(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), VALID_TEXT, st.booleans()), max_size=3),
                min_size=1, max_size=6)


@FUZZ_FILES
@given(ROWS, st.data())
def test_a_write_killed_at_any_byte_loses_only_the_torn_row(tmp_path_factory, rows, data):
    path = tmp_path_factory.mktemp("j") / "rows.jsonl"
    writer = JsonlAppender(path)
    for row in rows:
        writer.append(row)
    full = path.read_bytes()
    cut = data.draw(st.integers(0, len(full)))
    path.write_bytes(full[:cut])
    complete_lines = full[:cut].count(b"\n")
    got = read_jsonl_rows(path, repair=True)
    assert got == rows[:len(got)] and len(got) >= complete_lines  # a prefix; no complete row is lost
    writer.append({"next": 1})
    assert read_jsonl_rows(path) == rows[:len(got)] + [{"next": 1}]


@FUZZ_FILES
@given(JSONL_BYTES)
def test_score_predictions_reader_any_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("p") / "predictions.jsonl"
    path.write_bytes(data)
    rows = read_predictions(path)
    assert len(rows) <= data.count(b"\n") + 1
    for row in rows:
        assert (row.error is None) == (row.completion is not None)
        if row.error is None:
            row.completion.encode("utf-8")
            row.task_id.encode("utf-8")
        else:
            assert f"{path}: line {row.line}" in row.error


@FUZZ_FILES
@given(JSONL_BYTES, st.sampled_from(["d.jsonl", "d.json", "d.csv", "d.parquet", "d.jsonl.gz"]))
def test_data_file_reader_any_bytes(tmp_path_factory, data, name):
    path = tmp_path_factory.mktemp("d") / name
    path.write_bytes(data)
    try:
        rows = read_data_file(path)
    except DataError as exc:
        assert str(path) in str(exc)
        return
    for where, row in rows:
        assert str(path) in where and isinstance(row, dict)
        json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")


@FUZZ
@given(ANY_TEXT)
def test_blank_means_nothing_visible(text):
    import unicodedata

    assume(text)
    visible = [c for c in text if unicodedata.category(c) not in ("Cf", "Zs", "Zl", "Zp", "Cc") and not c.isspace()]
    assert is_blank(text) == (not visible)
