"""Revision records -> SFT dataset in TRL's conversational ``messages`` format.

``messages`` = the prompt conversation (its own system message, every context turn, the last user
turn) + the final revision as the assistant's turn, so multi-turn prompts train on the turns the
answer depends on (TRL's assistant-only / completion-only loss trains on the last turn only).

By default the constitution's system prompt is *not* part of the training conversation: the
point of SL-CAI is that the fine-tuned model behaves well without being told the principles. A
conversation's own system message is data and stays. With ``with_system`` the one system message
is the constitution's system prompt, a blank line, then the conversation's own (the message the
policy was answered under; :func:`cai_engine.sources.combined_system`).

By default the export drops records of other settings than the folder's current ones
(``--all-settings``), failed records and records whose answer depends on a generation that hit the
token limit (``--keep-truncated``), and counts each drop in ``quality.json`` and the card.

The records stream from the file into the dataset (one pass); the card's figures are running counts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from cai_engine.engine.records import iter_latest
from cai_engine.errors import CaiError
from cai_engine.exports.common import LengthStats, NothingToExport, write_card, write_rows
from cai_engine.sources import combined_system, from_record, split_system


def resolve_records_file(path: Path, filename: str) -> Path:
    """Accept either the record file itself or the output dir that holds it."""
    candidate = path / filename if path.is_dir() else path
    if not candidate.exists():
        raise CaiError(f"{candidate} not found; point at the --out dir of the stage or its {filename}")
    return candidate


def sft_features() -> Any:
    import datasets

    turns = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
    text = datasets.Value("string")
    return datasets.Features(
        {"id": text, "messages": turns, "initial_response": text, "principles": datasets.List(text),
         "constitution_hash": text, "model": text}
    )


def _unchanged(record: dict[str, Any]) -> bool:
    return record["final_response"].strip() == record["initial_response"].strip()


def sft_row(record: dict[str, Any], *, with_system: bool, drop_unchanged: bool) -> dict[str, Any] | None:
    """The SFT row of one ok revision record; None when ``drop_unchanged`` skips it."""
    if drop_unchanged and _unchanged(record):
        return None
    own_system, turns = split_system(from_record(record))
    system = combined_system(record.get("system_prompt"), own_system) if with_system else own_system
    messages = [{"role": "system", "content": system}] if system else []
    messages += [*turns, {"role": "assistant", "content": record["final_response"]}]
    return {
        "id": record["id"],
        "messages": messages,
        "initial_response": record["initial_response"],
        "principles": [step["principle_id"] for step in record.get("rounds", [])],
        "constitution_hash": record["constitution"]["hash"],
        "model": record["model"],
    }


def sft_rows(records: Iterable[dict[str, Any]], *, with_system: bool, drop_unchanged: bool) -> list[dict[str, Any]]:
    rows = (sft_row(r, with_system=with_system, drop_unchanged=drop_unchanged) for r in records)
    return [row for row in rows if row is not None]


class SftFigures:
    """The card's figures, counted record by record."""

    def __init__(self) -> None:
        self.ok = self.failed = self.rows = self.unchanged = self.multi_turn = 0
        self.constitutions: set[str] = set()
        self.models: set[str] = set()
        self.initial_chars = LengthStats()
        self.final_chars = LengthStats()
        self.principle_uses: Counter[str] = Counter()

    def add(self, record: dict[str, Any]) -> None:
        if record.get("status") != "ok":
            self.failed += 1
            return
        self.ok += 1
        self.constitutions.add(f"{record['constitution']['name']}@{record['constitution']['hash']}")
        self.models.add(record["model"])
        self.unchanged += _unchanged(record)
        self.multi_turn += sum(m.get("role") != "system" for m in record.get("messages") or ()) > 1
        self.initial_chars.add(len(record["initial_response"]))
        self.final_chars.add(len(record["final_response"]))
        self.principle_uses.update(step["principle_id"] for step in record.get("rounds", []))

    def figures(self, source: Path, with_system: bool) -> dict[str, Any]:
        return {
            "source": str(source),
            "constitutions": sorted(self.constitutions),
            "models": sorted(self.models),
            "records_ok": self.ok,
            "records_failed": self.failed,
            "rows_exported": self.rows,
            "unchanged_by_revision": self.unchanged,
            "multi_turn_prompts": self.multi_turn,
            "with_system_prompt": with_system,
            "initial_chars": self.initial_chars.stats(),
            "final_chars": self.final_chars.stats(),
            "principle_uses": dict(self.principle_uses),
        }


class SftSelection:
    """One streaming pass of an SFT export: which records become rows, the card's figures and the report."""

    def __init__(self, current: Callable[[dict[str, Any]], bool], *, keep_truncated: bool = False,
                 drop_unchanged: bool = False, all_settings: bool = False):
        from cai_engine.pipelines.quality import SFT_REASONS, Quality

        self.current = current
        self.filters = {"keep_truncated": keep_truncated, "drop_unchanged": drop_unchanged}
        self.tally = SftFigures()
        self.quality = Quality("sft", SFT_REASONS, {**self.filters, "all_settings": all_settings})

    def keep(self, record: dict[str, Any]) -> bool:
        """Count ``record``; True when it becomes a row."""
        from cai_engine.pipelines.quality import count_revision

        current = self.current(record)
        if current:
            self.tally.add(record)
        kept = count_revision(self.quality, record, current, **self.filters)
        self.tally.rows += kept
        return kept


def export_sft(source: Path, out_dir: Path, *, with_system: bool = False, drop_unchanged: bool = False,
               keep_truncated: bool = False, all_settings: bool = False) -> dict[str, Any]:
    """Write the SFT export of a revise run; returns the card figures (``quality``: the dataset report).

    Dropped by default: records of other settings than the folder's current ones (``all_settings``
    keeps them), failed records, and records whose final answer depends on a generation that hit
    the token limit (``keep_truncated`` keeps them); with ``drop_unchanged`` the ones the revision
    left unchanged. Each drop is counted by reason in ``quality.json`` and the card."""
    from cai_engine.engine.outsettings import record_filter
    from cai_engine.exports.common import write_quality
    from cai_engine.pipelines.quality import dropped_line

    records_file = resolve_records_file(source, "revisions.jsonl")
    selection = SftSelection(record_filter(records_file, all_settings), keep_truncated=keep_truncated,
                             drop_unchanged=drop_unchanged, all_settings=all_settings)

    def rows() -> Iterator[dict[str, Any]]:
        for record in iter_latest(records_file):
            if selection.keep(record):
                yield sft_row(record, with_system=with_system, drop_unchanged=False)  # type: ignore[misc]

    try:
        columns = write_rows(rows(), out_dir, features=sft_features())
    except NothingToExport:
        if not selection.quality.ok:
            raise
        raise CaiError(f"no record of {records_file} passed the filters ({dropped_line(selection.quality.figures())}); "
                       "pass --keep-truncated or --all-settings to keep more") from None
    figures = selection.tally.figures(records_file, with_system)
    figures["quality"] = selection.quality.figures()
    write_quality(out_dir, figures["quality"])
    write_card(
        out_dir,
        title="cai-engine SFT revisions",
        summary=("Prompts with constitution-revised answers (critique -> revise), in TRL's conversational `messages` "
                 "format: the prompt conversation (context turns included) + the final revision as the last assistant turn."),
        figures=figures,
        columns=columns,
    )
    return figures
