"""Text similarity without a model: normalisation, n-gram shingles, Jaccard, MinHash-LSH dedup.

Near-duplicates are decided by the exact Jaccard similarity of character n-gram sets (robust to
small edits, word order changes within a phrase, punctuation and case). MinHash with LSH banding
only *proposes* candidate pairs so that deduplicating thousands of prompts stays near-linear; each
proposal is then verified with the exact Jaccard, so the result never contains a false merge.
Hashes are from blake2b, not ``hash()``, so results are the same in every process. Normalisation and
shingles are :mod:`cai_engine.text_measures`' (shared with the dataset report); import them from there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterable

from cai_engine.text_measures import normalize, shingles

_MERSENNE = (1 << 61) - 1
_MAX64 = (1 << 64) - 1


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def similarity(a: str, b: str, n: int = 4) -> float:
    """Jaccard similarity of the character n-gram sets of two texts, in [0, 1]."""
    return jaccard(shingles(a, n), shingles(b, n))


def _h64(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "big")


def _permutations(count: int) -> list[tuple[int, int]]:
    # Fixed, reproducible (a, b) pairs for the universal hashes (a*x + b) mod p.
    out = []
    for i in range(count):
        seed = hashlib.blake2b(f"cai-minhash-{i}".encode(), digest_size=16).digest()
        a = int.from_bytes(seed[:8], "big") % (_MERSENNE - 1) + 1
        b = int.from_bytes(seed[8:], "big") % _MERSENNE
        out.append((a, b))
    return out


@dataclass
class NearDuplicateIndex:
    """Incremental near-duplicate filter: :meth:`add` returns the kept item a text duplicates, or None.

    ``threshold`` is the Jaccard similarity of character ``n``-gram sets at or above which two
    texts count as the same prompt. ``bands * rows`` MinHash values are kept per text; with the
    defaults (16 x 4) a pair at similarity 0.7 is proposed with probability ~0.99 and at 0.5 ~0.64
    (and then verified), so recall is high exactly where it matters.
    """

    threshold: float = 0.7
    n: int = 4
    bands: int = 16
    rows: int = 4
    _perms: list[tuple[int, int]] = field(init=False, repr=False)
    _exact: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _buckets: dict[tuple[int, tuple[int, ...]], list[int]] = field(default_factory=dict, init=False, repr=False)
    _sets: list[frozenset[str]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {self.threshold}")
        self._perms = _permutations(self.bands * self.rows)

    def _signature(self, grams: frozenset[str]) -> list[int]:
        hashed = [_h64(g) for g in grams] or [0]
        return [min((a * x + b) % _MERSENNE for x in hashed) for a, b in self._perms]

    def find(self, text: str) -> int | None:
        """Index of an already added text that ``text`` duplicates (exactly or nearly), else None."""
        return self._lookup(text)[0]

    def _lookup(self, text: str) -> tuple[int | None, str, frozenset[str], list[tuple[int, tuple[int, ...]]]]:
        key = normalize(text)
        grams = shingles(text, self.n)
        sig = self._signature(grams)
        band_keys = [(band, tuple(sig[band * self.rows : (band + 1) * self.rows])) for band in range(self.bands)]
        if key in self._exact:
            return self._exact[key], key, grams, band_keys
        best, best_sim = None, 0.0
        seen: set[int] = set()
        for band_key in band_keys:
            for other in self._buckets.get(band_key, ()):
                if other in seen:
                    continue
                seen.add(other)
                sim = jaccard(grams, self._sets[other])
                if sim >= self.threshold and sim > best_sim:
                    best, best_sim = other, sim
        return best, key, grams, band_keys

    def add(self, text: str) -> int | None:
        """Keep ``text`` unless it duplicates a kept one; returns that one's index, or None if kept."""
        dup, key, grams, band_keys = self._lookup(text)
        if dup is not None:
            return dup
        index = len(self._sets)
        self._sets.append(grams)
        self._exact[key] = index
        for band_key in band_keys:
            self._buckets.setdefault(band_key, []).append(index)
        return None


def dedupe(texts: Iterable[str], threshold: float = 0.7, n: int = 4) -> tuple[list[int], dict[int, int]]:
    """Indices of the texts to keep (first occurrence wins) and ``{dropped index: kept index}``."""
    index = NearDuplicateIndex(threshold=threshold, n=n)
    kept: list[int] = []
    dropped: dict[int, int] = {}
    for i, text in enumerate(texts):
        dup = index.add(text)
        if dup is None:
            kept.append(i)
        else:
            dropped[i] = kept[dup]
    return kept, dropped
