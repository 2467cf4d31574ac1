"""The constitution workbench on the command line.

``cai redteam`` and ``cai view`` are top-level commands; ``lint``, ``preview`` and ``diff`` are added
to the ``cai constitution`` group that :mod:`cai_engine.cli.constitution` defines (this module is
listed after it in ``COMMAND_MODULES``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cai_engine.cli import options as opt

N_OPT = Annotated[int, typer.Option("--n", "-n", min=1, help="How many prompts to run (the first N of the file).")]
JudgeModelOpt = Annotated[Optional[str], typer.Option("--judge-model", "-j", help="Judge model spec (default: the --model).")]
JudgeConfigOpt = Annotated[Optional[Path], typer.Option("--judge-config", help="YAML of ModelConfig fields for the judge.")]
NoJudgeOpt = Annotated[bool, typer.Option("--no-judge", help="Skip judging initial vs revised answer.")]
RoundsOpt = Annotated[Optional[int], typer.Option("--rounds", min=0, help="Critique->revise rounds (default: the constitution's).")]


# -- cai redteam ---------------------------------------------------------------------------------

def redteam(
    constitution: opt.ConstitutionOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Prompt file to write (.jsonl): prompt, principle_id, kind.")],
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="Prompts to keep per principle and kind.")] = 5,
    model: opt.ModelSpec = "local/smollm2",
    model_config: opt.ModelConfigFile = None,
    kinds: Annotated[str, typer.Option("--kinds", help="Comma-separated kinds: adversarial, borderline, benign (look-alikes that should be answered).")] = "adversarial,borderline,benign",
    principle: Annotated[Optional[list[str]], typer.Option("--principle", help="Only this principle id (repeatable; default: all).")] = None,
    similarity: Annotated[float, typer.Option("--similarity", min=0.05, max=1.0, help="Near-duplicate threshold: Jaccard of character 4-grams (1 = exact only).")] = 0.7,
    per_call: Annotated[int, typer.Option("--per-call", min=1, max=30, help="Prompts asked for per model call.")] = 8,
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1, help="Calls per principle and kind before giving up on reaching N.")] = 4,
    max_tokens: opt.MaxTokensOpt = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0, max=2, help="Sampling temperature (diversity).")] = 0.9,
    seed: opt.SeedOpt = 0,
    no_filter: Annotated[bool, typer.Option("--no-filter", help="Keep prompts that fail the quality filter (duplicates are still dropped).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")] = False,
) -> None:
    """Generate test prompts that target each principle: adversarial, borderline, and benign look-alikes.

    Benign look-alikes resemble the adversarial prompts but are harmless; a good policy answers
    them, so they measure over-refusal. Every prompt passes a quality filter (length, mostly
    letters, no template placeholders like [Your Name], no Subject:/e-mail scaffolding, no
    timestamps like "22:38, May 2020", not in the assistant's voice) and is deduplicated (exact
    and near-duplicate by character n-gram Jaccard) across the whole file; the command prints how
    many it dropped for each reason. Kept prompts are tagged with principle_id and kind; the file
    feeds `cai revise --prompts` and `cai constitution preview --prompts`.

    Example:

        cai redteam -c medical --n 10 --model openai/gpt-4o-mini -o prompts/medical_redteam.jsonl
    """
    from cai_engine.cli.progress import console
    from cai_engine.constitution import load_constitution
    from cai_engine.engine.factory import build_engine, load_model_config
    from cai_engine.errors import CaiError
    from cai_engine.workbench.redteam import KINDS, PromptFilter, RedteamSettings, generate_redteam

    wanted = [k.strip() for k in kinds.split(",") if k.strip()]
    bad = [k for k in wanted if k not in KINDS]
    if bad or not wanted:
        raise CaiError(f"--kinds {kinds!r}: unknown kind {bad[0] if bad else '(none)'}; use a comma-separated subset of {','.join(KINDS)}")
    if out.exists() and not force:
        raise CaiError(f"{out} already exists; pass --force to overwrite it or choose another --out")
    loaded = load_constitution(constitution)
    if principle:
        for pid in principle:
            loaded.principle(pid)  # a typo fails here with a suggestion
    config = load_model_config(model, model_config)
    params = config.defaults.model_copy(update={"temperature": temperature, "top_p": 0.95, "max_tokens": max_tokens or 320})
    settings = RedteamSettings(
        n=n, kinds=wanted, per_call=per_call, max_attempts=max_attempts, threshold=similarity, params=params,
        seed=seed, principle_ids=principle or None, filter=PromptFilter(enabled=not no_filter),
    )
    total = n * len(wanted) * (len(principle) if principle else len(loaded.principles))

    async def go() -> Any:
        engine = build_engine(config)
        try:
            with console.status(f"redteam {loaded.name}: generating up to {total} prompts with {config.spec}") as status:

                def progress(kept: int) -> None:
                    status.update(f"redteam {loaded.name}: {kept}/{total} prompts kept, {engine.stats.requests} calls")

                return await generate_redteam(loaded, engine, settings, on_progress=progress)
        finally:
            await engine.aclose()

    result = asyncio.run(go())
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for record in result.records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    by_kind = {k: sum(1 for r in result.records if r["kind"] == k) for k in wanted}
    dropped = sum(result.dropped.values())
    console.print(
        f"[green]wrote[/green] {len(result.records)} prompts to {out} "
        f"({', '.join(f'{v} {k}' for k, v in by_kind.items())}); {result.calls} calls, "
        f"{result.parsed} parsed, {dropped} dropped ({result.filtered} by the quality filter, "
        f"{result.duplicates} duplicates)",
        highlight=False,
    )
    if dropped:
        for reason, count in sorted(result.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
            example = " ".join(result.examples[reason].split())
            example = example if len(example) <= 70 else example[:67] + "..."
            console.print(f"  dropped {count} {reason}: e.g. {json.dumps(example, ensure_ascii=False)}",
                          highlight=False, markup=False, soft_wrap=True)
    if result.filtered and result.filtered >= result.parsed / 2:
        console.print(f"[yellow]{result.filtered} of {result.parsed} generated prompts failed the quality filter[/yellow]; "
                      "use a stronger --model (or --no-filter to keep them)")
    if result.short:
        worst = ", ".join(f"{k} (-{v})" for k, v in list(result.short.items())[:5])
        console.print(f"[yellow]short of --n for {len(result.short)} principle/kind[/yellow]: {worst}; raise --max-attempts or use a stronger --model")
    console.print(f"next: cai constitution preview {constitution} --prompts {out} --n 5")


# -- cai view ------------------------------------------------------------------------------------

def view(
    source: Annotated[Path, typer.Argument(help="The --out dir of `cai revise`/`cai judge`, or a revisions.jsonl / pairs.jsonl file.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="HTML file to write (default: DIR/view.html).")] = None,
    limit: opt.LimitOpt = None,
    title: Annotated[Optional[str], typer.Option("--title", help="Page title.")] = None,
) -> None:
    """Write one self-contained HTML page (works offline, no server) to browse and spot-check a dataset.

    Search and filter by principle, judge confidence, position consistency and length; read each
    record's initial answer, critiques and revisions, and the judge's verdicts in both orders.
    Mark pairs (agree/disagree with the judge, or pick the better answer) and download the marks
    as JSONL for `cai judge-eval --labels`.

    Example:

        cai view out/demo && xdg-open out/demo/view.html
    """
    from cai_engine.cli.progress import console
    from cai_engine.workbench.viewer import write_viewer

    path, count = write_viewer(source, out, limit=limit, title=title)
    size = path.stat().st_size
    console.print(f"[green]wrote[/green] {path} ({count} records, {size / 1024:.0f} KiB); open it in any browser")


# -- cai constitution lint | preview | diff --------------------------------------------------------

def lint(
    files: Annotated[list[str], typer.Argument(help="Constitution .yaml files or shipped names.")],
    ignore: Annotated[Optional[list[str]], typer.Option("--ignore", help="Skip a check by name (repeatable).")] = None,
    max_words: Annotated[int, typer.Option("--max-words", min=1, help="Longest critique/revision request in words.")] = 80,
    max_judge_words: Annotated[int, typer.Option("--max-judge-words", min=1, help="Longest judge question in words.")] = 40,
    as_json: Annotated[bool, typer.Option("--json", help="Print warnings as JSON lines.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Notes (no-few-shot) also fail the lint.")] = False,
) -> None:
    """Warn about principles that will not work well, each with principle id and file:line.

    Checks: similar-principles, critique-without-target, revision-without-rewrite,
    judge-not-comparative, no-judge, key-in-block-text (a line inside a `>-`/`|` text block that
    looks like a key, e.g. a mis-indented `judge:`), long-principle (warnings), no-few-shot (a note:
    every few-shot example is shown whatever principle a round samples). Exit code 1 when there are warnings (or notes with --strict).

    Example:

        cai constitution lint my_rules.yaml --ignore no-few-shot
    """
    from cai_engine.workbench.lint import LintSettings, lint_file, summarize

    settings = LintSettings(max_words=max_words, max_judge_words=max_judge_words, ignore=ignore or [])
    total = 0
    for file in files:
        warnings = lint_file(file, settings)
        total += sum(1 for w in warnings if strict or not w.is_note)
        for w in warnings:
            typer.echo(json.dumps(w.to_dict()) if as_json else w.format())
        if not as_json:
            counts = summarize(warnings)
            detail = f" ({', '.join(f'{v} {k}' for k, v in counts.items())})" if counts else ""
            notes = sum(1 for w in warnings if w.is_note)
            found = len(warnings) - notes
            noted = f", {notes} note{'s' * (notes != 1)}" if notes else ""
            typer.echo(f"{file}: {found} warning{'s' * (found != 1)}{noted}{detail}", err=True)
    if total:
        raise typer.Exit(1)


def _revise_settings(loaded: Any, config: Any, rounds: int | None, max_tokens: int | None, temperature: float | None, seed: int) -> Any:
    from cai_engine.pipelines.revise import ReviseSettings

    params = config.defaults.model_copy(
        update={k: v for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items() if v is not None}
    )
    return ReviseSettings(
        constitution=loaded, params=params, rounds=loaded.sampling.rounds if rounds is None else rounds,
        principles_per_round=loaded.sampling.principles_per_round, few_shot=len(loaded.few_shot), seed=seed,
    )


def _prompts(path: Path, column: str | None, n: int) -> list[Any]:
    """The first ``n`` prompts as items (the whole conversation, not only its last turn)."""
    from cai_engine.errors import CaiError
    from cai_engine.sources import iter_prompts

    prompts = list(iter_prompts(path, column, n))
    if not prompts:
        raise CaiError(f"{path}: no prompts found; pass a file with a 'prompt' column (or --column NAME)")
    return prompts


def preview(
    constitution: Annotated[str, typer.Argument(help="Constitution .yaml file or shipped name.")],
    prompts: opt.PromptsOpt,
    n: N_OPT = 5,
    model: opt.ModelSpec = "local/smollm2",
    model_config: opt.ModelConfigFile = None,
    judge_model: JudgeModelOpt = None,
    judge_config: JudgeConfigOpt = None,
    no_judge: NoJudgeOpt = False,
    rounds: RoundsOpt = None,
    max_tokens: opt.MaxTokensOpt = None,
    temperature: opt.TemperatureOpt = None,
    seed: opt.SeedOpt = 0,
    column: opt.ColumnOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also save revisions.jsonl and pairs.jsonl here (for `cai view`).")] = None,
    no_cache: opt.NoCacheOpt = False,
) -> None:
    """Run a few prompts through critique->revise and the judge, and show initial | revised side by side.

    Example:

        cai constitution preview my_rules.yaml --prompts prompts/redteam.jsonl --n 5 --model openai/gpt-4o-mini
    """
    from rich.console import Console

    from cai_engine.constitution import load_constitution
    from cai_engine.engine.factory import build_engine, load_model_config
    from cai_engine.workbench.preview import render_preview, run_preview

    loaded = load_constitution(constitution)
    texts = _prompts(prompts, column, n)
    config = load_model_config(model, model_config)
    settings = _revise_settings(loaded, config, rounds, max_tokens, temperature, seed)
    judge_settings = None
    if not no_judge:
        from cai_engine.pipelines.judge import JudgeSettings

        judge_settings = JudgeSettings(constitution=loaded, principles_per_judgment=loaded.sampling.principles_per_judgment, seed=seed)

    async def go() -> Any:
        engine = build_engine(config, use_cache=not no_cache)
        judge_engine = None
        if judge_settings is not None:
            same = (judge_model is None or judge_model == model) and judge_config is None
            judge_engine = engine if same else build_engine(load_model_config(judge_model or model, judge_config), use_cache=not no_cache)
        try:
            return await run_preview(texts, engine=engine, settings=settings, judge_engine=judge_engine, judge_settings=judge_settings)
        finally:
            await engine.aclose()
            if judge_engine is not None and judge_engine is not engine:
                await judge_engine.aclose()

    items = asyncio.run(go())
    render_preview(items, Console())
    if out is not None:
        from cai_engine.engine.session import open_store

        with open_store(out / "revisions.jsonl") as store:
            for item in items:
                store.append(item.revision)
        pairs = [item.pair for item in items if item.pair and "id" in item.pair]
        if pairs:
            with open_store(out / "pairs.jsonl") as store:
                for pair in pairs:
                    store.append(pair)
        typer.echo(f"saved {len(items)} revisions and {len(pairs)} pairs to {out}; browse them with: cai view {out}", err=True)


def diff(
    old: Annotated[str, typer.Argument(help="The old constitution (.yaml or shipped name).")],
    new: Annotated[str, typer.Argument(help="The new constitution (.yaml or shipped name).")],
    prompts: Annotated[Optional[Path], typer.Option("--prompts", "-p", help="Also revise these prompts under both and compare.")] = None,
    n: N_OPT = 5,
    model: opt.ModelSpec = "local/smollm2",
    model_config: opt.ModelConfigFile = None,
    rounds: RoundsOpt = None,
    max_tokens: opt.MaxTokensOpt = None,
    temperature: opt.TemperatureOpt = None,
    seed: opt.SeedOpt = 0,
    column: opt.ColumnOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the static diff as JSON (no prompts are run).")] = False,
    no_cache: opt.NoCacheOpt = False,
) -> None:
    """Show which principles changed between two constitutions, and with --prompts how revisions change.

    Both constitutions revise the same prompts with the same model and seeds, so when the system
    prompt is unchanged the initial answers match and only the critique/revision steps differ.

    Example:

        cai constitution diff constitutions/medical.yaml my_medical.yaml --prompts prompts/medical.jsonl --n 5
    """
    from rich.console import Console

    from cai_engine.constitution import load_constitution
    from cai_engine.workbench.diff import diff_constitutions, pair_up, render_diff, render_revision_diffs

    before, after = load_constitution(old), load_constitution(new)
    result = diff_constitutions(before, after)
    if as_json:
        typer.echo(json.dumps({"old": f"{before.name}@{before.hash}", "new": f"{after.name}@{after.hash}", **result.to_dict()}, indent=2))
        return
    console = Console()
    render_diff(result, before, after, console)
    if prompts is None:
        return
    from cai_engine.engine.factory import build_engine, load_model_config
    from cai_engine.workbench.preview import run_preview

    texts = _prompts(prompts, column, n)
    config = load_model_config(model, model_config)
    s_old = _revise_settings(before, config, rounds, max_tokens, temperature, seed)
    s_new = _revise_settings(after, config, rounds, max_tokens, temperature, seed)

    async def go() -> Any:
        engine = build_engine(config, use_cache=not no_cache)
        try:
            return await asyncio.gather(
                run_preview(texts, engine=engine, settings=s_old, rid_salt="diff"),
                run_preview(texts, engine=engine, settings=s_new, rid_salt="diff"),
            )
        finally:
            await engine.aclose()

    old_items, new_items = asyncio.run(go())
    console.rule(f"revisions of {len(texts)} prompts under both ({model}, seed {seed})")
    render_revision_diffs(pair_up(old_items, new_items), console)


def register(app: typer.Typer) -> None:
    """Mount ``cai redteam``, ``cai view`` and ``cai constitution lint|preview|diff``."""
    from cai_engine.cli.constitution import constitution_app

    app.command("redteam")(redteam)
    app.command("view")(view)
    existing = {c.name for c in constitution_app.registered_commands}
    for name, fn in (("lint", lint), ("preview", preview), ("diff", diff)):
        if name not in existing:
            constitution_app.command(name)(fn)
