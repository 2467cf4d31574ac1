"""Revision records -> SFT dataset in TRL's conversational ``messages`` format.

``messages`` = the prompt conversation (its own system message, every context turn, the last user
turn) + the final revision as the assistant's turn, so multi-turn prompts train on the turns the
answer depends on (TRL's assistant-only / completion-only loss trains on the last turn only).

By default the constitution's system prompt is *not* part of the training conversation: the
point of SL-CAI is that the fine-tuned model behaves well without being told the principles. A
conversation's own system message is data and stays. With ``with_system`` the one system message
is the constitution's system prompt, a blank line, then the conversation's own (the message the
policy was answered under; :func:`cai_engine.sources.combined_system`).

The records stream from the file into the dataset (one pass); the card's figures are running counts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from cai_engine.engine.records import iter_latest
from cai_engine.errors import CaiError
from cai_engine.exports.common import LengthStats, write_card, write_rows
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


def export_sft(source: Path, out_dir: Path, *, with_system: bool = False, drop_unchanged: bool = False) -> dict[str, Any]:
    """Write the SFT export of a revise run; returns the card figures."""
    records_file = resolve_records_file(source, "revisions.jsonl")
    tally = SftFigures()

    def rows() -> Iterator[dict[str, Any]]:
        for record in iter_latest(records_file):
            tally.add(record)
            if record.get("status") == "ok":
                row = sft_row(record, with_system=with_system, drop_unchanged=drop_unchanged)
                if row is not None:
                    tally.rows += 1
                    yield row

    columns = write_rows(rows(), out_dir, features=sft_features())
    figures = tally.figures(records_file, with_system)
    write_card(
        out_dir,
        title="cai-engine SFT revisions",
        summary=("Prompts with constitution-revised answers (critique -> revise), in TRL's conversational `messages` "
                 "format: the prompt conversation (context turns included) + the final revision as the last assistant turn."),
        figures=figures,
        columns=columns,
    )
    return figures
