"""``cai view DIR``: one self-contained HTML page to browse and spot-check a dataset, offline.

The page is the template ``cai_engine/data/viewer/viewer.html`` (plain HTML, CSS and JavaScript, no
framework, no CDN, a Content-Security-Policy that forbids any network access) with the dataset
embedded as JSON, written item by item from the record files (memory: the id indexes and the
items' ids, never the records). Revision records (``revisions.jsonl``) and pair records (``pairs.jsonl``) are
joined: a pair judged from a revise run (``--pairs-from revisions:``) shows the initial answer,
every critique and revision, and the judge's verdicts side by side.

A multi-turn prompt shows its context (every turn before the last user turn) above the prompt.
A pair judged into its own folder finds its revision through the pair's ``origin.file``.

The top of the page is the dataset report (:mod:`cai_engine.pipelines.quality`) of what a default
export of these records would keep: rows kept/dropped by reason, truncation, consistency, ties,
length bias, duplicates, refusals, principle draws. Text that hit the token limit is marked
"truncated", and a pair the judge decided below the export's confidence floor is shown as a tie.

Spot-check labels are kept in the browser (``localStorage``) and downloaded as JSONL rows of
``prompt``/``chosen``/``rejected`` (+ ``id``, ``category``, ``note``; ``prompt`` is the whole
conversation as a messages list when it has context): the format ``cai judge-eval --labels`` reads.
"""

from __future__ import annotations

import hashlib
import heapq
import io
import json
import re
from array import array
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TextIO

from cai_engine.engine.records import RecordIndex, iter_latest, read_jsonl, read_line_at
from cai_engine.errors import CaiError
from cai_engine.pipelines.quality import DEFAULT_MIN_CONFIDENCE

TEMPLATE = ("data", "viewer", "viewer.html")


def _kind_of(path: Path) -> str:
    """'pairs' or 'revisions', from the first record's keys."""
    for record in read_jsonl(path):
        if "candidates" in record or "judgments" in record:
            return "pairs"
        if "initial_response" in record or "rounds" in record:
            return "revisions"
        break
    raise CaiError(
        f"{path}: not a revisions or pairs record file (no 'candidates' or 'initial_response' in its first record); "
        "pass the --out dir of `cai revise`/`cai judge` or one of their .jsonl files"
    )


def find_files(path: Path) -> dict[str, Path]:
    """The record files to show: ``{'revisions': ..., 'pairs': ...}`` (one or both)."""
    if not path.exists():
        raise CaiError(f"{path} not found; pass the --out dir of `cai revise`/`cai judge` or a .jsonl record file")
    if path.is_file():
        return {_kind_of(path): path}
    found = {name: path / f"{name}.jsonl" for name in ("revisions", "pairs") if (path / f"{name}.jsonl").is_file()}
    if not found:
        raise CaiError(f"{path} has no revisions.jsonl or pairs.jsonl; run `cai revise` or `cai judge` with --out {path} first")
    return found


def _revision_view(rec: dict[str, Any], source: Path | None = None) -> dict[str, Any]:
    from cai_engine.pipelines.revise import is_truncated, truncated_steps

    view = {
        "id": rec["id"],
        "model": rec.get("model"),
        "initial": rec.get("initial_response"),
        "final": rec.get("final_response"),
        "rounds": [
            {"round": r.get("round", 0), "principle_id": r.get("principle_id", "?"), "critique": r.get("critique", ""), "revision": r.get("revision", "")}
            for r in rec.get("rounds", [])
        ],
        # steps that hit the token limit: "initial", "critique:i", "revision:i" (i: index in rounds)
        "truncated_steps": truncated_steps(rec),
        "truncated": is_truncated(rec),
    }
    if source is not None:
        view["source"] = str(source)  # the chain came from a revisions file in another folder
    return view


