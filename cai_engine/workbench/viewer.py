"""``cai view DIR``: one self-contained HTML page to browse and spot-check a dataset, offline.

The page is the template ``cai_engine/data/viewer/viewer.html`` (plain HTML, CSS and JavaScript, no
framework, no CDN, a Content-Security-Policy that forbids any network access) with the dataset
embedded as JSON. Revision records (``revisions.jsonl``) and pair records (``pairs.jsonl``) are
joined: a pair judged from a revise run (``--pairs-from revisions:``) shows the initial answer,
every critique and revision, and the judge's verdicts side by side.

Spot-check labels are kept in the browser (``localStorage``) and downloaded as JSONL rows of
``prompt``/``chosen``/``rejected`` (+ ``id``, ``category``, ``note``): the format
``cai judge-eval --labels`` reads.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

from cai_engine.engine.records import latest_records, stable_hash
from cai_engine.errors import CaiError

TEMPLATE = ("data", "viewer", "viewer.html")


def _kind_of(path: Path) -> str:
    """'pairs' or 'revisions', from the first record's keys."""
    for record in latest_records(path):
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


def _revision_view(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": rec["id"],
        "model": rec.get("model"),
        "initial": rec.get("initial_response"),
        "final": rec.get("final_response"),
        "rounds": [
            {"round": r.get("round", 0), "principle_id": r.get("principle_id", "?"), "critique": r.get("critique", ""), "revision": r.get("revision", "")}
            for r in rec.get("rounds", [])
        ],
    }


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
    }
    if view["status"] == "ok":
        view.update(
            p_a=rec.get("p_a_better"), chosen=rec.get("chosen"), consistent=bool(rec.get("consistent")),
            confidence=rec.get("confidence"), per_principle=rec.get("per_principle", {}),
        )
    else:
        view["error"] = rec.get("error", "failed")
    return view


def build_items(files: dict[str, Path], limit: int | None = None) -> list[dict[str, Any]]:
    """One item per pair (with its revision when it came from one) and per unpaired revision."""
    revisions = {r["id"]: r for r in latest_records(files["revisions"])} if "revisions" in files else {}
    pairs = latest_records(files["pairs"]) if "pairs" in files else []
    items: list[dict[str, Any]] = []
    used: set[str] = set()
    for rec in pairs:
        rev_id = (rec.get("origin") or {}).get("revision_id")
        rev = revisions.get(rev_id) if rev_id else None
        if rev is not None:
            used.add(rev_id)
        pair = _pair_view(rec)
        principles = list(dict.fromkeys([*pair["principles"], *(r["principle_id"] for r in (rev or {}).get("rounds", []))]))
        items.append({
            "id": rec["id"], "prompt": rec.get("prompt", ""), "status": "ok" if pair["status"] == "ok" else "failed",
            "error": pair.get("error"), "principles": principles,
            "revision": _revision_view(rev) if rev is not None and rev.get("status") == "ok" else None,
            "pair": pair, "length": max(pair["len_a"], pair["len_b"]),
        })
    for rid, rec in revisions.items():
        if rid in used:
            continue
        ok = rec.get("status") == "ok"
        view = _revision_view(rec) if ok else None
        items.append({
            "id": rid, "prompt": rec.get("prompt", ""), "status": "ok" if ok else "failed",
            "error": None if ok else rec.get("error", "failed"),
            "principles": [r["principle_id"] for r in view["rounds"]] if view else [],
            "revision": view, "pair": None,
            "length": max(len(view["initial"] or ""), len(view["final"] or "")) if view else 0,
        })
    return items[:limit] if limit is not None else items


def _summary(items: list[dict[str, Any]], files: dict[str, Path]) -> str:
    pairs = [i["pair"] for i in items if i["pair"] and i["pair"]["status"] == "ok"]
    parts = [f"{len(items)} records"]
    if pairs:
        inconsistent = sum(1 for p in pairs if not p["consistent"])
        ties = sum(1 for p in pairs if p["chosen"] == "tie")
        parts.append(f"{len(pairs)} judged pairs ({inconsistent} inconsistent, {ties} ties)")
    failed = sum(1 for i in items if i["status"] == "failed")
    if failed:
        parts.append(f"{failed} failed")
    parts.append("from " + ", ".join(str(p) for p in files.values()))
    parts.append("built " + datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    return " · ".join(parts)


def _embed(data: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' can end the element or start a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def render_html(items: list[dict[str, Any]], *, title: str, summary: str, name: str) -> str:
    principles = sorted({p for it in items for p in it["principles"]})
    data = {
        "title": title, "summary": summary, "name": name, "principles": principles, "items": items,
        # localStorage key: the same dataset keeps its labels across rebuilds of the page
        "key": stable_hash(sorted(it["id"] for it in items)),
    }
    template = resources.files("cai_engine").joinpath(*TEMPLATE).read_text(encoding="utf-8")
    html_title = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    values = {"__CAI_TITLE__": html_title, "__CAI_DATA__": _embed(data)}
    # One pass: a title or record that contains a placeholder's name is never substituted again.
    return re.sub("__CAI_(?:TITLE|DATA)__", lambda m: values[m.group(0)], template)


def write_viewer(source: Path, out: Path | None = None, *, limit: int | None = None, title: str | None = None) -> tuple[Path, int]:
    """Build the page for ``source`` (dir or record file); returns (path written, records shown)."""
    files = find_files(source)
    items = build_items(files, limit)
    if not items:
        raise CaiError(f"{source}: the record files are empty; nothing to view")
    name = source.name if source.is_dir() else source.stem
    target = out or (source / "view.html" if source.is_dir() else source.with_suffix(".html"))
    html = render_html(items, title=title or f"cai view · {name}", summary=_summary(items, files), name=name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    return target, len(items)
