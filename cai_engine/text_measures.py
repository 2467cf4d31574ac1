"""Text measures shared by training monitors and evaluation: distinct-n, word counts, answer lengths.

One definition of distinct-n for the whole engine (RL monitors compute it over token ids, the
evaluation over words), so a mode-collapse warning during training and the diversity figure of an
eval report mean the same thing.
"""

from __future__ import annotations

import re
import statistics
from typing import Any, Sequence

_WORD = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]", re.UNICODE)


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
