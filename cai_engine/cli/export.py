"""``cai export ...``: record files -> training datasets (HF dataset on disk + parquet + card)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cai_engine.cli import options as opt

export_app = typer.Typer(help="Export generated records as training datasets (TRL formats).", no_args_is_help=True)


@export_app.command("sft")
def export_sft_command(
    source: Annotated[Path, typer.Argument(help="The --out dir of `cai revise` (or its revisions.jsonl).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Export dir (dataset/, data.parquet, README.md).")],
    with_system: Annotated[bool, typer.Option("--with-system", help="Keep the constitution's system prompt in `messages`.")] = False,
    drop_unchanged: Annotated[bool, typer.Option("--drop-unchanged", help="Skip records the revision left unchanged.")] = False,
    keep_truncated: Annotated[bool, typer.Option("--keep-truncated", help=(
        "Keep records whose answer depends on a generation that stopped at the token limit (dropped by default)."))] = False,
    all_settings: Annotated[bool, typer.Option("--all-settings", help=(
        "Export the records of every settings the folder holds (--new-settings), not only the current."))] = False,
    push_to_hub: opt.PushToHubOpt = None,
    private: opt.PrivateOpt = False,
) -> None:
    """SFT dataset with a `messages` column (TRL conversational format).

    Truncated records and records of other settings are dropped and counted (quality.json, the card).

    Example:

        cai export sft out/demo --out out/demo/sft
    """
    from cai_engine.cli.progress import console
    from cai_engine.pipelines.quality import dropped_line
    from cai_engine.exports.sft import export_sft

    figures = export_sft(source, out, with_system=with_system, drop_unchanged=drop_unchanged,
                         keep_truncated=keep_truncated, all_settings=all_settings)
    quality = figures["quality"]
    console.print(
        f"[green]exported[/green] {figures['rows_exported']} rows -> {out}\n"
        f"{dropped_line(quality)}\n"
        f"truncation rate {quality['truncation_rate']}; report: {out / 'quality.json'}\n"
        f"load with: datasets.load_from_disk('{out / 'dataset'}')"
    )
    push_export(out, push_to_hub, private)


def push_export(out: Path, repo_id: str | None, private: bool) -> None:
    """``--push-to-hub``: the export folder (dataset, parquet, card) to a Hub dataset repo."""
    if not repo_id:
        return
    from cai_engine.cli.progress import console
    from cai_engine.hub import push_folder

    url = push_folder(out, repo_id, repo_type="dataset", private=private)
    console.print(f"[green]pushed[/green] {out} -> {url}")


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
