"""``cai constitution induce`` and ``cai constitution audit``, added to the group of :mod:`cai_engine.cli.constitution`.

This module is listed after it in ``COMMAND_MODULES``; both commands call :mod:`cai_engine.api.induce`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cai_engine.cli import options as opt


def induce(
    pairs: Annotated[str, typer.Option("--pairs", help=(
        "Labelled pairs: prompt/chosen/rejected rows (the preferred answer is `chosen`), a .jsonl/.parquet/... "
        "file or hf:NAME_OR_DIR; prompts may be strings or conversations. `cai view` downloads such a file."))],
    out: Annotated[Path, typer.Option("--out", "-o", help=(
        "The induced constitution (.yaml); the report goes beside it (.md/.json), the resumable records "
        "into --work-dir."))],
    model: opt.ModelSpec = "local/smollm2",
    model_config: opt.ModelConfigFile = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Name of the induced constitution (default: from --out).")] = None,
    extends: Annotated[Optional[str], typer.Option("--extends", help=(
        "Make it a child of this constitution (shipped name or path): the induced principles are added to it."))] = None,
    baseline: Annotated[Optional[str], typer.Option("--baseline", help=(
        "Constitution to compare with on the held-out pairs (default: --extends, else general; 'none' to skip)."))] = None,
    min_agreement: Annotated[float, typer.Option("--min-agreement", min=0.0, max=1.0, help=(
        "Keep a principle only if its agreement with the held-out labels is at least this (0.5 = chance) and it has "
        "more votes for than against; 0 keeps the best whatever their figures (to check the pipeline)."))] = 0.6,
    max_principles: Annotated[int, typer.Option("--max-principles", min=1, help="Keep at most this many principles (best first).")] = 5,
    per_pair: Annotated[int, typer.Option("--per-pair", min=1, max=10, help="Principles the model proposes per labelled pair (ICAI: 3).")] = 3,
    max_candidates: Annotated[int, typer.Option("--max-candidates", min=1, help=(
        "Test only the best-supported N merged candidates (each costs 2 judge calls per held-out pair)."))] = 20,
    holdout: Annotated[float, typer.Option("--holdout", min=0.05, max=0.95, help=(
        "Share of the pairs held out to test principles (the rest propose them); split by content hash."))] = 0.5,
    similarity: Annotated[float, typer.Option("--similarity", min=0.05, max=1.0, help=(
        "Merge proposals whose judge questions are at least this similar (Jaccard of character 4-grams)."))] = 0.6,
    merge: Annotated[str, typer.Option("--merge", help=(
        "textsim: merge near-identical wordings only; model: then ask the model which candidates mean the same."))] = "textsim",
    column: opt.ColumnOpt = None,
    split: opt.SplitOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N labelled pairs.")] = None,
    concurrency: opt.ConcurrencyOpt = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=16, help="Max tokens of each proposal reply.")] = 400,
    temperature: Annotated[float, typer.Option("--temperature", min=0, max=2, help="Proposal sampling temperature.")] = 0.0,
    no_logprobs: Annotated[bool, typer.Option("--no-logprobs", help="Judge without logprobs (parsed verdicts only).")] = False,
    seed: opt.SeedOpt = 0,
    work_dir: Annotated[Optional[Path], typer.Option("--work-dir", help="Where the records go (default: OUT_STEM.induce/ beside --out).")] = None,
    retry_failed: opt.RetryFailedOpt = False,
    no_cache: opt.NoCacheOpt = False,
    max_cost: opt.MaxCostOpt = None,
    grace: opt.GraceOpt = 30.0,
    new_settings: opt.NewSettingsOpt = False,
) -> None:
    """Induce a constitution from labelled preferences: propose principles, test each one, keep the best.

    After Inverse Constitutional AI (Findeis et al., ICLR 2025): the model proposes principles that
    explain each preference, near-duplicates are merged, and every candidate is tested as the
    judge's only principle on held-out pairs (both orders, soft labels). The kept principles are
    written as a constitution whose metadata carry their agreement and support; the report lists
    every candidate and compares the whole constitution with --baseline. Rerun to resume.

    Example:

        cai constitution induce --pairs labels.jsonl --model openai/gpt-4o-mini --extends general --out induced.yaml
    """
    from cai_engine.api.induce import induce as api_induce
    from cai_engine.cli.progress import RunProgress, console

    report = api_induce(
        str(pairs), model=model, model_config=model_config, out=out, name=name, extends=extends, baseline=baseline,
        min_agreement=min_agreement, max_principles=max_principles, per_pair=per_pair, max_candidates=max_candidates,
        holdout=holdout, similarity=similarity, merge=merge, column=column, split=split, limit=limit,
        concurrency=concurrency, max_tokens=max_tokens, temperature=temperature, no_logprobs=no_logprobs, seed=seed,
        retry_failed=retry_failed, no_cache=no_cache, max_cost=max_cost, grace=grace, work_dir=work_dir,
        new_settings=new_settings, progress=RunProgress,
    )
    def ci(value: Any) -> str:
        return f"{value[0]} to {value[1]}" if value else "-"

    for c in report["kept"]:
        f = c["figures"]
        console.print(f"  kept {c['id']}: agreement {f['agreement']} (95% CI {ci(f['agreement_ci95'])}), "
                      f"support {c['support']}", markup=False)
    cmp = report.get("comparison") or {}
    if "baseline" in cmp:
        console.print(f"  held-out agreement: induced {cmp['induced']['agreement']} vs baseline {cmp['baseline']['agreement']} "
                      f"(difference {cmp['difference']['mean']}, 95% CI {ci(cmp['difference']['ci95'])})", markup=False)
    console.print(f"[green]wrote[/green] {out} ({len(report['kept'])} principles) and {report['paths']['markdown']}; "
                  f"next: review it, then cai constitution lint {out}")


def audit(
    pairs_dir: Annotated[Path, typer.Argument(help="The --out dir of `cai judge` or `cai judge-eval` (or its pairs.jsonl).")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for audit.json and audit.md (default: beside the pairs).")] = None,
    min_pairs: Annotated[int, typer.Option("--min-pairs", min=1, help="Pairs a principle needs before it is flagged.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap intervals.")] = 0,
) -> None:
    """Which principles drive AI-judged pairs: agreement with the final label and with the other principles.

    Flags principles that are noise (mostly ties or position-driven) or that fight the others
    (their verdict goes against the rest of the ensemble); needs pairs judged with -k 2 or more
    for the leave-one-out figures.

    Example:

        cai constitution audit out/demo-pairs
    """
    from rich.console import Console
    from rich.markdown import Markdown

    from cai_engine.api.induce import audit as api_audit
    from cai_engine.cli.progress import console

    report = api_audit(pairs_dir, out=out, min_pairs=min_pairs, seed=seed)
    Console().print(Markdown(Path(report["paths"]["markdown"]).read_text(encoding="utf-8")))
    console.print(f"[green]wrote[/green] {report['paths']['json']}, {report['paths']['markdown']}")


def register(app: typer.Typer) -> None:
    """Mount ``cai constitution induce|audit`` on the group :mod:`cai_engine.cli.constitution` defines."""
    from cai_engine.cli.constitution import constitution_app

    existing = {c.name for c in constitution_app.registered_commands}
    for name, fn in (("induce", induce), ("audit", audit)):
        if name not in existing:
            constitution_app.command(name)(fn)
