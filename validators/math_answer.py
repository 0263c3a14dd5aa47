r"""The final number of a math reply, read the way a careful grader reads it.

:func:`extract_answer` finds every place where the reply *states* an answer and takes the last:

* ``\boxed{…}`` (its content), ``#### N`` (a line starting with a number: ``#### Step 1`` is a
  Markdown header, not an answer), a whole line in bold (``**18 dollars.**``, ``**Total: $1,250**``);
* an answer cue: "the answer is", "final answer", "Answer:", "the correct answer is", "the answer
  should be", "the correct total is", a bare "Answer" / "Final Answer" header line (the number is
  then on the next line), "18 is the answer". A cue reads the first number after it, up to the end
  of its clause ("The answer is 30, which is 10 more than the 20" → 30), or the result after its
  last ``=`` ("the answer is 3 × 4 = 12" → 12). A cue negated ("the answer is not 12") or in a
  hypothetical ("if the answer were 20", "suppose the answer is 10", "had she bought 4, the
  answer would be 32") states nothing.

So a later explicit correction wins over an earlier ``####`` or ``\boxed{}``, an answer given first
wins over the numbers of the explanation after it, and numbers after a cue do not count. When the
reply states nothing, a concluding sentence ("So she has 15 apples left.") wins over numbers after
it only when those are a check or an aside ("To verify: 15 + 5 = 20", "(60 adults and 30
children)", "That's 25 more than on Monday"); else the last number of the reply is read.

Number words count ("fifty", "twenty-four", "one hundred and twenty", "a dozen", "three and a
half"; a lone "one" only after a cue; "$4 million" is 4, as GSM8K counts it). An answer that offers two different numbers
("either 39 or 44", "12 or 13", "7 (or possibly 8)", "\boxed{3, 4}", "between 20 and 25", "15. Or
maybe 16.") is *ambiguous* and is not read; nor is a reply whose last sentence says the answer
cannot be determined.

Numbers are read as exact rationals (:class:`fractions.Fraction`) and compared exactly:

* signs written with any minus character (``-``, ``−`` U+2212, ``–``, ``﹣``, ``－``);
* thousands separators ``1,234``, ``1{,}234``, ``1\,234``, ``1 234`` (in a box, after ``####`` or a cue);
* fractions ``\frac{1}{2}``, ``\dfrac``, ``\tfrac``, ``\frac12``, ``a/b``, the mixed numbers
  ``2\frac{1}{2}`` and (after a cue) ``3 1/2``;
* exponents ``10^3``, ``10^{3}``, ``2.5 \times 10^{4}``, ``1e5``;
* ``$``, ``\$``, ``%``, ``\%``, ``\text{…}`` units and ``x =`` around the number are ignored.

Every step is linear in the reply's length (a megabyte of hostile text is read in well under a
second or two), and at most :data:`_MAX_STATEMENTS` statements are read, latest first.
"""

from __future__ import annotations

import bisect
import re
from fractions import Fraction

__all__ = ["extract_answer", "normalize_number", "format_number", "SOURCES"]

# Where an answer came from. "ambiguous" and "none" come with no value.
SOURCES = ("boxed", "hashes", "bold", "cue", "conclusion", "last_number", "ambiguous", "none")

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")  # a number token in prose (the leak check's unit)
_BOXED = re.compile(r"\\boxed\s*\{")

_MINUS = dict.fromkeys(map(ord, "\u2212\u2012\u2013\u2014\u2010\u2011\ufe63\uff0d\u2796"), "-")
# one numeral: 1,234,567 (true thousands groups only) or 1234, with decimals and a decimal exponent
_NUMERAL = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?"
_POWER = r"\^\s*-?\s*\d+"
_TERM = rf"(?:{_NUMERAL})(?:\s*{_POWER})?"
# a signed term, times a power of ten, over a term: -2.5*10^4, 36/2, -3/4, 1/2
_EXPRESSION = re.compile(
    rf"(?P<minus>-\s*)?(?P<num>{_TERM})(?:\s*\*\s*(?P<times>10\s*{_POWER}))?"
    rf"(?:\s*/\s*(?P<den_minus>-\s*)?(?P<den>{_TERM}))?")