def _pair_view(rec: dict[str, Any]) -> dict[str, Any]:
    cands = {c.get("id"): c for c in rec.get("candidates", [])}
    a, b = cands.get("a") or {}, cands.get("b") or {}
    view: dict[str, Any] = {
        "id": rec["id"],
        "status": rec.get("status", "ok"),
        "a": a.get("text") or "",
        "b": b.get("text") or "",
        "a_kind": (a.get("source") or {}).get("kind"),
        "b_kind": (b.get("source") or {}).get("kind"),
        "judge_model": rec.get("judge_model"),
        "principles": rec.get("principles", []),
        "judgments": [
            {k: j.get(k) for k in ("principle_id", "order", "verdict", "p_first", "method")} for j in rec.get("judgments", [])
        ],
        "len_a": len(a.get("text") or ""),
        "len_b": len(b.get("text") or ""),
        "a_truncated": bool((a.get("source") or {}).get("truncated")),
        "b_truncated": bool((b.get("source") or {}).get("truncated")),
        "floor": DEFAULT_MIN_CONFIDENCE,
    }
    if view["status"] == "ok":
        chosen, confidence = rec.get("chosen"), rec.get("confidence")
        # Within the export's confidence floor the judge has no real preference: a tie, not a pick.
        pick = chosen if chosen in ("a", "b") and (confidence or 0.0) >= DEFAULT_MIN_CONFIDENCE else "tie"
        view.update(
            p_a=rec.get("p_a_better"), chosen=chosen, pick=pick, consistent=bool(rec.get("consistent")),
            confidence=confidence, per_principle=rec.get("per_principle", {}),
        )
    else:
        view["error"] = rec.get("error", "failed")
    return view


def _context(rec: dict[str, Any]) -> list[dict[str, str]]:
    """The turns of a record's prompt conversation before its last user turn."""
    messages = rec.get("messages") or []
    return [{"role": str(m.get("role")), "content": str(m.get("content", ""))} for m in messages[:-1]]


class _Sources:
    """The revision records pairs point at: the folder's own revisions file, or the one a pair's
    ``origin.file`` names (a judge run in its own folder, as the README shows). One index per file."""

    def __init__(self, own: Path | None, pairs_file: Path | None):
        self.own = own
        self.pairs_dir = pairs_file.parent if pairs_file is not None else None
        self._indexes: dict[Path, RecordIndex | None] = {}
        if own is not None:
            self._indexes[own.resolve()] = RecordIndex(own)

    def index(self, path: Path) -> RecordIndex | None:
        key = path.resolve()
        if key not in self._indexes:
            self._indexes[key] = RecordIndex(path) if path.is_file() else None
        return self._indexes[key]

    def _candidates(self, origin: dict[str, Any]) -> Iterator[Path]:
        if self.own is not None:
            yield self.own
        named = origin.get("file")
        if origin.get("kind") != "revisions" or not named:
            return
        path = Path(named)
        if path.is_dir():
            path = path / "revisions.jsonl"
        yield path
        if not path.is_absolute() and self.pairs_dir is not None:  # written relative to where `cai judge` ran
            yield self.pairs_dir / path

    def find(self, origin: dict[str, Any]) -> tuple[Path, int] | None:
        """(file, offset) of the revision a pair came from, or None."""
        rev_id = origin.get("revision_id")
        if not rev_id:
            return None
        for path in self._candidates(origin):
            index = self.index(path)
            offset = index.offset(rev_id) if index is not None else None
            if offset is not None:
                return path, offset
        return None


class ViewQuality:
    """What a default export of the records shown would keep and drop (the page's dataset report):
    ``cai export sft`` of the revisions, ``cai export dpo`` of the pairs, current settings only."""

    def __init__(self, files: dict[str, Path]):
        from cai_engine.engine.outsettings import record_filter
        from cai_engine.pipelines.quality import PAIR_REASONS, SFT_REASONS, Quality

        self._current = {kind: record_filter(path) for kind, path in files.items()}
        self.sft = Quality("sft", SFT_REASONS, {"keep_truncated": False, "drop_unchanged": False, "all_settings": False})
        self.pairs = Quality("dpo", PAIR_REASONS, {"min_confidence": DEFAULT_MIN_CONFIDENCE, "drop_inconsistent": True,
                                                   "keep_truncated": False, "all_settings": False})

    def revision(self, record: dict[str, Any]) -> None:
        from cai_engine.pipelines.quality import count_revision

        current = self._current.get("revisions")
        count_revision(self.sft, record, current(record) if current else True)

    def pair(self, record: dict[str, Any]) -> None:
        from cai_engine.pipelines.quality import count_pair

        current = self._current.get("pairs")
        count_pair(self.pairs, record, current(record) if current else True)

    def summary(self) -> dict[str, Any]:
        """The report of each record kind shown (``sft``: revisions, ``pairs``), as in ``quality.json``."""
        out: dict[str, Any] = {}
        if self.sft.records:
            out["sft"] = self.sft.figures()
        if self.pairs.records:
            out["pairs"] = self.pairs.figures()
        return out


