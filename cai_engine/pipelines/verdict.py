"""Reading a verdict out of one judge reply: soft from logprobs, else a strict parse.

*Soft verdict* (direct mode): ``P(first better) = P(A) / (P(A) + P(B))`` at the first answer-letter
position ("A", " A", "(A", "**B"...) of the first few tokens, by the two-label rule of
:mod:`cai_engine.pipelines.label_probability` (shared with the eval's yes/no classifier).

*Parsed verdict*: only the judge's own reply is read, and strictly: in direct mode the reply must
start with the letter (optionally "Answer:", "Response", brackets or bold); in chain-of-thought
mode its last non-empty line must be ``Answer: (A)`` / ``Answer: (B)``. Anything else is
unparseable and the caller retries, then records a failure with the raw text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from cai_engine.models.base import TokenLogprob
from cai_engine.pipelines.label_probability import label_probability, soft_label

Letter = Literal["A", "B"]
Method = Literal["logprobs", "parsed", "cot"]

_STRIP = " \t\r\n()[]*\"'`_.:,!"
_DIRECT = re.compile(
    r"^\W{0,4}(?:(?:the\s+)?(?:final\s+|correct\s+|better\s+)?(?:answer|response|option|choice)\s*(?:is\s*)?[:\-=]?\s*)?"
    r"[\(\[]?\s*((?-i:[AB]))\s*[\)\]]?(?=$|[\s.:,;!)*\]])",
    re.IGNORECASE,
)
_AMBIGUOUS = re.compile(r"^\W{0,4}[\(\[]?[AB][\)\]]?\s*(?:or|/|and|,)\s*[\(\[]?[AB]\b", re.IGNORECASE)
_COT_LINE = re.compile(r"^[\s*_#>]*(?:final\s+)?answer\s*[:：]\s*\*{0,2}\s*[\(\[]\s*([AB])\s*[\)\]][\s*_.]*$", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """One judge reply's reading: which letter, P(first shown is better), and how it was obtained."""

    letter: Letter | None  # None: a soft verdict of exactly 0.5
    p_first: float
    method: Method
    soft: bool  # True when p_first came from token probabilities rather than a hard letter


def normalise_token(token: str) -> str:
    """' A', '(A', '**A', 'A)' -> 'A'; anything else keeps its stripped form (e.g. 'As')."""
    return token.strip(_STRIP)


def _letter_of(token: str) -> Letter | None:
    norm = normalise_token(token)
    return norm if norm in ("A", "B") else None  # type: ignore[return-value]


def letter_probability(position: TokenLogprob) -> float | None:
    """P(A) / (P(A) + P(B)) at one token position, from its top alternatives (and the token itself)."""
    return label_probability(position, _letter_of, "A", "B")


def soft_from_logprobs(logprobs: list[TokenLogprob] | None, scan: int = 8) -> float | None:
    """P(first better) from the first answer-letter position among the first ``scan`` tokens."""
    return soft_label(logprobs, _letter_of, "A", "B", scan=scan)


def parse_direct(text: str) -> Letter | None:
    """Strict parse of a direct reply: it must begin with the verdict letter."""
    first_line = next((line for line in text.strip().splitlines() if line.strip()), "")
    if _AMBIGUOUS.match(first_line):
        return None
    match = _DIRECT.match(first_line)
    return match.group(1).upper() if match else None  # type: ignore[return-value]


def parse_cot(text: str) -> tuple[Letter, int] | None:
    """Strict parse of a chain-of-thought reply: (letter, its char offset) from the last line."""
    lines = text.rstrip().splitlines()
    last = next((line for line in reversed(lines) if line.strip()), None)
    if last is None:
        return None
    match = _COT_LINE.match(last)
    if not match:
        return None
    start = text.rstrip().rfind(last)
    return match.group(1).upper(), start + match.start(1)  # type: ignore[return-value]


def _answer_token(logprobs: list[TokenLogprob], letter: Letter) -> TokenLogprob | None:
    """The token carrying the letter of the final ``Answer: (X)`` line, found in the tokens' own text.

    Parsing the concatenated tokens (rather than mapping offsets of the returned text) is immune to
    a backend that stripped whitespace or cut a stop string from the text.
    """
    joined = "".join(position.token for position in logprobs)
    parsed = parse_cot(joined)
    if parsed is None or parsed[0] != letter:
        return None
    offset = 0
    for position in logprobs:
        offset += len(position.token)
        if offset > parsed[1]:
            return position if _letter_of(position.token) == letter else None
    return None


def clamp(p: float, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return min(max(p, low), high)


def read_verdict(
    text: str,
    logprobs: list[TokenLogprob] | None,
    *,
    cot: bool,
    cot_clamp: tuple[float, float] = (0.4, 0.6),
) -> Verdict | None:
    """The verdict of one reply, or None when it cannot be read (the caller retries)."""
    if cot:
        parsed = parse_cot(text)
        if parsed is None:
            return None
        letter = parsed[0]
        hard = 1.0 if letter == "A" else 0.0
        token = _answer_token(logprobs, letter) if logprobs else None
        soft = letter_probability(token) if token is not None else None
        p = clamp(hard if soft is None else soft, cot_clamp)
        return Verdict(letter=_letter(p), p_first=p, method="cot", soft=soft is not None)
    soft = soft_from_logprobs(logprobs)
    if soft is not None:
        return Verdict(letter=_letter(soft), p_first=soft, method="logprobs", soft=True)
    letter = parse_direct(text)
    if letter is None:
        return None
    return Verdict(letter=letter, p_first=1.0 if letter == "A" else 0.0, method="parsed", soft=False)


def _letter(p: float) -> Letter | None:
    if p > 0.5:
        return "A"
    if p < 0.5:
        return "B"
    return None