_FRAC = re.compile(r"\\[dt]?frac\s*(?:\{(?P<a>[^{}]*)\}|(?P<a1>\d))\s*(?:\{(?P<b>[^{}]*)\}|(?P<b1>\d))")
_MIXED = re.compile(r"(?<!\d)(?P<whole>\d+)\s*\\[dt]?frac\s*\{\s*(?P<a>\d+)\s*\}\s*\{\s*(?P<b>\d+)\s*\}")
_PLAIN_MIXED = re.compile(r"^(?P<whole>\d+)\s+(?P<a>\d+)\s*/\s*(?P<b>\d+)(?![\d/])")
_MAX_EXPONENT = 400  # 10^400 is a number; 1e999999 is an attack on the validator
_MAX_DIGITS = 20000  # a bound on the digits of any intermediate value
_MAX_STATEMENTS = 64  # statements read, latest first; a real reply states its answer a few times at most


# ------------------------------------------------------------------------------ one number


def _clean(raw: str, spaced_thousands: bool) -> str:
    """LaTeX and typography around a number turned into a plain expression (``\\frac{1}{2}`` → ``1/2``)."""
    text = raw.translate(_MINUS)
    text = re.sub(r"\\(?:text|mathrm|textbf|textit|mbox|operatorname)\s*\{[^{}]*\}", " ", text)
    text = re.sub(r"(?<=\d)(?:\{,\}|\\,|\\!|\\;|\\ |~)(?=\d{3}(?!\d))", "", text)  # LaTeX thousands
    if spaced_thousands:
        text = re.sub(r"(?<=\d)[ \u00a0\u202f\u2009](?=\d{3}(?!\d))", "", text)
    text = text.replace("\\$", " ").replace("$", " ").replace("\\%", " ").replace("%", " ")
    text = re.sub(r"\\(?:left|right|displaystyle|,|!|;|:|quad|qquad)", " ", text)
    text = re.sub(r"\\(?:times|cdot)|×|·", "*", text)
    text = _MIXED.sub(_mixed_number, text)  # 2\frac{1}{2} → 5/2 (a sign before it applies to the whole)
    text = _FRAC.sub(_fraction, text)
    text = re.sub(r"\^\s*\{\s*(-?\s*\d+)\s*\}", r"^\1", text)  # 10^{3} → 10^3
    text = re.sub(r"\((\s*-?[\d.,eE+]+\s*)\)", r"\1", text)  # (1)/(2) → 1/2
    return text


def _fraction(m: re.Match) -> str:
    """``\\frac{a}{b}`` → ``(a)/(b)``; an empty part (``\\frac{}{3}``) stays empty (no number)."""
    a = m.group("a") if m.group("a") is not None else m.group("a1")
    b = m.group("b") if m.group("b") is not None else m.group("b1")
    return f"({a.strip()})/({b.strip()})"


def _mixed_number(m: re.Match) -> str:
    whole, a, b = int(m.group("whole")), int(m.group("a")), int(m.group("b"))
    return f"{whole * b + a}/{b}" if b else m.group(0)


def _term(text: str) -> Fraction | None:
    """``1,234.5``, ``1e5`` or ``10^3`` as a rational; None when absurdly large (bounded time)."""
    text = re.sub(r"\s+", "", text)
    base, _, power = text.partition("^")
    mantissa, _, exp10 = base.lower().replace(",", "").partition("e")
    if len(mantissa) > _MAX_DIGITS or exp10 and abs(int(exp10)) > _MAX_EXPONENT:
        return None
    value = Fraction(mantissa) * (Fraction(10) ** int(exp10) if exp10 else 1)
    if power:
        exponent = int(power)
        if abs(exponent) > _MAX_EXPONENT or abs(exponent) * len(mantissa) > _MAX_DIGITS or value == 0 and exponent < 0:
            return None
        value = value ** exponent
    return value


def _evaluate(m: re.Match) -> Fraction | None:
    try:
        value = _term(m.group("num"))
        if value is not None and m.group("times"):
            times = _term(m.group("times"))
            value = None if times is None else value * times
        if value is not None and m.group("den"):
            den = _term(m.group("den"))
            value = None if not den else value / den
            if value is not None and m.group("den_minus"):
                value = -value
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    if value is not None and m.group("minus"):
        value = -value
    return value


def _previous_char(text: str, index: int) -> str:
    """The last non-blank character before ``index`` ('' at the start)."""
    index -= 1
    while index >= 0 and text[index].isspace():
        index -= 1
    return text[index] if index >= 0 else ""