def iter_items(files: dict[str, Path], limit: int | None = None, quality: ViewQuality | None = None) -> Iterator[dict[str, Any]]:
    """One item per pair (with its revision when it came from one), then per unpaired revision.

    Revisions are looked up by id through the file's index, one line at a time; a pair judged from
    a revise run in another folder finds its revision there (``origin.file``). ``quality`` is fed
    every record shown.
    """
    revisions_file = files.get("revisions")
    sources = _Sources(revisions_file, files.get("pairs"))
    own = sources.index(revisions_file) if revisions_file is not None else None
    used: set[int] = set()  # offsets of the own revisions a pair showed
    shown = 0
    if "pairs" in files:
        for rec in iter_latest(files["pairs"]):
            if limit is not None and shown >= limit:
                return
            found = sources.find(rec.get("origin") or {})
            rev = read_line_at(found[0], found[1]) if found is not None else None
            elsewhere = found is not None and found[0] != revisions_file
            if found is not None and not elsewhere:
                used.add(found[1])
                if quality is not None and rev is not None:
                    quality.revision(rev)
            if quality is not None:
                quality.pair(rec)
            pair = _pair_view(rec)
            principles = list(dict.fromkeys([*pair["principles"], *(r["principle_id"] for r in (rev or {}).get("rounds", []))]))
            shown += 1
            revision = None
            if rev is not None and rev.get("status") == "ok":
                revision = _revision_view(rev, found[0] if elsewhere and found is not None else None)
            yield {
                "id": rec["id"], "prompt": rec.get("prompt", ""), "context": _context(rec),
                "status": "ok" if pair["status"] == "ok" else "failed",
                "error": pair.get("error"), "principles": principles,
                "revision": revision,
                "pair": pair, "length": max(pair["len_a"], pair["len_b"]),
            }
    if own is None:
        return
    for rec in iter_latest(revisions_file):  # type: ignore[arg-type]
        if own.offset(rec["id"]) in used:
            continue
        if limit is not None and shown >= limit:
            return
        if quality is not None:
            quality.revision(rec)
        ok = rec.get("status") == "ok"
        view = _revision_view(rec) if ok else None
        shown += 1
        yield {
            "id": rec["id"], "prompt": rec.get("prompt", ""), "context": _context(rec), "status": "ok" if ok else "failed",
            "error": None if ok else rec.get("error", "failed"),
            "principles": [r["principle_id"] for r in view["rounds"]] if view else [],
            "revision": view, "pair": None,
            "length": max(len(view["initial"] or ""), len(view["final"] or "")) if view else 0,
        }


def build_items(files: dict[str, Path], limit: int | None = None) -> list[dict[str, Any]]:
    """:func:`iter_items` as a list: small files only (tests); the page streams them."""
    return list(iter_items(files, limit))


_HEX_ID = re.compile(r"[0-9a-f]{16}")


