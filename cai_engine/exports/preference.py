"""Pair records -> preference datasets: DPO (TRL conversational preference) and reward modelling.

Columns (the training stages read exactly these):

* ``prompt``: the prompt conversation as messages: the conversation's own system message (if it
  has one), every context turn, and the last user turn (``[{"role": "user", "content": ...}]`` for
  a single-turn prompt). The constitution's system prompt is *not* included: as for SFT, the
  trained model should behave well without being told the principles. The card records the
  system prompt the candidates were generated under.
* ``chosen`` / ``rejected``: ``[{"role": "assistant", "content": ...}]``, the final assistant turn
  (TRL's conversational preference format; ``train kto`` unpairs them with the same ``prompt``).
* ``id``, ``confidence`` (the judge's P(chosen better), 0.5-1), ``consistent`` (position-consistent).
* reward export only: ``margin`` = ``2 * confidence - 1`` in [0, 1], TRL RewardTrainer's optional
  per-pair margin (a confident preference asks for a larger reward gap, a coin flip for none).

By default an export keeps only real preferences of complete answers from the folder's current
settings: it drops pairs of other settings (``--all-settings``), failed pairs, pairs with a truncated
candidate (``--keep-truncated``), ties, position-inconsistent pairs (``--keep-inconsistent``) and
pairs below the confidence floor (``--min-confidence``, default 0.6; docs/data-quality.md says why),
and counts each drop in ``quality.json`` and the card.

The records stream from the file into the dataset; ``--length-balanced`` reads the file once more
first, to learn which pairs the balance keeps (8 bytes a pair).
"""

from __future__ import annotations

from array import array
from collections import Counter
from pathlib import Path
from statistics import fmean
from typing import Any, Callable, Iterable, Iterator, Literal

from cai_engine.engine.records import iter_latest
from cai_engine.errors import CaiError
from cai_engine.exports.common import LengthStats, NothingToExport, write_card, write_rows
from cai_engine.exports.sft import resolve_records_file
from cai_engine.pipelines.aggregate import LengthBalance, chosen_rejected, longer_won
from cai_engine.sources import as_dicts, from_record

Kind = Literal["dpo", "reward"]


def preference_features(kind: Kind) -> Any:
    import datasets

    turns = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
    columns = {"id": datasets.Value("string"), "prompt": turns, "chosen": turns, "rejected": turns,
               "confidence": datasets.Value("float64"), "consistent": datasets.Value("bool")}
    if kind == "reward":
        columns["margin"] = datasets.Value("float64")
    return datasets.Features(columns)


def preference_row(record: dict[str, Any], kind: Kind) -> dict[str, Any] | None:
    """The row of one decided pair record; None for a tie."""
    pair = chosen_rejected(record)
    if pair is None:
        return None
    chosen, rejected = pair
    row = {
        "id": record["id"],
        "prompt": as_dicts(from_record(record)),
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "confidence": float(record["confidence"]),
        "consistent": bool(record["consistent"]),
    }
    if kind == "reward":
        row["margin"] = round(2.0 * float(record["confidence"]) - 1.0, 6)
    return row


def preference_rows(records: Iterable[dict[str, Any]], kind: Kind) -> list[dict[str, Any]]:
    return [row for row in (preference_row(r, kind) for r in records) if row is not None]


class PairFigures:
    """Statistics of ok pair records, counted one record at a time (see :func:`pair_figures`)."""

    def __init__(self) -> None:
        self.pairs = self.decided = self.identical = self.consistent = self.labelled = 0
        self.label_score = 0.0
        self.confidences = array("d")
        self.longer_wins = [0, 0]  # [shorter chosen, longer chosen]
        self.chosen_chars = LengthStats()
        self.rejected_chars = LengthStats()
        self.verdict_methods: Counter[str] = Counter()
        self.principle_uses: Counter[str] = Counter()

    def add(self, record: dict[str, Any]) -> None:
        self.pairs += 1
        self.identical += bool(record.get("identical"))
        self.consistent += bool(record.get("consistent"))
        if record.get("chosen") in ("a", "b"):
            self.decided += 1
            self.confidences.append(record["confidence"])
            pair = chosen_rejected(record)
            if pair is not None:
                self.chosen_chars.add(len(pair[0]))
                self.rejected_chars.add(len(pair[1]))
        won = longer_won(record)
        if won is not None:
            self.longer_wins[won] += 1
        self.verdict_methods.update(j["method"] for j in record.get("judgments", []))
        self.principle_uses.update(record.get("principles", []))
        if record.get("label") in ("a", "b"):
            self.labelled += 1
            self.label_score += 1.0 if record["chosen"] == record["label"] else 0.5 if record["chosen"] == "tie" else 0.0

    def figures(self) -> dict[str, Any]:
        outcomes = sum(self.longer_wins)
        figures: dict[str, Any] = {
            "pairs": self.pairs,
            "decided": self.decided,
            "ties": self.pairs - self.decided,
            "identical_candidates": self.identical,
            "position_consistency_rate": _rate(self.consistent, self.pairs),
            "mean_confidence": round(fmean(self.confidences), 4) if self.confidences else None,
            "longer_wins_rate": _round(self.longer_wins[True] / outcomes if outcomes else None),
            "chosen_chars": self.chosen_chars.stats(),
            "rejected_chars": self.rejected_chars.stats(),
            "verdict_methods": dict(self.verdict_methods),
            "principle_uses": dict(self.principle_uses),
        }
        if self.labelled:
            figures["agreement_with_labels"] = _rate(self.label_score, self.labelled)
            figures["labelled_pairs"] = self.labelled
        return figures