def _candidates(text: str):
    """(match, value) of each quantity in cleaned ``text``, in order; a number that is the exponent
    or subscript of a symbol (``m^2``, ``x_1``, ``CO2``) is none."""
    for m in _EXPRESSION.finditer(text):
        if _previous_char(text, m.start()) in ("^", "_") or text[m.start() - 1:m.start()].isalpha():
            continue
        value = _evaluate(m)
        if value is not None and m.group("minus") and _previous_char(text, m.start()).isdigit():
            value = -value  # "5-3": a subtraction, and the number is 3
        yield m, value


def normalize_number(raw: str, spaced_thousands: bool = True) -> Fraction | None:
    """The last number written in ``raw`` as an exact rational; None when there is none.

    ``'$1,234.0'`` → 1234, ``'−18'`` → −18, ``'\\frac{1}{2}'`` → 1/2, ``'36/2'`` → 18,
    ``'10^3'`` → 1000, ``'1e5'`` → 100000. A minus sign counts only as a sign (``5-3`` is not −3),
    and a number that is the exponent or subscript of a symbol (``m^2``) is not a candidate.
    """
    text = _clean(raw, spaced_thousands)
    last = None
    for m, value in _candidates(text):
        last = value
    return last


def format_number(value: Fraction) -> str:
    """Canonical text of a rational: ``18``, ``-0.75`` (when the decimal is exact), else ``1/3``."""
    if value.denominator == 1:
        return str(value.numerator)
    den, twos, fives = value.denominator, 0, 0
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    digits = max(twos, fives)
    scaled = abs(value.numerator) * (10 ** digits // value.denominator)
    text = str(scaled).rjust(digits + 1, "0")
    return ("-" if value < 0 else "") + (text[:-digits] + "." + text[-digits:]).rstrip("0").rstrip(".")


# ---------------------------------------------------------------------------- number words

_UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), start=2)}
_SCALES = {"thousand": 10 ** 3, "million": 10 ** 6, "billion": 10 ** 9}
# longest first, so that "seventeen" is not read as "seven"
_WORD = "(?:" + "|".join(sorted([*_UNITS, *_TENS, "hundred", *_SCALES], key=len, reverse=True)) + ")"
# "a dozen" is 12; a bare "dozen" is a unit ("7 dozen eggs": the answer is 7)
# (the look-ahead after \b is a quick filter: a number word starts with one of these letters)
_WORD_RUN = re.compile(
    rf"\b(?=[abefhmnostz])(?<!-)(?:a\s+dozen|(?:an?\s+(?=(?:hundred|thousand|million|billion)\b))?{_WORD}"
    rf"(?:(?:\s+and\s+|\s*-\s*|\s+){_WORD})*(?:\s+and\s+a\s+half)?)(?![\w-])", re.IGNORECASE)
# a quantifier of a known set, not a result: "the two movies", "in all three days", "each of the four"
_DETERMINER = re.compile(r"\b(?:the|these|those|all|every|each|both|of|per|first|last|next|other|its|their|his|her)\s+$",
                         re.IGNORECASE)


def _word_value(run: str) -> Fraction | None:
    """"twenty-four" → 24, "one hundred and twenty" → 120, "fourteen hundred" → 1400, "a dozen" → 12;
    None for a run that is no number ("five six")."""
    words = re.findall(r"[a-z]+", run.lower())
    half = words[-3:] == ["and", "a", "half"]
    if half:
        words = words[:-3]
    total, current, last = 0, 0, None  # last: the kind of the previous number word
    for w in words:
        if w in ("a", "an", "and"):
            continue
        if w in _UNITS or w in _TENS:
            kind = "unit" if w in _UNITS else "tens"
            if last == "unit" or last == "tens" and (kind == "tens" or _UNITS.get(w, 10) >= 10):
                return None  # "five six", "twenty thirty", "twenty eleven"
            current += _UNITS.get(w, 0) + _TENS.get(w, 0)
            last = kind
        elif w in ("hundred", "dozen"):  # "dozen" only as "a dozen"
            current = (current or 1) * (100 if w == "hundred" else 12)
            last = w
        else:
            total += (current or 1) * _SCALES[w]
            current, last = 0, w
    return Fraction(total + current) + (Fraction(1, 2) if half else 0)