class _Tally:
    """What the page says about its items, counted as they are written: no item is kept."""

    def __init__(self) -> None:
        self.items = self.pairs = self.inconsistent = self.ties = self.failed = self.within_floor = self.truncated = 0
        self.principles: set[str] = set()
        self._hex_ids = array("Q")  # our ids are 16 hex digits: 8 bytes each
        self._other_ids: list[str] = []

    def add(self, item: dict[str, Any]) -> None:
        self.items += 1
        self.principles.update(item["principles"])
        self.failed += item["status"] == "failed"
        pair = item["pair"]
        if pair and pair["status"] == "ok":
            self.pairs += 1
            self.inconsistent += not pair["consistent"]
            self.ties += pair["chosen"] == "tie"
            self.within_floor += pair["chosen"] != "tie" and pair["pick"] == "tie"
        revision = item["revision"]
        self.truncated += bool((revision and revision["truncated"]) or (pair and (pair["a_truncated"] or pair["b_truncated"])))
        if _HEX_ID.fullmatch(item["id"]):
            self._hex_ids.append(int(item["id"], 16))
        else:
            self._other_ids.append(item["id"])

    def key(self) -> str:
        """``stable_hash(sorted(ids))``, hashed as it is written out (the ids sort as 8-byte ints)."""
        import numpy as np

        hex_ids = (f"{v:016x}" for v in np.sort(np.frombuffer(self._hex_ids, dtype=np.uint64)).tolist()) if self._hex_ids else iter(())
        digest = hashlib.sha256(b"[")
        for n, rid in enumerate(heapq.merge(hex_ids, sorted(self._other_ids))):
            digest.update((("," if n else "") + json.dumps(rid, ensure_ascii=False)).encode("utf-8"))
        digest.update(b"]")
        return digest.hexdigest()[:16]


def _summary(tally: _Tally, files: dict[str, Path]) -> str:
    parts = [f"{tally.items} records"]
    if tally.pairs:
        parts.append(f"{tally.pairs} judged pairs ({tally.inconsistent} inconsistent, {tally.ties} ties"
                     f"{f', {tally.within_floor} within the {DEFAULT_MIN_CONFIDENCE} floor' if tally.within_floor else ''})")
    if tally.truncated:
        parts.append(f"{tally.truncated} truncated")
    if tally.failed:
        parts.append(f"{tally.failed} failed")
    parts.append("from " + ", ".join(str(p) for p in files.values()))
    parts.append("built " + datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return " · ".join(parts)


def _embed(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' can end the element or start a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def _write_page(out: TextIO, items: Iterable[dict[str, Any]], *, title: str, name: str, summary: Callable[[_Tally], str],
                quality: Callable[[], dict[str, Any]] = dict) -> _Tally:
    """Write the page to ``out``, items streamed into the data element; the figures follow the items."""
    template = resources.files("cai_engine").joinpath(*TEMPLATE).read_text(encoding="utf-8")
    html_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    tally = _Tally()
    # One pass over the template: a title or record that contains a placeholder's name is never substituted again.
    for n, part in enumerate(re.split("(__CAI_(?:TITLE|DATA)__)", template)):
        if n % 2 == 0:
            out.write(part)
        elif part == "__CAI_TITLE__":
            out.write(html_title)
        else:
            out.write(f'{{"title":{_embed(title)},"name":{_embed(name)},"items":[')
            for count, item in enumerate(items):
                tally.add(item)
                out.write(("," if count else "") + _embed(item))
            out.write(f'],"summary":{_embed(summary(tally))},"quality":{_embed(quality())},'
                      f'"principles":{_embed(sorted(tally.principles))},'
                      # localStorage key: the same dataset keeps its labels across rebuilds of the page
                      f'"key":{_embed(tally.key())}}}')
    return tally


def render_html(items: list[dict[str, Any]], *, title: str, summary: str, name: str) -> str:
    out = io.StringIO()
    _write_page(out, items, title=title, name=name, summary=lambda _: summary)
    return out.getvalue()


def write_viewer(source: Path, out: Path | None = None, *, limit: int | None = None, title: str | None = None) -> tuple[Path, int]:
    """Build the page for ``source`` (dir or record file); returns (path written, records shown)."""
    files = find_files(source)
    quality = ViewQuality(files)
    items = iter_items(files, limit, quality)
    first = next(items, None)
    if first is None:
        raise CaiError(f"{source}: the record files are empty; nothing to view")
    name = source.name if source.is_dir() else source.stem
    target = out or (source / "view.html" if source.is_dir() else source.with_suffix(".html"))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")  # a failure midway leaves no half page behind
    try:
        with partial.open("w", encoding="utf-8") as fh:
            tally = _write_page(fh, _chain(first, items), title=title or f"cai view · {name}", name=name,
                                summary=lambda t: _summary(t, files), quality=quality.summary)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target, tally.items


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest
