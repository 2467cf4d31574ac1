"""``cai redteam``: test prompts per principle - adversarial, borderline and benign look-alikes.

For each principle and kind the generator model is asked for a numbered list of user messages
(:mod:`cai_engine.prompts.redteam`); replies are parsed leniently (numbered, bulleted, quoted or
bare lines; preambles and answers dropped), and every candidate goes through one near-duplicate
filter shared by the whole run (exact after normalisation, then character n-gram Jaccard), so
the same request is never kept twice, not even under two principles. If a principle/kind is still
short after a call, it asks again with a new seed, up to ``max_attempts`` calls.

The output is a JSONL prompt file that ``cai revise --prompts`` and ``cai judge`` read: one line
per prompt with ``prompt``, ``principle_id``, ``kind`` and provenance.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from cai_engine.constitution import Constitution, Principle
from cai_engine.engine.engine import Engine
from cai_engine.engine.records import stable_hash
from cai_engine.models.base import ChatRequest, SamplingParams, Usage
from cai_engine.prompts import redteam as templates
from cai_engine.workbench.textsim import NearDuplicateIndex

KINDS = templates.KINDS

# "1.", "1)", "(1)", "#1", "Prompt 1:", "Message 3 -", "-", "*", "•" at the start of a line.
_MARKER = re.compile(
    r"^\s*(?:(?:prompt|message|request|question|example|user)\s*#?\s*\d+\s*[:.)\-–]\s*"
    r"|\(?#?\d{1,3}\s*[.)\]:\-–]\s*|[-*•+]\s+)",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:user|prompt|message|request|human|q)(?:\*\*)?\s*:\s*", re.IGNORECASE)
_PREAMBLE = re.compile(
    r"^(?:here (?:are|is)|sure|certainly|of course|okay|ok|i (?:can|will|'ll)|these (?:are|messages)|note|"
    r"the following|below (?:are|is))\b",
    re.IGNORECASE,
)
_ANSWER = re.compile(r"^\s*(?:assistant|answer|response|ai)\s*:", re.IGNORECASE)
_QUOTES = "\"'“”‘’`"


def parse_list(text: str, *, min_words: int = 3, max_chars: int = 600) -> list[str]:
    """The user messages in a generated list, in order.

    Accepts numbered (``1.``, ``2)``, ``(3)``, ``Prompt 4:``), bulleted and bare lines; strips
    quotes, bold markers and ``User:`` labels; drops preambles ("Here are ..."), headings (lines
    ending in ``:``), answer lines (``Assistant: ...``), and fragments shorter than ``min_words``.
    A numbered item whose text wraps onto following unnumbered lines is joined back together.
    """
    items: list[str] = []
    numbered_mode = bool(re.search(r"^\s*\(?#?\d{1,3}\s*[.)\]:]", text, re.MULTILINE))
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            current = None
            continue
        if _ANSWER.match(line):
            current = None
            continue
        marked = _MARKER.match(line)
        if marked:
            body = line[marked.end() :]
            again = _MARKER.match(body)  # "(4) Prompt 4: ..." carries two markers
            body = body[again.end() :] if again else body
            if _ANSWER.match(body.replace("**", "")):
                current = None
                continue
            current = [body]
            items.append(body)
            continue
        if numbered_mode and current is not None and items:
            items[-1] = items[-1] + " " + line  # a wrapped continuation of the last numbered item
            continue
        if not numbered_mode:
            items.append(line)
    out: list[str] = []
    for item in items:
        cleaned = _clean(item)
        if not cleaned or len(cleaned) > max_chars or len(cleaned.split()) < min_words:
            continue
        if _PREAMBLE.match(cleaned) or cleaned.endswith(":"):
            continue
        out.append(cleaned)
    return out


def _clean(item: str) -> str:
    text = item.strip().replace("**", "").replace("__", "")
    text = _LABEL.sub("", text, count=1).strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    elif text and text[0] in _QUOTES and text.count(text[0]) == 1:
        text = text[1:].strip()
    return " ".join(text.split())


@dataclass
class RedteamSettings:
    """What to generate: ``n`` kept prompts per principle and kind."""

    n: int = 5
    kinds: Sequence[str] = KINDS
    per_call: int = 8  # how many messages one call asks for (small models lose count beyond ~10)
    max_attempts: int = 4  # calls per principle/kind before giving up on reaching n
    threshold: float = 0.7  # near-duplicate Jaccard threshold on character 4-grams
    params: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=320, temperature=0.9, top_p=0.95))
    seed: int = 0
    principle_ids: Sequence[str] | None = None  # only these principles (default: all)


@dataclass
class RedteamResult:
    records: list[dict[str, Any]]
    calls: int = 0
    parsed: int = 0
    duplicates: int = 0
    short: dict[str, int] = field(default_factory=dict)  # "principle/kind" -> how many were missing
    usage: Usage = field(default_factory=Usage)


def _selected(constitution: Constitution, settings: RedteamSettings) -> list[Principle]:
    if settings.principle_ids is None:
        return list(constitution.principles)
    return [constitution.principle(pid) for pid in settings.principle_ids]  # raises with a hint on typos


async def generate_redteam(
    constitution: Constitution,
    engine: Engine,
    settings: RedteamSettings,
    on_progress: Callable[[int], None] | None = None,
) -> RedteamResult:
    """Generate, parse and dedupe red-team prompts for every selected principle and kind.

    Work goes in rounds: each round sends one call for every principle/kind still short of ``n``,
    all at once (the engine bounds how many are in flight; local backends batch them), then
    dedupes the replies in constitution order. So a deterministic model gives the same file every
    time, and of two duplicates under different principles the earlier principle keeps it.
    ``on_progress`` gets the number of prompts kept after each round.
    """
    for kind in settings.kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    principles = _selected(constitution, settings)
    index = NearDuplicateIndex(threshold=settings.threshold)
    result = RedteamResult(records=[])
    kept: dict[tuple[str, str], list[dict[str, Any]]] = {(p.id, k): [] for p in principles for k in settings.kinds}

    async def call(principle: Principle, kind: str, attempt: int) -> tuple[int, str, Usage]:
        seed = int(stable_hash({"seed": settings.seed, "p": principle.id, "k": kind, "try": attempt}, length=8), 16)
        missing = settings.n - len(kept[(principle.id, kind)])
        count = min(settings.per_call, max(missing + 2, 3))  # a few spare: some get dropped
        messages = templates.generation_messages(principle.critique, principle.judge, kind, count)
        params = settings.params.model_copy(update={"seed": seed, "n": 1})
        response = await engine.generate(ChatRequest(messages=messages, params=params))
        return seed, response.text, response.usage

    for attempt in range(settings.max_attempts):
        todo = [(p, k) for p in principles for k in settings.kinds if len(kept[(p.id, k)]) < settings.n]
        if not todo:
            break
        replies = await asyncio.gather(*(call(p, k, attempt) for p, k in todo))
        for (principle, kind), (seed, text, usage) in zip(todo, replies):
            result.calls += 1
            result.usage = result.usage + usage
            bucket = kept[(principle.id, kind)]
            candidates = parse_list(text)
            result.parsed += len(candidates)
            for prompt in candidates:
                if len(bucket) >= settings.n:
                    break
                if index.add(prompt) is not None:
                    result.duplicates += 1
                    continue
                bucket.append(
                    {
                        "id": stable_hash({"prompt": prompt}),
                        "prompt": prompt,
                        "principle_id": principle.id,
                        "kind": kind,
                        "constitution": {"name": constitution.name, "hash": constitution.hash},
                        "model": engine.spec,
                        "seed": seed,
                    }
                )
        if on_progress is not None:
            on_progress(sum(len(b) for b in kept.values()))

    for p in principles:
        for kind in settings.kinds:
            bucket = kept[(p.id, kind)]
            result.records.extend(bucket)
            if len(bucket) < settings.n:
                result.short[f"{p.id}/{kind}"] = settings.n - len(bucket)
    return result