def _words_to_numerals(text: str) -> tuple[str, str]:
    """The text with its number words written as numerals ("fifty" → "50", "one hundred and
    twenty" → "120"), twice: for answer statements, where every number word counts, and for the
    rest of the reply, where a word after a determiner stays a word ("the two movies"). A lone
    "one" ("each one") stays a word in both. One scan of the text."""
    statement, prose, last = [], [], 0
    for m in _WORD_RUN.finditer(text):
        run = m.group(0)
        value = None if run.lower() == "one" else _word_value(run)
        if value is None:
            continue
        numeral = format_number(value)
        before = text[last:m.start()]
        statement += [before, numeral]
        quantifier = _DETERMINER.search(text, max(0, m.start() - 12), m.start()) is not None
        prose += [before, run if quantifier else numeral]
        last = m.end()
    if last == 0:
        return text, text
    return "".join(statement) + text[last:], "".join(prose) + text[last:]


# ------------------------------------------------------------------------------ statements

_NUM_RAW = r"[-−]?(?:\\?\$\s?)?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?"
_RAW_NUMBER = re.compile(_NUM_RAW)
_RAW_NUMBER_OR_ONE = re.compile(rf"{_NUM_RAW}|(?<![\w-])one(?![\w-])", re.IGNORECASE)
# "A or B", "A apples or B", "A, or possibly B", "A (or B", "either A or B"
_OR_BETWEEN = r"\s*(?:[^\W\d_]+\s*)?[,)]?\s*\(?\s*\bor\b\s+(?:maybe\s+|perhaps\s+|possibly\s+|even\s+)?[\\$({]*(?:boxed\{)?"
_ALTERNATIVE_AFTER = re.compile(rf"^\}}?\$?{_OR_BETWEEN}\s*(?P<b>{_NUM_RAW})", re.IGNORECASE)
_ALTERNATIVE_BEFORE = re.compile(rf"(?P<a>{_NUM_RAW})\}}?\$?{_OR_BETWEEN}\s*$", re.IGNORECASE)
_RANGE_AFTER = re.compile(rf"^\s*(?:[^\W\d_]+\s*)?(?:to|and|-|–)\s*(?P<b>{_NUM_RAW})", re.IGNORECASE)
_RANGE_BEFORE = re.compile(r"\b(?:between|approximately|about|around|roughly|somewhere)\s*\$?\s*$", re.IGNORECASE)
_RANGE_END_BEFORE = re.compile(rf"\b(?:between|(?:approximately|about|around|roughly)(?:\s+from)?)\s*\$?\s*(?P<a>{_NUM_RAW})"
                               rf"\s*(?:[^\W\d_]+\s*)?(?:to|and|-|–)\s*\$?\s*$", re.IGNORECASE)
_HEDGE_AFTER = re.compile(rf"^[^\n]{{0,80}}?\bor\s+(?:maybe|perhaps|possibly)\b[^\d\n]{{0,20}}?(?P<b>{_NUM_RAW})",
                          re.IGNORECASE)
# in a box, "3, 4", "3; 4", "3 or 4", "3 and 4" (but "1,234" is one number)
_IN_BOX_ALTERNATIVES = re.compile(rf"(?P<a>{_NUM_RAW})\s*(?:,\s+|,(?!\d{{3}}(?!\d))|;|\bor\b|\band\b)\s*(?P<b>{_NUM_RAW})",
                                  re.IGNORECASE)

_ADJECTIVE = r"(?:(?:final|correct|corrected|right|real|actual|true|new)\s+)?"
_CUE = re.compile(
    r"(?:"
    # the answer is / my final answer would be / the correct answer: / answer =
    rf"\b(?=[acfnrt]){_ADJECTIVE}answer(?:\s+to\s+(?:the|this)\s+(?:question|problem))?\s*(?:\*\*|__|\*)?\s*"
    r"(?:(?:is|would\s+be|should\s+be|will\s+be|must\s+be)\b(?:\s+(?:still|therefore|thus|then))?\s*:?|[:=]|[—–-](?=\s))"
    # Final Answer (a header; the number may be on the next line) / final result:
    r"|\bfinal\s+(?:answer|result)\b\s*(?:\*\*|__|\*)?\s*(?:is\b|[:=—–-]|(?=\n|$|\$?\d))"
    # the correct total is / the right number is
    r"|\b(?:correct|corrected|right|real|actual)\s+(?:total|number|amount|count|value|result)\s+is\b\s*:?"
    r")", re.IGNORECASE)
