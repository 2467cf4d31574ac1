"""Step 4 of induction: write the induced constitution (YAML) and its report (Markdown + JSON).

The YAML is an ordinary constitution (``cai constitution validate`` accepts it); each principle's
``metadata`` carries what was measured on the held-out pairs (agreement, its interval, votes,
position consistency, relevance, support), which the loader keeps and the content hash ignores.
The report lists every tested candidate, kept or not and why, the whole constitution against the
baseline on the same held-out pairs, and caveats read from the figures themselves (unreadable
proposals, intervals that include chance, few held-out pairs, a tiny model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from cai_engine.atomic import write_json_atomic

INDUCED_TAG = "induced"
#: Specs of models far too small to write or judge principles well: the report says so.
TINY_MODELS = ("local/smollm2", "local/smollm", "mock/")
FEW_HELD_OUT = 30


def principle_metadata(c: dict[str, Any], held_out: int, proposal_pairs: int) -> dict[str, Any]:
    f = c["figures"]
    return {
        "induced_by": "cai constitution induce",
        "agreement": f["agreement"],
        "agreement_ci95": list(f["agreement_ci95"]) if f["agreement_ci95"] else None,
        "held_out_pairs": f["n"],
        "votes": dict(f["votes"]),
        "position_consistency": f["position_consistency"],
        "relevance": f["relevance"],
        "support": c["support"],
        "support_of": proposal_pairs,
        "held_out_of": held_out,
    }


def constitution_doc(kept: list[dict[str, Any]], *, name: str, extends: str | None, parent_k: int | None,
                     parent_size: int, info: dict[str, Any]) -> dict[str, Any]:
    """The YAML document of the induced constitution (before the comment header)."""
    total = parent_size + len(kept)
    k = len(kept) if extends is None else min(total, (parent_k or 1) + len(kept))
    doc: dict[str, Any] = {}
    if extends:
        doc["extends"] = extends
    doc["name"] = name
    doc["version"] = "1"
    doc["description"] = (
        f"Induced from {info['pairs']} labelled pairs ({info['labels']}) with {info['model']}: principles that "
        f"explain the labels, each tested as the judge's only principle on {info['held_out']} held-out pairs. "
        "Review before use."
    )
    doc["sampling"] = {"principles_per_judgment": k}
    doc["principles"] = [
        {"id": c["id"], "critique": c["critique"], "revision": c["revision"], "judge": c["judge"], "tags": [INDUCED_TAG],
         "metadata": principle_metadata(c, info["held_out"], info["proposal_pairs"])}
        for c in kept
    ]
    return doc


def constitution_yaml(doc: dict[str, Any], info: dict[str, Any]) -> str:
    header = (
        f"# Induced by `cai constitution induce` from {info['labels']} with {info['model']}.\n"
        f"# {info['proposal_pairs']} pairs proposed principles, {info['held_out']} held-out pairs tested them; "
        "each principle's metadata holds its figures,\n"
        f"# and {info['report']} lists every candidate. The figures say a judge given the principle reconstructs the\n"
        "# labels, not that the principle is right: review each one, then lint and judge-eval the result.\n"
    )
    body = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None)
    return header + body


def caveats(report: dict[str, Any]) -> list[str]:
    """Plain warnings read from the figures."""
    out = []
    model = report["model"]
    if model.startswith(TINY_MODELS):
        out.append(f"{model} is a tiny model: its proposals and its verdicts are close to noise, so these figures "
                   "check the pipeline, not a constitution. Use a capable model to induce principles you will keep.")
    p = report["proposals"]
    if p["replies"] and p["parse"].get("json", 0) < p["replies"]:
        loose = p["replies"] - p["parse"].get("json", 0)
        out.append(f"{loose} of {p['replies']} proposal replies were not the JSON asked for; their principles were "
                   f"read from lists or free text ({p['parse'].get('none', 0)} gave none).")
    held = report["split"]["held_out"]
    if held < FEW_HELD_OUT:
        out.append(f"Only {held} held-out pairs: intervals are wide; label more pairs to tell principles apart.")
    weak = [c["id"] for c in report["kept"] if c["figures"]["agreement_ci95"] and c["figures"]["agreement_ci95"][0] <= 0.5]
    if weak:
        out.append(f"The 95% interval of {', '.join(weak)} reaches 0.5: not distinguishable from a principle that says nothing.")
    cmp = report.get("comparison") or {}
    diff = cmp.get("difference")
    if diff and diff["ci95"] and diff["ci95"][0] <= 0.0:
        out.append(f"The induced constitution does not beat the baseline {report['baseline']} with confidence "
                   f"(difference {diff['mean']}, 95% CI {diff['ci95'][0]} to {diff['ci95'][1]}).")
    return out


def _ci(ci: Any) -> str:
    return f"{ci[0]}-{ci[1]}" if ci else "-"


def _row(c: dict[str, Any], extra: str = "") -> str:
    f = c["figures"]
    if f is None:  # not tested
        return f"| {c['id']} | {c['judge'].replace('|', chr(92) + '|')} | - | - | - | - | {c['support']} |{extra}"
    v = f["votes"]
    judge = c["judge"].replace("|", "\\|")
    return (f"| {c['id']} | {judge} | {f['agreement']} ({_ci(f['agreement_ci95'])}) | {v['for']}/{v['against']}/"
            f"{v['abstain']}/{v['tie']} | {f['position_consistency']} | {f['relevance']} | {c['support']} |{extra}")


def render_markdown(report: dict[str, Any]) -> str:
    s = report["split"]
    p = report["proposals"]
    lines = [
        f"# Induced constitution: {report['name']}",
        "",
        f"Labels: {report['labels']} ({s['pairs']} pairs: {s['proposal']} proposed principles, {s['held_out']} held out "
        f"to test them). Model: {report['model']}. Written: {report['constitution'] or '(nothing kept)'}.",
        "",
    ]
    notes = caveats(report)
    if notes:
        lines += ["## Caveats", "", *[f"- {n}" for n in notes], ""]
    cmp = report.get("comparison")
    if cmp:
        lines += ["## The whole constitution on the held-out pairs", "", "| constitution | pairs | agreement (95% CI) |",
                  "|---|---|---|"]
        i = cmp["induced"]
        lines.append(f"| induced ({report['name']}) | {i['n']} | {i['agreement']} ({_ci(i['agreement_ci95'])}) |")
        if "baseline" in cmp:
            b, d = cmp["baseline"], cmp["difference"]
            lines.append(f"| baseline ({report['baseline']}) | {b['n']} | {b['agreement']} ({_ci(b['agreement_ci95'])}) |")
            lines += ["", f"Induced minus baseline, per pair: {d['mean']} (95% CI {_ci(d['ci95'])}, {d['n']} pairs)."]
        lines.append("")
    head = ("| id | judge question | agreement (95% CI) | votes for/against/abstain/tie | position consistency | "
            "relevance | support |")
    sep = "|---|---|---|---|---|---|---|"
    lines += ["## Kept", "", head, sep, *[_row(c) for c in report["kept"]], ""]
    lines += ["## Rejected", "", head + " reason |", sep + "---|",
              *[_row(c, f" {c['reason']} |") for c in report["rejected"]], ""]
    lines += [
        "## How the candidates were found", "",
        f"- {p['replies']} proposal replies ({json.dumps(p['parse'])}), {p['principles']} principles proposed, "
        f"{p['failed']} failed requests.",
        f"- Merged by {report['settings']['merge']} (similarity {report['settings']['similarity']}) into "
        f"{report['candidates']['merged']} candidates; {report['candidates']['tested']} tested "
        f"(--max-candidates {report['settings']['max_candidates']}).",
        f"- Kept: agreement >= {report['settings']['min_agreement']} and more votes for than against, best net votes "
        f"first, at most {report['settings']['max_principles']}.",
        "",
        "Votes (both orders must agree, as ICAI's unanimous votes): *for* = the principle prefers the chosen answer in "
        "both orders, *against* = the other one in both, *abstain* = the orders disagree, *tie* = exactly 0.5. "
        "Agreement = (for + half of abstain and tie) / pairs; relevance = (for + against) / pairs; support = "
        "proposal pairs whose proposals merged into the principle.",
        "",
        "Next: review the principles, then `cai constitution lint`, `cai judge-eval` and `cai constitution audit`.",
        "",
    ]
    return "\n".join(lines)


def write_report(report: dict[str, Any], md_path: Path) -> dict[str, Path]:
    """``induced.md`` and ``induced.json`` (same stem)."""
    md_path.parent.mkdir(parents=True, exist_ok=True)
    json_path = md_path.with_suffix(".json")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    write_json_atomic(json_path, report)
    return {"markdown": md_path, "json": json_path}
