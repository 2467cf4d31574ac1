"""Step 2 of induction: merge near-duplicate proposals into candidates, each with its support.

ICAI (``rdnfn/icai``, ``algorithm/clustering.py``) clusters proposals by embedding (KMeans) and has
the model summarise each cluster. No embedding model is downloaded here. Instead:

* ``textsim`` (default): the project's text similarity (:mod:`cai_engine.workbench.textsim`,
  Jaccard of character 4-grams) on each proposal's judge question, with the shared "Which
  response" opening stripped; a proposal joins the first candidate it is at least
  ``--similarity`` close to. Only near-identical wordings merge.
* ``model``: after ``textsim``, the model is shown the candidates' judge questions and asked
  which test the same property; the groups it names are merged (one call, one record in
  ``merges.jsonl``, resumable). A reply that cannot be read merges nothing.

A candidate keeps the wording proposed most often among its members and its **support**: the
labelled pairs whose proposals merged into it (ICAI's cluster size). Candidates are ordered by
support, most first; only the first ``--max-candidates`` are tested.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from cai_engine.engine.engine import Engine
from cai_engine.engine.records import iter_latest, stable_hash
from cai_engine.engine.runner import run_items
from cai_engine.engine.session import open_store
from cai_engine.models.base import ChatRequest, SamplingParams
from cai_engine.prompts import induce as templates
from cai_engine.text_measures import normalize
from cai_engine.workbench.textsim import NearDuplicateIndex

MERGE_METHODS = ("textsim", "model")
MAX_VARIANTS_KEPT = 5
_ID_STOP = set("a an the of to and or in on for with by is are be its it that which response responses answer "
               "better more less most least does do than".split())


@dataclass
class Candidate:
    """A principle to test: the kept wording, its support and the other wordings that merged into it."""

    judge: str
    critique: str
    revision: str
    support: set[str] = field(default_factory=set)  # ids of the proposal records (one per labelled pair)
    proposals: int = 0  # proposals merged in (a pair may propose two variants)
    wordings: dict[str, int] = field(default_factory=dict)  # judge question -> times proposed
    id: str = ""

    def principle(self) -> dict[str, str]:
        return {"id": self.id, "judge": self.judge, "critique": self.critique, "revision": self.revision}

    def absorb(self, other: "Candidate") -> None:
        self.support |= other.support
        self.proposals += other.proposals
        for text, count in other.wordings.items():
            self.wordings[text] = self.wordings.get(text, 0) + count

    def summary(self) -> dict[str, Any]:
        variants = sorted(self.wordings.items(), key=lambda kv: -kv[1])
        return {**self.principle(), "support": len(self.support), "proposals": self.proposals,
                "variants": [text for text, _ in variants if text != self.judge][:MAX_VARIANTS_KEPT]}


def merge_key(judge: str) -> str:
    """What two judge questions are compared on: the predicate, without "Which response"."""
    return templates.rule_clause(judge)


def cluster(proposals: Iterable[dict[str, Any]], threshold: float) -> list[Candidate]:
    """Near-duplicate proposals merged into candidates, ordered by support (then first appearance)."""
    index = NearDuplicateIndex(threshold=threshold)
    candidates: list[Candidate] = []
    texts: list[list[dict[str, str]]] = []  # per candidate, the member principles (to pick the wording)
    for record in sorted(proposals, key=lambda r: r["id"]):
        for p in record.get("principles", []):
            dup = index.add(merge_key(p["judge"]))
            if dup is None:
                candidates.append(Candidate(p["judge"], p["critique"], p["revision"]))
                texts.append([])
                dup = len(candidates) - 1
            c = candidates[dup]
            c.support.add(record["id"])
            c.proposals += 1
            c.wordings[p["judge"]] = c.wordings.get(p["judge"], 0) + 1
            texts[dup].append(p)
    for c, members in zip(candidates, texts):
        _take_commonest(c, members)
    return order(candidates)


def _take_commonest(c: Candidate, members: list[dict[str, str]]) -> None:
    best = max(c.wordings.items(), key=lambda kv: kv[1])[0]  # max keeps the first of equals
    chosen = next(p for p in members if p["judge"] == best)
    c.judge, c.critique, c.revision = chosen["judge"], chosen["critique"], chosen["revision"]


def order(candidates: list[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: -len(c.support))  # stable: first appearance breaks ties


def apply_groups(candidates: list[Candidate], groups: list[list[int]]) -> list[Candidate]:
    """Merge the candidates of each group (0-based indices; overlapping groups chain) into its best-supported one."""
    parent = list(range(len(candidates)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for group in groups:
        members = [i for i in group if 0 <= i < len(candidates)]
        for i in members[1:]:
            parent[root(i)] = root(members[0])
    merged: dict[int, list[int]] = {}
    for i in range(len(candidates)):
        merged.setdefault(root(i), []).append(i)
    out = []
    for members in merged.values():
        head = min(members, key=lambda i: (-len(candidates[i].support), i))
        for i in members:
            if i != head:
                candidates[head].absorb(candidates[i])
        out.append(candidates[head])
    return order(out)


def parse_groups(text: str, n: int) -> list[list[int]] | None:
    """1-based groups from the merger's reply as 0-based lists; None if no list of lists can be read."""
    match = re.search(r"\[\s*(?:\[.*?\]\s*,?\s*)*\]", text, re.S)
    if match is None:
        return None
    try:
        value = json.loads(match.group(0))
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(g, list) for g in value):
        return None
    groups = []
    for g in value:
        members = sorted({int(i) - 1 for i in g if isinstance(i, (int, float)) and 1 <= int(i) <= n})
        if len(members) > 1:
            groups.append(members)
    return groups


async def model_merge(candidates: list[Candidate], engine: Engine, out_path: Path, *, max_tokens: int = 200,
                      seed: int = 0) -> tuple[list[Candidate], dict[str, Any]]:
    """The model's groups of same-meaning candidates merged; the merge record (saved, resumable) beside."""
    questions = [c.judge for c in candidates]
    rid = stable_hash({"merge": questions, "model": engine.spec, "max_tokens": max_tokens, "seed": seed})

    async def worker(_: Any, rid: str) -> dict[str, Any]:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=seed)
        response = await engine.generate(ChatRequest(messages=templates.merge_messages(questions), params=params))
        text = response.text
        groups = parse_groups(text, len(questions))
        return {"id": rid, "status": "ok", "model": engine.spec, "questions": questions, "raw": text,
                "groups": groups, "usage": response.usage.model_dump()}

    with open_store(out_path) as store:
        if len(candidates) > 1:
            await run_items([None], record_id=lambda _: rid, worker=worker, store=store, concurrency=1)
    record = next((r for r in iter_latest(out_path) if r["id"] == rid), None) if out_path.exists() else None
    groups = (record or {}).get("groups") or []
    return apply_groups(candidates, groups), {"groups": groups, "readable": record is not None and record.get("groups") is not None}


def assign_ids(candidates: list[Candidate], taken: Iterable[str] = ()) -> None:
    """Readable unique ids from each judge question (``ends_question``), avoiding ``taken`` ones."""
    used = set(taken)
    for c in candidates:
        words = [w for w in normalize(merge_key(c.judge)).split() if w not in _ID_STOP][:4] or ["principle"]
        base = re.sub(r"[^a-z0-9_-]", "", "_".join(words)) or "principle"
        pid, n = base, 2
        while pid in used:
            pid, n = f"{base}_{n}", n + 1
        used.add(pid)
        c.id = pid