_ANSWER_HEADER = re.compile(r"^[ \t#>*_]*(?:final[ \t]+)?answer[ \t*_:]*$", re.IGNORECASE | re.MULTILINE)
# "18 is the answer": the phrase is found first, then the number just before it (a bounded look back)
_IS_THE_ANSWER = re.compile(rf"\b(?=i)is\s+(?:the|my|our)\s+{_ADJECTIVE}answer\b", re.IGNORECASE)
_NUMBER_BEFORE = re.compile(rf"(?P<n>{_NUM_RAW})\s*(?:\*\*)?\s+$")
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_BOLD_LINE = re.compile(
    r"^[ \t]*(?:[-*+>][ \t]+)?\*\*[ \t]*(?P<body>(?:(?:final\s+answer|answer|total|result)[^:*\n]{0,20}:[ \t]*)?"
    r"[-−$\\]*[ \t]*\d[^*\n]{0,30}?)[ \t]*\*\*[ \t.]*$", re.IGNORECASE | re.MULTILINE)
_HYPOTHETICAL = re.compile(r"\b(?:if|suppose|supposing|assume|assuming|tempting|might|had|guess|whether|unless|"
                           r"wrongly|mistakenly|instead\s+of)\b", re.IGNORECASE)
_CLAUSE_START = re.compile(r"[.;!?:\n]|\bbut\b", re.IGNORECASE)
# where an answer's clause ends, once its number is read
_NOT_ABBREVIATION = (r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bSt)(?<!\bJr)(?<!\bSr)(?<!\bvs)(?<!\betc)(?<!\bapprox)"
                     r"(?<!\be\.g)(?<!\bi\.e)")
_HARD_END = re.compile(rf"\n|{_NOT_ABBREVIATION}[.!?](?=\s|$|\*)")
_SOFT_END = re.compile(
    r"[;(]|\s[—–]\s|,\s*(?=[^\d\s])|\b(?:which|since|because|though|although|but|not|up\s+from|compared|exceeding|"
    r"leaving|based|from|after|before|for\s+the|over\s+the|out\s+of|than|while|whereas|where|when|including)\b",
    re.IGNORECASE)
_CONNECTIVE = re.compile(r"\b(?:so|thus|therefore|hence|which\s+means|that\s+means|meaning)\b", re.IGNORECASE)
_NEGATED = re.compile(r"^\W*not\b", re.IGNORECASE)
_CONCLUSION = re.compile(r"^\W*(?:so|thus|therefore|hence|in\s+total|altogether|in\s+all|overall|in\s+conclusion|"
                         r"finally|this\s+means|that\s+means|consequently)\b", re.IGNORECASE)
# after a concluding sentence: a check ("To verify: 15 + 5 = 20"; its whole paragraph), or an aside
# that computes nothing new ("That's 25 more than on Monday", "(60 adults and 30 children)")
_CHECK = re.compile(r"^\W*(?:check|verify|verification|verifying|to\s+verify|to\s+check|let\s+me\s+(?:double[- ]?)?"
                    r"(?:check|verify)|let's\s+(?:double[- ]?)?(?:check|verify)|double[- ]?check|sanity\s+check)\b|✓",
                    re.IGNORECASE)
_ASIDE = re.compile(r"^\W*(?:that's|that\s+is|this\s+is|note|for\s+reference|i\.e\.|if)\b|^\s*\(", re.IGNORECASE)
# a sentence: up to . ! ? or a line end ("5.5", "Mr." and "e.g." do not end one)
_ABBREVIATION_DOT = (r"(?:(?:(?<=\bMr)|(?<=\bMrs)|(?<=\bMs)|(?<=\bDr)|(?<=\bSt)|(?<=\bJr)|(?<=\bSr)|(?<=\bvs)|(?<=\betc)"
                     r"|(?<=\bapprox)|(?<=\be\.g)|(?<=\bi\.e))\.|(?<=\bi)\.(?=e\.)|(?<=\be)\.(?=g\.))")
