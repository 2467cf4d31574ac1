"""Step 1 of induction: for each labelled pair, the model proposes principles that explain the preference.

One record per pair in ``proposals.jsonl`` (resumable like every record store): the pair, the raw
reply, the principles read from it and how they were read. Replies are read leniently, because
small models rarely write the JSON they are asked for:

* ``json``: ``{"principles": [{"judge", "critique", "revision"}, ...]}``, a bare list of such
  objects, or a list of rule strings;
* ``lines``: a numbered or bulleted list of rules, or bare lines in ICAI's "Select the response
  that ..." form or as "Which response ...?" questions;
* ``free``: the first sentence of a reply that is neither, when it has enough words to be a rule.

A field the reply left out is written from the rule by the templates of
:mod:`cai_engine.prompts.induce`. A reply with no usable rule is an ``ok`` record with no
principles (counted in the report), not a failure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from cai_engine.engine.engine import Engine
from cai_engine.engine.records import stable_hash
from cai_engine.engine.runner import RunSummary, run_items
from cai_engine.engine.session import open_store
from cai_engine.models.base import ChatRequest, SamplingParams
from cai_engine.pipelines.candidates import PairSpec
from cai_engine.prompts import induce as templates
from cai_engine.workbench.redteam import parse_list

RECORD_VERSION = 1
FIELDS = ("judge", "critique", "revision")
MAX_FIELD_CHARS = 600
_LISTED = re.compile(r"^\s*(?:\(?\d{1,3}\s*[.)\]:]|[-*•+])\s", re.M)
_RULE_START = re.compile(r"^\s*(?:(?:select|choose|prefer|pick)\s+(?:the\s+)?(?:response|answer)|which\s+(?:response|answer))\b", re.I)
_SENTENCE = re.compile(r"^(.{12,400}?[.?!])(?:\s|$)", re.S)


@dataclass(frozen=True)
class ProposeSettings:
    """How principles are proposed: how many per pair, and the proposer's sampling."""

    per_pair: int = 3
    max_tokens: int = 400
    temperature: float = 0.0
    seed: int = 0

    def fingerprint(self, spec: str) -> dict[str, Any]:
        return {"v": RECORD_VERSION, "model": spec, "per_pair": self.per_pair, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "seed": self.seed}


def chosen_rejected(spec: PairSpec) -> tuple[str, str]:
    """(preferred text, other text) of a labelled pair."""
    assert spec.a is not None and spec.b is not None and spec.label in ("a", "b")
    return (spec.a.text, spec.b.text) if spec.label == "a" else (spec.b.text, spec.a.text)


def proposal_id(spec: PairSpec, settings: ProposeSettings, model_spec: str) -> str:
    return stable_hash({"pair": spec.fingerprint(), "propose": settings.fingerprint(model_spec)})


# -- reading a reply ---------------------------------------------------------------------------------

def _clip(text: Any) -> str:
    return " ".join(str(text).split())[:MAX_FIELD_CHARS] if text is not None else ""


def complete(fields: dict[str, Any]) -> dict[str, str] | None:
    """A principle with all three fields, the missing ones written from whichever is there; None if empty."""
    given = {k: _clip(fields.get(k)) for k in FIELDS}
    rule = given["judge"] or _clip(fields.get("rule") or fields.get("principle")) or given["critique"] or given["revision"]
    if len(rule.split()) < 3:
        return None
    return {
        "judge": templates.judge_from_rule(given["judge"] or rule),
        "critique": given["critique"] or templates.critique_from_rule(rule),
        "revision": given["revision"] or templates.revision_from_rule(rule),
    }


def _json_values(text: str) -> list[Any]:
    """Every JSON object or array that parses, found by scanning for ``{`` / ``[`` (largest first)."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
            except ValueError:
                i += 1
                continue
            found.append(value)
            i = end
        else:
            i += 1
    return found


def _from_json(value: Any) -> list[dict[str, str]]:
    if isinstance(value, dict):
        items = value.get("principles") or value.get("rules")
        if items is None and any(k in value for k in (*FIELDS, "rule", "principle")):
            items = [value]
        value = items if isinstance(items, list) else []
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        principle = complete(item if isinstance(item, dict) else {"rule": item}) if isinstance(item, (dict, str)) else None
        if principle is not None:
            out.append(principle)
    return out


def parse_principles(text: str, limit: int) -> tuple[list[dict[str, str]], str]:
    """The principles of a reply (at most ``limit``) and how they were read: json, lines, free or none."""
    for value in _json_values(text):
        found = _from_json(value)
        if found:
            return found[:limit], "json"
    lines = [line for line in parse_list(text, min_words=3) if not line.lstrip().startswith(("{", "[", '"'))]
    if not _LISTED.search(text):  # bare lines count only when each reads as a rule
        lines = [line for line in lines if _RULE_START.match(line)]
    found = [p for p in (complete({"rule": line}) for line in lines) if p is not None]
    if found:
        return found[:limit], "lines"
    match = _SENTENCE.match(" ".join(text.split()))
    principle = complete({"rule": match.group(1)}) if match else None
    return ([principle], "free") if principle is not None else ([], "none")


# -- the per-pair worker -----------------------------------------------------------------------------

def _pair_view(spec: PairSpec) -> dict[str, Any]:
    chosen, rejected = chosen_rejected(spec)
    return {"prompt": spec.prompt, "chosen": chosen, "rejected": rejected, "row_id": spec.origin.get("row_id"),
            "line": spec.origin.get("line")}


async def propose_for_pair(spec: PairSpec, rid: str, engine: Engine, settings: ProposeSettings) -> dict[str, Any]:
    chosen, rejected = chosen_rejected(spec)
    messages = templates.propose_messages(list(spec.conversation), chosen, rejected, settings.per_pair)
    seed = int(stable_hash({"id": rid, "seed": settings.seed}, length=8), 16)
    params = SamplingParams(max_tokens=settings.max_tokens, temperature=settings.temperature, seed=seed)
    response = await engine.generate(ChatRequest(messages=messages, params=params))
    choice = response.choices[0] if response.choices else None
    text = choice.text if choice else ""
    principles, method = parse_principles(text, settings.per_pair)
    return {
        "id": rid, "version": RECORD_VERSION, "status": "ok", "model": engine.spec, "pair": _pair_view(spec),
        "principles": principles, "parse": method, "raw": text,
        "truncated": bool(choice and choice.finish_reason == "length"),
        "settings": settings.fingerprint(engine.spec), "usage": response.usage.model_dump(),
    }


async def run_propose(
    pairs: Iterable[PairSpec], *, engine: Engine, settings: ProposeSettings, out_path: Path, concurrency: int,
    retry_failed: bool = False, on_record: Callable[[dict[str, Any]], None] | None = None,
    on_skip: Callable[[int], None] | None = None,
) -> RunSummary:
    """Propose principles for every pair into ``out_path`` (one record per pair; resumable)."""
    with open_store(out_path) as store:
        return await run_items(
            pairs,
            record_id=lambda spec: proposal_id(spec, settings, engine.spec),
            worker=lambda spec, rid: propose_for_pair(spec, rid, engine, settings),
            store=store, concurrency=concurrency, retry_failed=retry_failed,
            failure_base=lambda spec: {"pair": _pair_view(spec), "model": engine.spec},
            on_record=on_record, on_skip=on_skip,
        )
