"""``cai constitution diff OLD NEW``: what changed between two constitutions, and what it does.

The static part compares the resolved constitutions: principles added, removed and changed (with
a word-level diff of each changed field), plus the system prompt, sampling settings and few-shot
examples. With prompts, both constitutions revise the same prompts with the same model, seed and
*record key*, so step seeds and principle draws line up: when the system prompt is unchanged the
initial answers are identical and any difference in the final answer is the edit's doing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cai_engine.constitution import Constitution
from cai_engine.workbench.preview import PreviewItem, _clip, context_text
from cai_engine.workbench.textsim import similarity

PRINCIPLE_FIELDS = ("critique", "revision", "judge", "weight", "tags")


@dataclass
class ConstitutionDiff:
    """Static differences between two resolved constitutions."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)  # id -> field -> (old, new)
    unchanged: list[str] = field(default_factory=list)
    meta: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # system_prompt, sampling.*, few_shot, ...

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.meta)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added, "removed": self.removed, "unchanged": self.unchanged,
            "changed": {pid: {f: list(v) for f, v in fields.items()} for pid, fields in self.changed.items()},
            "meta": {k: list(v) for k, v in self.meta.items()},
        }


def diff_constitutions(old: Constitution, new: Constitution) -> ConstitutionDiff:
    result = ConstitutionDiff()
    old_by_id = {p.id: p for p in old.principles}
    new_by_id = {p.id: p for p in new.principles}
    result.removed = [pid for pid in old_by_id if pid not in new_by_id]
    for pid, p in new_by_id.items():
        if pid not in old_by_id:
            result.added.append(pid)
            continue
        before = old_by_id[pid]
        fields = {f: (getattr(before, f), getattr(p, f)) for f in PRINCIPLE_FIELDS if getattr(before, f) != getattr(p, f)}
        if fields:
            result.changed[pid] = fields
        else:
            result.unchanged.append(pid)
    for name in ("name", "version", "system_prompt"):
        if getattr(old, name) != getattr(new, name):
            result.meta[name] = (getattr(old, name), getattr(new, name))
    for name in type(old.sampling).model_fields:
        a, b = getattr(old.sampling, name), getattr(new.sampling, name)
        if a != b:
            result.meta[f"sampling.{name}"] = (a, b)
    old_shots = [ex.model_dump() for ex in old.few_shot]
    new_shots = [ex.model_dump() for ex in new.few_shot]
    if old_shots != new_shots:
        kept = sum(1 for ex in new_shots if ex in old_shots)
        result.meta["few_shot"] = (
            f"{len(old_shots)} examples",
            f"{len(new_shots)} examples ({kept} unchanged, {len(new_shots) - kept} new or edited)",
        )
    return result


def word_diff(old: str, new: str) -> Text:
    """``new`` with deleted words struck through in red and inserted words in green."""
    a, b = old.split(), new.split()
    text = Text()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            text.append(" ".join(a[i1:i2]) + " ")
        if op in ("delete", "replace"):
            text.append(" ".join(a[i1:i2]) + " ", style="red strike")
        if op in ("insert", "replace"):
            text.append(" ".join(b[j1:j2]) + " ", style="green")
    return text


def render_diff(d: ConstitutionDiff, old: Constitution, new: Constitution, console: Console) -> None:
    console.print(f"[bold]{old.name}[/bold] {old.hash} -> [bold]{new.name}[/bold] {new.hash}")
    if d.empty:
        console.print("no differences in principles, system prompt, sampling or few-shot examples")
        return
    console.print(
        f"principles: [green]{len(d.added)} added[/green], [red]{len(d.removed)} removed[/red], "
        f"[yellow]{len(d.changed)} changed[/yellow], {len(d.unchanged)} unchanged"
    )
    for pid in d.added:
        p = new.principle(pid)
        console.print(Text(f"+ {pid}: ", style="bold green") + Text(_clip(p.critique, 200)))
    for pid in d.removed:
        p = old.principle(pid)
        console.print(Text(f"- {pid}: ", style="bold red") + Text(_clip(p.critique, 200)))
    for pid, fields in d.changed.items():
        for name, (a, b) in fields.items():
            label = Text(f"~ {pid}.{name}: ", style="bold yellow")
            if isinstance(a, str) or isinstance(b, str):
                console.print(label + word_diff(a or "", b or ""))
            else:
                console.print(label + Text(f"{a} -> {b}"))
    for name, (a, b) in d.meta.items():
        label = Text(f"~ {name}: ", style="bold yellow")
        if name == "system_prompt":
            console.print(label + word_diff(a or "", b or ""))
        else:
            console.print(label + Text(f"{a} -> {b}"))


@dataclass
class RevisionDiff:
    """The same prompt (``messages``: its whole conversation) revised under both constitutions."""

    prompt: str
    old: dict[str, Any]
    new: dict[str, Any]
    messages: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.old.get("status") == "ok" and self.new.get("status") == "ok"

    @property
    def final_similarity(self) -> float | None:
        return similarity(self.old["final_response"], self.new["final_response"]) if self.ok else None


def pair_up(old_items: list[PreviewItem], new_items: list[PreviewItem]) -> list[RevisionDiff]:
    return [RevisionDiff(a.prompt, a.revision, b.revision, messages=a.messages) for a, b in zip(old_items, new_items)]


def render_revision_diffs(diffs: list[RevisionDiff], console: Console, *, clip: int = 1000) -> None:
    for n, d in enumerate(diffs, 1):
        title = f"[{n}/{len(diffs)}] {_clip(d.prompt, 200)}" + (f" ({len(d.messages)} turns)" if len(d.messages) > 1 else "")
        context = context_text(d.messages)
        if not d.ok:
            errors = [r.get("error", "failed") for r in (d.old, d.new) if r.get("status") != "ok"]
            console.print(Panel(Group(context, Text("; ".join(errors), style="red")), title=title, border_style="red"))
            continue
        table = Table(expand=True, show_lines=True)
        table.add_column("old: " + ", ".join(r["principle_id"] for r in d.old["rounds"]), ratio=1, overflow="fold")
        table.add_column("new: " + ", ".join(r["principle_id"] for r in d.new["rounds"]), ratio=1, overflow="fold")
        same_initial = d.old["initial_response"] == d.new["initial_response"]
        if not same_initial:
            table.add_row(_clip(d.old["initial_response"], clip), _clip(d.new["initial_response"], clip))
        table.add_row(_clip(d.old["final_response"], clip), _clip(d.new["final_response"], clip))
        sim = d.final_similarity or 0.0
        note = Text(
            f"initial answer {'identical' if same_initial else 'differs (system prompt changed)'}; "
            f"final answers {sim:.0%} similar"
            + ("; unchanged" if d.old["final_response"] == d.new["final_response"] else ""),
            style="dim",
        )
        console.print(Panel(Group(context, table), title=title, title_align="left", subtitle=note, subtitle_align="left"))
    ok = [d for d in diffs if d.ok]
    if ok:
        changed = sum(1 for d in ok if d.old["final_response"] != d.new["final_response"])
        console.print(
            f"{changed}/{len(ok)} final answers changed; mean similarity old vs new "
            f"{fmean(d.final_similarity or 0.0 for d in ok):.0%}"
        )