_SENTENCE = re.compile(rf"(?:[^\n.!?]|[.!?](?=\d)|{_ABBREVIATION_DOT})*(?:[.!?]+|\n|$)")
_ROUNDED = re.compile(rf"[^.;\n]{{0,40}}?\b(?:rounds?|rounded|rounding)\s+(?:down\s+|up\s+|off\s+)?to\s+(?P<n>{_NUM_RAW})", re.IGNORECASE)
_REFUSAL = re.compile(r"\b(?:cannot|can't|can\s+not|unable\s+to|not\s+able\s+to|impossible\s+to)\s+"
                      r"(?:be\s+)?(?:determine|determined|solve|solved|answer|answered|work\s+out|tell|know)\b"
                      r"|\bnot\s+enough\s+information\b|\binsufficient\s+information\b|\bi\s+(?:don't|do\s+not)\s+know\b",
                      re.IGNORECASE)


class _Ambiguous(Exception):
    """The statement offers two different numbers."""


def _raw_value(raw: str) -> Fraction | None:
    return normalize_number(raw.replace("\\", " "), spaced_thousands=False)


def _check_alternatives(text: str, start: int, end: int, value: Fraction) -> None:
    """Raise :class:`_Ambiguous` when the number at ``text[start:end]`` (worth ``value``) is offered
    beside a different one: "A or B", "either A or B", "A (or possibly B)", "between A and B",
    "approximately A to B", "A. Or maybe B"."""
    after, before = text[end:end + 200], text[max(0, start - 80):start]
    others = []
    for pattern, where, group in ((_ALTERNATIVE_AFTER, after, "b"), (_ALTERNATIVE_BEFORE, before, "a"),
                                  (_HEDGE_AFTER, after, "b")):
        m = pattern.search(where)
        # a term of an expression is no alternative: "100/5 = 5A/5 or 20 = A", "0.20Y or 1.2Y"
        if m and _previous_char(where, m.start(group)) not in "/*+=×÷^-" and \
                not re.match(r"[\w(/*^]", where[m.end(group):m.end(group) + 1]):
            others.append(m.group(group))
    if _RANGE_BEFORE.search(before):
        m = _RANGE_AFTER.search(after)
        if m:
            others.append(m.group("b"))
    m = _RANGE_END_BEFORE.search(before)  # the value ends a range: "between 5 and 6"
    if m:
        others.append(m.group("a"))
    for other in others:
        other_value = _raw_value(other)
        if other_value is not None and other_value != value:
            raise _Ambiguous


def _read_clause(text: str, start: int, *, conclusion: bool = False) -> Fraction | None:
    """The number an answer clause starting at ``text[start]`` states; None when it states none.

    The clause runs to the end of its sentence or line and, once its first number is read, stops
    at the next clause ("…, which", "since", "(", ";"). After a cue (and in a box, after ``####``,
    in a bold line) the number is the clause's first, or the result after its last ``=``
    ("the answer is 3 × 4 = 12"); a lone "one" is 1 there. A concluding sentence states the
    result after its last ``=`` when it has one ("Therefore in 2 months, they need 700x2 = 1400"),
    else the last number of its first clause ("So Jake has 23 cards, after trading away 7" → 23).
    """
    hard = _HARD_END.search(text, start)
    clause_end = hard.start() if hard else len(text)
    if conclusion:
        # the last step: after the last "so"/"therefore" with a number, else the result after the last "="
        connective = None
        for connective in _CONNECTIVE.finditer(text, start, clause_end):
            pass
        equals = text.rfind("=", start, clause_end)
        if connective is not None and connective.end() > equals and _RAW_NUMBER.search(text, connective.end(), clause_end):
            start, equals = connective.end(), text.rfind("=", connective.end(), clause_end)
        if equals != -1:
            start = equals + 1
        head = _RAW_NUMBER.search(text, start, clause_end)
    else:
        head = _RAW_NUMBER_OR_ONE.search(text, start, clause_end)
    if head is None:
        return None
    soft = _SOFT_END.search(text, head.end(), clause_end)
    clause = text[start:soft.start() if soft else clause_end]
    if not conclusion:
        clause = re.sub(r"(?<![\w-])one(?![\w-])", "1", clause, flags=re.IGNORECASE)
    cleaned = _clean(clause, spaced_thousands=not conclusion)
    if "=" in cleaned:
        cleaned = cleaned[cleaned.rindex("=") + 1:]
    mixed = _PLAIN_MIXED.match(cleaned.strip().lstrip("*`_ "))
    if not conclusion and mixed and int(mixed.group("b")):
        value = int(mixed.group("whole")) + Fraction(int(mixed.group("a")), int(mixed.group("b")))
    else:
        found = list(_candidates(cleaned))
        if not found:
            return None
        value = found[-1][1] if conclusion and equals == -1 else found[0][1]
    if value is None:
        return None
    head_value = Fraction(1) if head.group().lower() == "one" else _raw_value(head.group())
    _check_alternatives(text, head.start(), head.end(), head_value if head_value is not None else value)
    rounded = _ROUNDED.match(text, head.end(), clause_end)  # "15.36 minutes, which rounds down to 15"
    if rounded is not None and _raw_value(rounded.group("n")) is not None:
        return _raw_value(rounded.group("n"))
    return value


