"""The dataset report of an export (``quality.json``, the card's "Data quality" section, the top of ``cai view``),
and the filters that decide which records become rows.

It sits beside :mod:`.aggregate` (whose filters it extends) so that the exports and the viewer
share one definition. One :class:`Quality` tally is fed record by record while an export streams
(memory stays flat):

* ``rows``: records read, rows kept, rows dropped per reason (``other_settings``, ``failed``,
  ``truncated``, ``unchanged``, ``tie``, ``inconsistent``, ``low_confidence``, ``length_balance``).
* ``truncation_rate``: ok records with a generation that hit the token limit / ok records.
* pairs: ``position_consistency_rate``, ``tie_rate`` (over ok pairs), ``longer_wins_rate`` (all ok
  pairs and the kept ones; 0.5 = no length bias).
* ``duplicates``: among the kept rows' prompts and targets (SFT: the final revision; preference:
  ``chosen``). *Exact*: the same text after case/space/punctuation normalisation
  (:func:`cai_engine.text_measures.normalize`), counted over every row from 8-byte hashes
  (sorted at the end, like the length medians). *Near*: character 4-gram MinHash signatures (64
  hashes, 512 bytes a text) of the first :data:`NEAR_SAMPLE` kept texts, a text being a near
  duplicate when its estimated Jaccard similarity to an earlier one is at least
  :data:`NEAR_THRESHOLD` (LSH bands propose candidates, the full signature decides); later texts
  are counted for exact duplicates only, so memory and time stay bounded whatever the row count.
* ``degenerate_revisions`` (SFT): kept rows whose last revision is word for word its critique, or
  whose final answer is the initial answer.
* ``refusal_rate``: kept targets (and rejected answers) that open with a refusal phrase of
  :data:`cai_engine.text_measures.REFUSAL_PATTERNS` (the eval's documented detector, first 300
  characters; a heuristic).
* ``principle_draws``: how often each principle was drawn over the ok records.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

from cai_engine.pipelines.aggregate import chosen_rejected, drop_reason, longer_won
from cai_engine.pipelines.judge import pair_truncated
from cai_engine.pipelines.revise import is_truncated
from cai_engine.sources import as_dicts, from_record
from cai_engine.text_measures import is_refusal, normalize, shingles

#: Judge confidence below which a preference export drops a pair, and viewer/preview call it a tie.
#: Why 0.6 (docs/data-quality.md): in judge-eval of the embedded judge on the shipped labels, 34
#: of 40 picks fell in the 0.5-0.6 calibration bin and were right 32% of the time (no better than a
#: coin); and with the CAI paper's 0.4-0.6 clamp of chain-of-thought probabilities, 0.6 is the
#: most a clamped judgment can say.
DEFAULT_MIN_CONFIDENCE = 0.6
NEAR_SAMPLE = 5000
NEAR_THRESHOLD = 0.7  # the near-duplicate threshold of cai_engine.workbench.textsim (prompt dedup)
_PERMS = 64
_BANDS = 16  # 16 bands x 4 rows: a pair at similarity 0.7 is proposed with probability ~0.99, at 0.5 ~0.64
_CHUNK = 256

SFT_REASONS = ("other_settings", "failed", "truncated", "unchanged")
PAIR_REASONS = ("other_settings", "failed", "truncated", "tie", "inconsistent", "low_confidence", "length_balance")


def _salts() -> tuple[Any, Any]:
    import numpy as np

    raw = [hashlib.blake2b(f"cai-quality-{i}".encode(), digest_size=16).digest() for i in range(_PERMS)]
    xors = np.array([int.from_bytes(r[:8], "big") for r in raw], dtype=np.uint64)
    mults = np.array([int.from_bytes(r[8:], "big") | 1 for r in raw], dtype=np.uint64)
    return xors[:, None], mults[:, None]


def _h64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


class DuplicateCounter:
    """Exact duplicates of every text (8 bytes a text) and near duplicates of the first ``sample`` texts.

    The near check keeps the sample's signatures in arrays of fixed size, allocated at the first
    text (``sample`` x 80 x 8 bytes), and compares each new text with all of them at once: memory
    does not grow with the row count, and the sample bounds the time."""

    def __init__(self, sample: int = NEAR_SAMPLE, threshold: float = NEAR_THRESHOLD):
        self.sample = sample
        self.threshold = threshold
        self._exact = array("Q")
        self._n = 0  # texts in the sample
        self._digests: Any = None
        self._signatures: Any = None
        self._bands: Any = None
        self.near = 0

    def add(self, text: str) -> None:
        import numpy as np

        key = normalize(text)
        digest = _h64(key)
        self._exact.append(digest)
        if self._n >= self.sample:
            return
        if self._digests is None:
            self._digests = np.zeros(self.sample, dtype=np.uint64)
            self._signatures = np.zeros((self.sample, _PERMS), dtype=np.uint64)
            self._bands = np.zeros((self.sample, _BANDS), dtype=np.uint64)
        n = self._n
        signature = _signature(text)
        bands = _band_keys(signature)
        exact = bool((self._digests[:n] == np.uint64(digest)).any())
        if not exact and n:  # an exact duplicate is counted by the exact figure, not again here
            best = 0.0
            for start in range(0, n, _CHUNK):  # bounded temporaries: (_CHUNK x 64) at a time
                stop = min(n, start + _CHUNK)
                candidates = start + np.flatnonzero((self._bands[start:stop] == bands).any(axis=1))
                if candidates.size:
                    best = max(best, float((self._signatures[candidates] == signature).mean(axis=1).max()))
            self.near += best >= self.threshold
        self._digests[n], self._signatures[n], self._bands[n] = digest, signature, bands
        self._n += 1

    def figures(self) -> dict[str, Any]:
        import numpy as np

        total = len(self._exact)
        distinct = len(np.unique(np.frombuffer(self._exact, dtype=np.uint64))) if total else 0
        return {"exact": total - distinct, "near": self.near, "near_checked": min(total, self.sample)}


_SALTS: tuple[Any, Any] | None = None


def _signature(text: str) -> Any:
    """64 MinHash values of the text's character 4-grams (multiply-xor hashes of their blake2b digests)."""
    import numpy as np

    global _SALTS
    if _SALTS is None:
        _SALTS = _salts()
    xors, mults = _SALTS
    grams = np.array([_h64(g) for g in shingles(text)] or [0], dtype=np.uint64)
    signature = np.full(_PERMS, np.iinfo(np.uint64).max, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for start in range(0, len(grams), _CHUNK):  # a bounded (64 x _CHUNK) temporary, however long the text
            np.minimum(signature, ((grams[None, start:start + _CHUNK] ^ xors) * mults).min(axis=1), out=signature)
    return signature


def _band_keys(signature: Any) -> Any:
    """One uint64 per LSH band (its rows folded together): two texts sharing a band key are candidates."""
    import numpy as np

    rows = signature.reshape(_BANDS, _PERMS // _BANDS)
    key = np.zeros(_BANDS, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in range(rows.shape[1]):
            key = (key * np.uint64(0x100000001B3)) ^ rows[:, column]
    return key


def _rate(n: float, total: int) -> float | None:
    return round(n / total, 4) if total else None


class Quality:
    """The report of one export (or of the records ``cai view`` shows), counted record by record.

    ``seen`` every record read; then exactly one of ``dropped(reason)`` or ``kept(...)``."""

    def __init__(self, kind: str, reasons: tuple[str, ...], filters: dict[str, Any]):
        self.kind = kind
        self.filters = filters
        self.records = self.ok = self.failed = self.truncated = self.kept_rows = 0
        self.dropped_by: dict[str, int] = dict.fromkeys(reasons, 0)
        self.principle_draws: Counter[str] = Counter()
        self.consistent = self.ties = 0
        self.longer_all = [0, 0]
        self.longer_kept = [0, 0]
        self.revision_is_critique = self.final_is_initial = 0
        self.refusals = self.rejected_refusals = 0
        self.prompts = DuplicateCounter()
        self.targets = DuplicateCounter()

    @property
    def pairs(self) -> bool:
        return self.kind in ("dpo", "reward", "pairs")

    def seen(self, record: dict[str, Any], *, truncated: bool, current: bool = True) -> None:
        """Count one record of the file; ``current``: of the folder's current settings (others only count as dropped)."""
        self.records += 1
        if not current:
            return
        if record.get("status") != "ok":
            self.failed += 1
            return
        self.ok += 1
        self.truncated += truncated
        if self.pairs:
            self.principle_draws.update(record.get("principles") or ())
            self.consistent += bool(record.get("consistent"))
            self.ties += record.get("chosen") not in ("a", "b")
            won = longer_won(record)
            if won is not None:
                self.longer_all[won] += 1
        else:
            self.principle_draws.update(step.get("principle_id", "?") for step in record.get("rounds") or ())

    def dropped(self, reason: str) -> None:
        self.dropped_by[reason] = self.dropped_by.get(reason, 0) + 1

    def kept(self, record: dict[str, Any], prompt: Any, target: str, rejected: str | None = None) -> None:
        """One exported row: ``prompt`` (a string or messages), ``target`` (the trained answer), ``rejected``."""
        self.kept_rows += 1
        self.prompts.add(prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False, sort_keys=True))
        self.targets.add(target)
        self.refusals += is_refusal(target)
        if rejected is not None:
            self.rejected_refusals += is_refusal(rejected)
        if self.pairs:
            won = longer_won(record)
            if won is not None:
                self.longer_kept[won] += 1
        else:
            rounds = record.get("rounds") or []
            self.revision_is_critique += bool(rounds) and normalize(rounds[-1].get("revision", "")) == normalize(rounds[-1].get("critique", ""))
            self.final_is_initial += record.get("final_response", "").strip() == record.get("initial_response", "").strip()

    def figures(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "kind": self.kind,
            "filters": self.filters,
            "rows": {"records": self.records, "ok": self.ok, "failed": self.failed, "kept": self.kept_rows,
                     "dropped": self.dropped_by, "dropped_total": sum(self.dropped_by.values())},
            "truncation_rate": _rate(self.truncated, self.ok),
            "truncated_records": self.truncated,
        }
        if self.pairs:
            figures["position_consistency_rate"] = _rate(self.consistent, self.ok)
            figures["tie_rate"] = _rate(self.ties, self.ok)
            figures["longer_wins_rate"] = {"all": _rate(self.longer_all[True], sum(self.longer_all)),
                                           "kept": _rate(self.longer_kept[True], sum(self.longer_kept))}
        figures["duplicates"] = {
            "prompts": self.prompts.figures(), "targets": self.targets.figures(),
            "method": (f"exact: normalised text, every kept row; near: 4-gram MinHash (64 hashes) of the first "
                       f"{NEAR_SAMPLE} kept texts, estimated Jaccard >= {NEAR_THRESHOLD}"),
        }
        if not self.pairs:
            figures["degenerate_revisions"] = {"revision_equals_critique": self.revision_is_critique,
                                               "final_equals_initial": self.final_is_initial}
        figures["refusal_rate"] = {"targets": _rate(self.refusals, self.kept_rows)}
        if self.pairs:
            figures["refusal_rate"]["rejected"] = _rate(self.rejected_refusals, self.kept_rows)
        figures["refusal_patterns"] = "cai_engine.text_measures.REFUSAL_PATTERNS (first 300 characters)"
        figures["principle_draws"] = dict(sorted(self.principle_draws.items()))
        return figures


def sft_drop_reason(record: dict[str, Any], current: bool, *, keep_truncated: bool = False,
                    drop_unchanged: bool = False) -> str | None:
    """Why a revision record is not an SFT row (a key of ``SFT_REASONS``), or None."""
    if not current:
        return "other_settings"
    if record.get("status") != "ok":
        return "failed"
    if not keep_truncated and is_truncated(record):
        return "truncated"
    if drop_unchanged and record["final_response"].strip() == record["initial_response"].strip():
        return "unchanged"
    return None


def pair_drop_reason(record: dict[str, Any], current: bool, *, keep_truncated: bool = False,
                     min_confidence: float = DEFAULT_MIN_CONFIDENCE, drop_inconsistent: bool = True) -> str | None:
    """Why a pair record is not a preference row (a key of ``PAIR_REASONS``, before the length balance), or None."""
    if not current:
        return "other_settings"
    if record.get("status") == "ok" and not keep_truncated and pair_truncated(record):
        return "truncated"
    return drop_reason(record, min_confidence=min_confidence, drop_inconsistent=drop_inconsistent)


def count_revision(quality: Quality, record: dict[str, Any], current: bool, **filters: Any) -> bool:
    """Count one revision record in ``quality``; True when it becomes a row (``filters``: of :func:`sft_drop_reason`)."""
    quality.seen(record, truncated=record.get("status") == "ok" and is_truncated(record), current=current)
    reason = sft_drop_reason(record, current, **filters)
    if reason is not None:
        quality.dropped(reason)
        return False
    quality.kept(record, from_record(record), record["final_response"])
    return True


def count_pair(quality: Quality, record: dict[str, Any], current: bool, *, balance: Any = None, **filters: Any) -> bool:
    """Count one pair record in ``quality``; True when it becomes a row (``filters``: of :func:`pair_drop_reason`;
    ``balance``: a :class:`~cai_engine.pipelines.aggregate.LengthBalance` or None)."""
    quality.seen(record, truncated=record.get("status") == "ok" and pair_truncated(record), current=current)
    reason = pair_drop_reason(record, current, **filters)
    if reason is None and balance is not None and not balance.keeps(record):
        reason = "length_balance"
    if reason is not None:
        quality.dropped(reason)
        return False
    pair = chosen_rejected(record)
    assert pair is not None  # ties were dropped
    quality.kept(record, as_dicts(from_record(record)), pair[0], pair[1])
    return True


def dropped_line(quality: dict[str, Any]) -> str:
    """``kept 6 of 9 records, dropped 3 (truncated 1, tie 2)``: the one line an export prints."""
    rows = quality["rows"]
    parts = [f"{reason} {n}" for reason, n in rows["dropped"].items() if n]
    return f"kept {rows['kept']} of {rows['records']} records, dropped {rows['dropped_total']}" + (f" ({', '.join(parts)})" if parts else "")
