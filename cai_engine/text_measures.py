"""Text measures shared by training monitors, evaluation, the workbench and the dataset report:
distinct-n, word counts, answer lengths, the normalised form and shingles of a text, the refusal detector.

One definition of distinct-n for the whole engine (RL monitors compute it over token ids, the
evaluation over words), so a mode-collapse warning during training and the diversity figure of an
eval report mean the same thing; one refusal detector and one notion of "the same text" for the
eval, the workbench's dedup and an export's ``quality.json``.
"""

from __future__ import annotations

import re
import statistics
import unicodedata
from typing import Any, Sequence

_WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]", re.UNICODE)
_NORM_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def normalize(text: str) -> str:
    """Case-folded words joined by single spaces: what an exact duplicate is compared on."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NORM_WORD.findall(text))


def shingles(text: str, n: int = 4) -> frozenset[str]:
    """Character n-grams of the normalised text (the whole text if shorter than ``n``)."""
    norm = normalize(text)
    if len(norm) <= n:
        return frozenset([norm]) if norm else frozenset()
    return frozenset(norm[i : i + n] for i in range(len(norm) - n + 1))


#: Phrases that open a refusal. Matched case-insensitively in the first ``REFUSAL_WINDOW`` characters.
REFUSAL_PATTERNS: tuple[str, ...] = (
    r"\bI(?:'m| am) sorry,? (?:but|i|that)\b",
    r"\bI apologi[sz]e,? but\b",
    r"\bI(?: can ?not| can't| won't| will not| am not able to|'m not able to| am unable to|'m unable to| must decline to| do not| don't)"
    r" (?:help|assist|provide|give|do|write|create|share|support|comply|fulfil|fulfill|answer|engage|generate|offer|participate|encourage|tell|explain)\b",
    r"\bI must (?:decline|refuse)\b",
    r"\bI(?:'m| am) not (?:comfortable|going to)\b",
    r"\bAs an AI(?: language model| assistant)?\b",
    r"\b(?:can ?not|can't|won't) (?:help|assist) (?:you )?with (?:that|this)\b",
    r"\bnot (?:appropriate|ethical|something I can) (?:for me )?(?:to )?(?:help|assist|provide|do)\b",
    r"\b(?:against|violates?) my (?:guidelines|programming|policies|principles)\b",
)
REFUSAL_WINDOW = 300
_REFUSAL = re.compile("|".join(f"(?:{p})" for p in REFUSAL_PATTERNS), re.IGNORECASE)


def refusal_phrase(text: str) -> str | None:
    """The refusal phrase found near the start of ``text``, or None. A heuristic: it misses refusals
    phrased in other words and flags helpful answers that open with "I can't ... but here is how"."""
    match = _REFUSAL.search(text.replace("’", "'")[:REFUSAL_WINDOW])
    return match.group(0) if match else None


def is_refusal(text: str) -> bool:
    """Heuristic refusal detector: True when a refusal phrase appears in the first 300 characters.

    Empty answers count as refusals (the model gave nothing).
    """
    return not text.strip() or refusal_phrase(text) is not None


def distinct_n(sequences: Sequence[Sequence[Any]], n: int) -> float:
    """Unique n-grams / total n-grams over all sequences (tokens or words); 0 when there are none."""
    total = 0
    seen: set[tuple[Any, ...]] = set()
    for seq in sequences:
        items = list(seq)
        for i in range(len(items) - n + 1):
            seen.add(tuple(items[i : i + n]))
            total += 1
    return len(seen) / total if total else 0.0


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: the unit of distinct-n over texts."""
    return _WORD.findall(text.lower())


def word_count(text: str) -> int:
    """Whitespace-separated words (what a reader would count), the unit of length in words."""
    return len(text.split())


def length_summary(texts: Sequence[str]) -> dict[str, float | int | None]:
    """Count, mean/median characters and words, and distinct-1/2 over words of ``texts``."""
    if not texts:
        return {"n": 0, "mean_chars": None, "median_chars": None, "mean_words": None, "median_words": None,
                "distinct_1": None, "distinct_2": None}
    chars = [len(t) for t in texts]
    counts = [word_count(t) for t in texts]
    tokens = [words(t) for t in texts]
    return {
        "n": len(texts),
        "mean_chars": round(statistics.fmean(chars), 2),
        "median_chars": float(statistics.median(chars)),
        "mean_words": round(statistics.fmean(counts), 2),
        "median_words": float(statistics.median(counts)),
        "distinct_1": round(distinct_n(tokens, 1), 4),
        "distinct_2": round(distinct_n(tokens, 2), 4),
    }