def _boxes(text: str) -> list[tuple[int, int]]:
    """(start, end) of the content of every ``\\boxed{…}`` whose braces close, in one linear pass."""
    closing: dict[int, int] = {}
    stack: list[int] = []
    for m in re.finditer(r"[{}]", text):
        if m.group() == "{":
            stack.append(m.start())
        elif stack:
            closing[stack.pop()] = m.start()
    boxes = []
    for m in _BOXED.finditer(text):
        brace = m.end() - 1
        if brace in closing:
            boxes.append((brace + 1, closing[brace]))
    return boxes


def _last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{…}`` whose braces close, in time linear in ``text``."""
    boxes = _boxes(text)
    return text[boxes[-1][0]:boxes[-1][1]] if boxes else None


def _read_box(text: str, start: int, end: int) -> Fraction | None:
    content = text[start:end]
    unwrapped = re.sub(r"\\(?:text|mathrm|mbox)\s*\{([^{}]*)\}", r" \1 ", content)
    for m in _IN_BOX_ALTERNATIVES.finditer(unwrapped):
        a, b = _raw_value(m.group("a")), _raw_value(m.group("b"))
        if a is not None and b is not None and a != b:
            raise _Ambiguous
    cleaned = _clean(content, spaced_thousands=True)
    if "=" in cleaned:
        cleaned = cleaned[cleaned.rindex("=") + 1:]
    value = None
    for _, value in _candidates(cleaned):
        pass
    if value is not None:
        _check_alternatives(text, start, end, value)
    return value


def _statements(text: str) -> list[tuple[int, str, object]]:
    """(where the stated value starts, source, how to read it) of every answer statement."""
    found: list[tuple[int, str, object]] = []
    boxes = _boxes(text)
    for start, end in boxes:
        found.append((start, "boxed", lambda s=start, e=end: _read_box(text, s, e)))
    for m in _HASHES.finditer(text):
        if re.match(r"[\s*$\\−–-]*(?:\d|\.\d)", m.group(1)):  # "#### Step 1" is a Markdown header
            found.append((m.start(1), "hashes", lambda s=m.start(1): _read_clause(text, s)))
    for m in _BOLD_LINE.finditer(text):
        found.append((m.start("body"), "bold", lambda s=m.start("body"): _read_clause(text, s)))
    for m in _CUE.finditer(text):
        if _hypothetical(text, m.start()) or _NEGATED.match(text[m.end():m.end() + 20]):
            continue
        found.append((m.end(), "cue", lambda s=m.end(): _read_cue(text, s)))
    for m in _ANSWER_HEADER.finditer(text):
        found.append((m.end(), "cue", lambda s=m.end(): _read_cue(text, s)))
    for m in _IS_THE_ANSWER.finditer(text):
        number = _NUMBER_BEFORE.search(text, max(0, m.start() - 40), m.start())
        if number is not None and not _hypothetical(text, number.start()):
            found.append((number.start(), "cue", lambda s=number.start(): _read_clause(text, s)))
    # a cue inside a box ("\\boxed{\\text{answer: } 7}") is part of the box's statement
    spans: list[list[int]] = []  # the boxes' outermost spans, in order
    for start, end in sorted(boxes):
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        else:
            spans.append([start, end])
    starts = [span[0] for span in spans]

    def in_box(position: int) -> bool:
        i = bisect.bisect_right(starts, position) - 1
        return i >= 0 and position < spans[i][1]

    return [s for s in found if s[1] == "boxed" or not in_box(s[0])]


def _hypothetical(text: str, cue_start: int) -> bool:
    """The cue sits in a clause that supposes ("if the answer were", "had she bought 4, the answer…")."""
    window = text[max(0, cue_start - 120):cue_start]
    boundary = None
    for boundary in _CLAUSE_START.finditer(window):
        pass
    return bool(_HYPOTHETICAL.search(window[boundary.end():] if boundary else window))


def _read_cue(text: str, start: int) -> Fraction | None:
    """The number after a cue; when the rest of its line is empty ("Answer:\\n\\n27"), the next line's."""
    line_end = text.find("\n", start)
    line_end = len(text) if line_end == -1 else line_end
    if not re.search(r"[\w$\\]", text[start:line_end]):
        nxt = re.compile(r"\n[ \t]*(?=\S)").search(text, line_end)
        if nxt is None or nxt.start() > line_end + 3 and text[line_end:nxt.start()].count("\n") > 3:
            return None
        start = nxt.end()
    return _read_clause(text, start)


