"""``cai constitution preview``: a handful of prompts through critique->revise (+ judge), side by side.

An author edits a principle and wants to see its effect in a minute, not after a full run. This
runs the real pipelines (:func:`cai_engine.pipelines.revise.revise_one`, and
:func:`cai_engine.pipelines.judge.judge_pair` on initial vs revised answer, both orders) on the
first ``n`` prompts, concurrently, and renders each prompt as initial | revised columns with the
critiques between them and the judge's probabilities underneath. The records are the same shape as
``cai revise`` / ``cai judge`` records, so ``--out`` can be opened with ``cai view``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any, Sequence

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cai_engine.engine.engine import Engine
from cai_engine.engine.records import stable_hash
from cai_engine.errors import CaiError
from cai_engine.pipelines.quality import DEFAULT_MIN_CONFIDENCE
from cai_engine.pipelines.revise import ReviseSettings, record_id, revise_one
from cai_engine.sources import PromptItem, as_dicts, conversation_key


@dataclass
class PreviewItem:
    """One prompt's revision record and, when a judge ran, its pair record (a = initial, b = revised).

    ``prompt`` is the last user turn; ``messages`` the whole prompt conversation."""

    prompt: str
    revision: dict[str, Any]
    pair: dict[str, Any] | None = None
    messages: list[dict[str, str]] = field(default_factory=list)

    @property
    def context(self) -> list[dict[str, str]]:
        """The turns before the last user turn (empty for a single-turn prompt)."""
        return self.messages[:-1]


def _as_conversation(prompt: str | PromptItem | Sequence[Any]) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, PromptItem):
        return as_dicts(prompt.messages)
    return as_dicts(prompt)


def _failed(messages: list[dict[str, str]], rid: str, engine: Engine, settings: ReviseSettings, exc: Exception) -> dict[str, Any]:
    return {
        "id": rid, "status": "failed", "prompt": messages[-1]["content"], "messages": messages, "model": engine.spec,
        "constitution": {"name": settings.constitution.name, "hash": settings.constitution.hash},
        "error": f"{type(exc).__name__}: {exc}",
    }


async def _judge(item: PreviewItem, judge_engine: Engine, judge_settings: Any) -> None:
    from cai_engine.pipelines.candidates import Candidate, conversation_spec
    from cai_engine.pipelines.judge import judge_pair, pair_id

    rec = item.revision
    from cai_engine.pipelines.revise import initial_truncated, is_truncated

    base = {"revision_id": rec["id"], "model": rec.get("model")}
    spec = conversation_spec(
        item.messages,
        origin={"kind": "revisions", "file": "preview", "revision_id": rec["id"]},
        a=Candidate(rec["initial_response"], {**base, "kind": "initial", "truncated": initial_truncated(rec)}),
        b=Candidate(rec["final_response"], {**base, "kind": "revision", "rounds": len(rec.get("rounds", [])),
                                            "truncated": is_truncated(rec)}),
    )
    item.pair = await judge_pair(spec, pair_id(spec, judge_settings, judge_engine.spec), judge_engine, judge_settings)


async def run_preview(
    prompts: Sequence[str | PromptItem | Sequence[Any]],
    *,
    engine: Engine,
    settings: ReviseSettings,
    judge_engine: Engine | None = None,
    judge_settings: Any = None,
    rid_salt: str | None = None,
) -> list[PreviewItem]:
    """Revise every prompt (and judge initial vs revised when a judge is given), concurrently.

    A prompt is a string, a :class:`~cai_engine.sources.PromptItem` or a conversation (role/content
    turns ending with the user's); a conversation is revised and judged with all its context.

    A prompt that fails becomes a failed record (shown, not raised), like in ``cai revise``.
    ``rid_salt`` replaces the record id's constitution-dependent part, so two constitutions
    previewed with the same salt draw the same step seeds (see :mod:`.diff`).
    """

    async def one(prompt: str | PromptItem | Sequence[Any]) -> PreviewItem:
        messages = _as_conversation(prompt)
        rid = (
            stable_hash({"prompt": conversation_key(messages), "salt": rid_salt, "seed": settings.seed, "model": engine.spec})
            if rid_salt is not None
            else record_id(messages, settings, engine.spec)
        )
        label = messages[-1]["content"]
        try:
            item = PreviewItem(label, await revise_one(messages, rid, engine, settings), messages=messages)
        except (CaiError, ValueError, RuntimeError) as exc:
            return PreviewItem(label, _failed(messages, rid, engine, settings, exc), messages=messages)
        if judge_engine is not None and judge_settings is not None:
            try:
                await _judge(item, judge_engine, judge_settings)
            except (CaiError, ValueError, RuntimeError) as exc:
                item.pair = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        return item

    return list(await asyncio.gather(*(one(p) for p in prompts)))


def p_revised(pair: dict[str, Any]) -> dict[str, float | None] | None:
    """P(revised better) overall and as seen in each order (a = initial, b = revised)."""
    if not pair or pair.get("status") != "ok":
        return None
    per = list((pair.get("per_principle") or {}).values())
    ab = [v["p_a_ab"] for v in per if v.get("p_a_ab") is not None]
    ba = [v["p_a_ba"] for v in per if v.get("p_a_ba") is not None]
    return {
        "p": 1.0 - pair["p_a_better"],
        "ab": 1.0 - fmean(ab) if ab else None,
        "ba": 1.0 - fmean(ba) if ba else None,
    }


def decision(pair: dict[str, Any]) -> str:
    """The judge's pick as an export sees it: 'a', 'b', or 'tie' (a tie, or a pick within the confidence floor)."""
    chosen = pair.get("chosen")
    if chosen in ("a", "b") and (pair.get("confidence") or 0.0) >= DEFAULT_MIN_CONFIDENCE:
        return chosen
    return "tie"


def _fmt(p: float | None) -> str:
    return "-" if p is None else f"{p:.2f}"


def judge_line(pair: dict[str, Any] | None) -> Text:
    if pair is None:
        return Text("judge: not run", style="dim")
    if pair.get("status") != "ok":
        return Text(f"judge failed: {pair.get('error', '?')}", style="red")
    probs = p_revised(pair)
    assert probs is not None
    pick = decision(pair)
    style = "green" if pick == "b" else "yellow" if pick == "tie" else "red"
    text = Text("judge ", style="bold")
    if pick == "tie" and pair["chosen"] != "tie":
        leaned = {"a": "initial", "b": "revised"}[pair["chosen"]]
        text.append(f"tie (within the {DEFAULT_MIN_CONFIDENCE} confidence floor; leaned {leaned})", style=style)
    else:
        text.append(f"prefers {dict(a='initial', b='revised', tie='tie')[pick]}" if pick != "tie" else "tie", style=style)
    text.append(
        f"  P(revised better) = {_fmt(probs['p'])}  (revised shown second: {_fmt(probs['ab'])}, "
        f"revised shown first: {_fmt(probs['ba'])})  "
        f"{'consistent' if pair.get('consistent') else 'INCONSISTENT across orders'}  "
        f"principles: {', '.join(pair.get('principles', []))}"
    )
    return text


def context_text(messages: list[dict[str, str]], *, clip: int = 300) -> Text:
    """The turns before the last user turn, one clipped line each (empty for a single-turn prompt)."""
    text = Text()
    for turn in messages[:-1]:
        text.append(f"{turn['role']}: ", style="bold magenta" if turn["role"] == "system" else "bold")
        text.append(_clip(turn["content"], clip).replace("\n", " ") + "\n", style="dim")
    if messages[:-1]:
        text.append("user (answered below): ", style="bold")
        text.append(_clip(messages[-1]["content"], clip).replace("\n", " ") + "\n")
    return text


def render_item(item: PreviewItem, index: int, total: int, console: Console, *, clip: int = 1200) -> None:
    rec = item.revision
    turns = f" ({len(item.messages)} turns)" if len(item.messages) > 1 else ""
    title = f"[{index}/{total}] {_clip(item.prompt, 200)}{turns}"
    context = context_text(item.messages)
    if rec.get("status") != "ok":
        console.print(Panel(Group(context, Text(rec.get("error", "failed"), style="red")), title=title, border_style="red"))
        return
    table = Table(show_header=True, expand=True, show_lines=True)
    table.add_column("initial", ratio=1, overflow="fold")
    rounds = rec.get("rounds", [])
    table.add_column(f"revised ({len(rounds)} round{'s' * (len(rounds) != 1)})", ratio=1, overflow="fold")
    table.add_row(_clip(rec["initial_response"], clip), _clip(rec["final_response"], clip))
    critiques = Text()
    for r in rounds:
        critiques.append(f"round {r['round']} · {r['principle_id']}: ", style="bold cyan")
        critiques.append(_clip(r["critique"], clip // 2) + "\n")
    lengths = Text(f"length {len(rec['initial_response'])} -> {len(rec['final_response'])} chars", style="dim")
    steps = rec.get("truncated_steps") or []
    if steps:
        lengths.append(f"  TRUNCATED at the token limit: {', '.join(steps)} (dropped by `cai export`)", style="bold red")
    console.print(Panel(Group(context, table, critiques, judge_line(item.pair), lengths), title=title, title_align="left"))


def summary_line(items: list[PreviewItem]) -> str:
    ok = [i for i in items if i.revision.get("status") == "ok"]
    parts = [f"{len(ok)}/{len(items)} revised"]
    pairs = [i.pair for i in ok if i.pair and i.pair.get("status") == "ok"]
    judged = [j for j in (p_revised(p) for p in pairs) if j is not None]
    if judged:
        wins = sum(decision(p) == "b" for p in pairs)  # a pick within the confidence floor is a tie, not a win
        ties = sum(decision(p) == "tie" for p in pairs)
        parts.append(f"judge prefers the revision in {wins}/{len(judged)}"
                     + (f" ({ties} ties or within the {DEFAULT_MIN_CONFIDENCE} floor)" if ties else "")
                     + f" (mean P = {fmean(j['p'] or 0 for j in judged):.2f})")
    truncated = sum(bool(i.revision.get("truncated")) for i in ok)
    if truncated:
        parts.append(f"{truncated} truncated (an export drops them)")
    if ok:
        growth = fmean(len(i.revision["final_response"]) / max(1, len(i.revision["initial_response"])) for i in ok)
        parts.append(f"revisions are {growth:.2f}x the initial length on average")
    return "; ".join(parts)


def render_preview(items: list[PreviewItem], console: Console) -> None:
    for n, item in enumerate(items, 1):
        render_item(item, n, len(items), console)
    console.print(summary_line(items))


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