def pair_figures(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Statistics of a set of ok pair records: consistency, confidence, ties, length bias, agreement."""
    tally = PairFigures()
    for record in records:
        tally.add(record)
    return tally.figures()


def _rate(n: float, total: int) -> float | None:
    return round(n / total, 4) if total else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class _Selection:
    """One streaming pass: the card's figures of all ok pairs and of the exported ones, the drops and the report."""

    def __init__(self, kind: Kind, filters: dict[str, Any], current: Callable[[dict[str, Any]], bool],
                 keep_truncated: bool, balance: LengthBalance | None):
        from cai_engine.pipelines.quality import PAIR_REASONS, Quality

        self.filters = {**filters, "keep_truncated": keep_truncated}
        self.current = current
        self.balance = balance
        self.ok = self.failed = 0
        self.constitutions: set[str] = set()
        self.judge_models: set[str] = set()
        self.system_prompts: set[str] = set()
        self.all_pairs = PairFigures()
        self.exported = PairFigures()
        self.quality = Quality(kind, PAIR_REASONS, dict(self.filters))

    @property
    def dropped(self) -> dict[str, int]:
        return self.quality.dropped_by

    def reason(self, record: dict[str, Any]) -> str | None:
        """Why ``record`` is left out (before the length balance), or None."""
        from cai_engine.pipelines.quality import pair_drop_reason

        return pair_drop_reason(record, self.current(record), **self.filters)

    def keep(self, record: dict[str, Any]) -> bool:
        from cai_engine.pipelines.quality import count_pair

        current = self.current(record)
        if current and record.get("status") == "ok":
            self.ok += 1
            self.constitutions.add(f"{record['constitution']['name']}@{record['constitution']['hash']}")
            self.judge_models.add(record["judge_model"])
            self.system_prompts.add(record.get("origin", {}).get("system_prompt") or "")
            self.all_pairs.add(record)
        elif current:
            self.failed += 1
        if not count_pair(self.quality, record, current, balance=self.balance, **self.filters):
            return False
        self.exported.add(record)
        return True


def export_preference(
    source: Path,
    out_dir: Path,
    *,
    kind: Kind,
    min_confidence: float | None = None,
    drop_inconsistent: bool = True,
    length_balanced: bool = False,
    keep_truncated: bool = False,
    all_settings: bool = False,
) -> dict[str, Any]:
    """Write the DPO or reward export of a judge run; returns the card figures (``quality``: the dataset report).

    Dropped by default: pairs of other settings than the folder's current ones (``all_settings``
    keeps them), failed pairs, pairs with a truncated candidate (``keep_truncated`` keeps them),
    ties, position-inconsistent pairs (``drop_inconsistent=False`` keeps them) and pairs below
    ``min_confidence`` (default :data:`~cai_engine.exports.quality.DEFAULT_MIN_CONFIDENCE`; 0.5 keeps
    every decided pair)."""
    from cai_engine.engine.outsettings import record_filter
    from cai_engine.exports.common import write_quality
    from cai_engine.pipelines.quality import DEFAULT_MIN_CONFIDENCE

    records_file = resolve_records_file(source, "pairs.jsonl")
    floor = DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence
    filters = {"min_confidence": floor, "drop_inconsistent": drop_inconsistent}
    current = record_filter(records_file, all_settings)
    balance = None
    if length_balanced:
        probe = _Selection(kind, filters, current, keep_truncated, None)
        balance = LengthBalance(r for r in iter_latest(records_file, status="ok") if probe.reason(r) is None)
    selection = _Selection(kind, filters, current, keep_truncated, balance)

    def rows() -> Iterator[dict[str, Any]]:
        for record in iter_latest(records_file):
            if selection.keep(record):
                row = preference_row(record, kind)
                if row is not None:
                    yield row

    try:
        columns = write_rows(rows(), out_dir, features=preference_features(kind))
    except NothingToExport:
        if not selection.ok:
            raise
        from cai_engine.pipelines.quality import dropped_line

        raise CaiError(
            f"no pair of {records_file} passed the filters ({dropped_line(selection.quality.figures())}); "
            "lower --min-confidence, pass --keep-inconsistent/--keep-truncated/--all-settings, or leave out --length-balanced"
        ) from None
    system_prompts = sorted(selection.system_prompts - {""})
    figures = {
        "source": str(records_file),
        "constitutions": sorted(selection.constitutions),
        "judge_models": sorted(selection.judge_models),
        "records_ok": selection.ok,
        "records_failed": selection.failed,
        "rows_exported": selection.exported.pairs,
        "filters": {**filters, "length_balanced": length_balanced, "keep_truncated": keep_truncated,
                    "all_settings": all_settings},
        "dropped": dict(selection.dropped),
        "all_pairs": selection.all_pairs.figures(),
        "exported_pairs": selection.exported.figures(),
        "system_prompt_note": ("prompt holds the prompt conversation (its own system message, context turns, the last "
                               "user turn); the constitution's system prompt is not included"),
    }
    if system_prompts:
        figures["candidate_system_prompts"] = system_prompts
    selection.quality.filters = figures["filters"]
    figures["quality"] = selection.quality.figures()
    write_quality(out_dir, figures["quality"])
    what = "DPO" if kind == "dpo" else "reward-model"
    write_card(
        out_dir,
        title=f"cai-engine {what} preference pairs",
        summary=(
            "AI-judged preference pairs under a constitution (each pair judged in both orders, A/B swapped), "
            "in TRL's conversational preference format: `prompt`, `chosen`, `rejected`."
            + (" `margin` = 2*confidence-1 for RewardTrainer." if kind == "reward" else "")
        ),
        figures=figures,
        columns=columns,
    )
    return figures