def _conclusion(text: str) -> Fraction | None:
    """The last concluding sentence ("So …", "Therefore …", "In total …") with a number, read as its
    result, when every later sentence with a number is a check or an aside (the lines of a
    "Verification:" paragraph are all asides); else None."""
    sentences = [m.group() for m in _SENTENCE.finditer(text) if m.group()]
    starts, position = [], 0
    for sentence in sentences:
        starts.append(text.index(sentence, position))
        position = starts[-1] + len(sentence)
    last = next((i for i in range(len(sentences) - 1, -1, -1)
                 if _CONCLUSION.match(sentences[i]) and _RAW_NUMBER.search(sentences[i])), None)
    if last is None:
        return None
    aside_paragraph = False
    for sentence in sentences[last + 1:]:
        if not sentence.strip():
            aside_paragraph = False  # a blank line ends a paragraph
            continue
        check = bool(_CHECK.search(sentence))
        aside = check or "=" not in sentence and bool(_ASIDE.search(sentence))
        if _RAW_NUMBER.search(sentence) and not aside and not aside_paragraph:
            return None  # a later sentence states a new number: the last number is the answer
        aside_paragraph = aside_paragraph or check
    return _read_clause(text, starts[last], conclusion=True)


def extract_answer(text: str) -> tuple[Fraction | None, str]:
    """(the number the reply states as its answer, where it came from: one of :data:`SOURCES`).

    The value is None exactly when the source is ``ambiguous`` (two different numbers offered)
    or ``none`` (no number, or the reply says it cannot answer).
    """
    text, prose = _words_to_numerals(text or "")
    statements = sorted(_statements(text), key=lambda s: s[0], reverse=True)
    for _, source, read in statements[:_MAX_STATEMENTS]:
        try:
            value = read()
        except _Ambiguous:
            return None, "ambiguous"
        if value is not None:
            return value, source
    text = prose
    last_sentence = next((m.group() for m in reversed(list(_SENTENCE.finditer(text[-2000:]))) if m.group().strip()), "")
    if _REFUSAL.search(last_sentence):
        return None, "none"
    try:
        concluded = _conclusion(text)
        if concluded is not None:
            return concluded, "conclusion"
        # the last sentence with a number states the result after its last "=" ("… = 35 miles in seven days")
        last_with_number = next((m for m in reversed(list(_SENTENCE.finditer(text[-2000:])))
                                 if _RAW_NUMBER.search(m.group())), None)
        if last_with_number is not None and "=" in last_with_number.group():
            value = _read_clause(text, max(0, len(text) - 2000) + last_with_number.start(), conclusion=True)
            if value is not None:
                return value, "last_number"
        cleaned = _clean(text, spaced_thousands=False)
        last = None
        for m, value in _candidates(cleaned):
            last = (m, value)
        if last is None or last[1] is None:
            return None, "none"
        raw = list(_RAW_NUMBER.finditer(text[-4000:]))
        if raw:
            offset = max(0, len(text) - 4000)
            _check_alternatives(text, offset + raw[-1].start(), offset + raw[-1].end(), last[1])
        return last[1], "last_number"
    except _Ambiguous:
        return None, "ambiguous"
