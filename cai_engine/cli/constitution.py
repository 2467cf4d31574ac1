"""``cai constitution``: list the shipped ones; validate, show and import constitution files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

constitution_app = typer.Typer(
    name="constitution",
    help="Validate, inspect and import constitutions (YAML principles for critique, revision and judging).",
    no_args_is_help=True,
)


@constitution_app.command("list")
def list_() -> None:
    """List the constitutions shipped with the package: name, principle count, description.

    Any command that takes `--constitution` accepts these names in place of a path.

    Example:

        cai constitution list
    """
    from cai_engine.constitution import load_constitution, shipped_dir, shipped_names

    names = shipped_names()
    if not names:
        from cai_engine.errors import CaiError

        raise CaiError(f"no shipped constitutions found in {shipped_dir()}; the installation is incomplete, reinstall cai-engine")
    width = max(len(n) for n in names)
    for name in names:
        c = load_constitution(name)
        about = " ".join((c.description or "").split())
        about = about if len(about) <= 90 else about[:87] + "..."
        typer.echo(f"{name:<{width}}  {len(c.principles):>2} principles  {about}".rstrip())


@constitution_app.command("validate")
def validate(
    files: Annotated[list[str], typer.Argument(help="Constitution .yaml files or shipped names (general, medical, ...).")],
) -> None:
    """Check constitution files and print their principle count and content hash.

    Every problem of a file is listed, one line each: `file:line:col: what is wrong; how to fix`
    (a YAML syntax error stops the file there: the parser cannot read past it). Exit code 2 if
    any file fails. Heuristic checks (a principle without a judge question, a key indented into
    the text block above it, ...) are `cai constitution lint`'s.

    Example:

        cai constitution validate medical my_rules.yaml
    """
    from cai_engine.constitution import ConstitutionError, load_constitution
    from cai_engine.errors import CaiError

    failed = 0
    for file in files:
        try:
            c = load_constitution(file)
        except ConstitutionError as exc:
            failed += 1
            for problem in exc.problems:
                sys.stderr.write(f"error: {problem}\n")
            if len(exc.problems) > 1:
                sys.stderr.write(f"{file}: {len(exc.problems)} problems; fix them and validate again\n")
            continue
        except CaiError as exc:
            failed += 1
            sys.stderr.write(f"error: {exc}\n")
            continue
        typer.echo(f"ok {c.name} ({len(c.principles)} principles, hash {c.hash})")
    if failed and len(files) > 1:
        # A CaiError makes the root print it and exit 2.
        raise CaiError(f"{failed} of {len(files)} constitution files failed validation; fix the errors above")
    if failed:
        raise typer.Exit(2)  # the problems are printed above; the root turns this into exit code 2


@constitution_app.command("show")
def show(
    file: Annotated[str, typer.Argument(help="Constitution .yaml file or shipped name.")],
) -> None:
    """Print a constitution (after `extends`): metadata, system prompt, principles, sampling, few-shot.

    Example:

        cai constitution show tutoring
    """
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table

    from cai_engine.constitution import load_constitution

    c = load_constitution(file)
    console = Console()
    header = f"[bold]{c.name}[/bold]  version {c.version}  hash {c.hash}"
    if c.source_path is not None:
        header += f"\n[dim]{c.source_path}[/dim]"
    if c.description:
        header += f"\n\n{c.description}"
    console.print(Panel(header, title="constitution", expand=False))
    if c.system_prompt:
        console.print(Panel(c.system_prompt, title="system prompt"))
    table = Table(title=f"{len(c.principles)} principles", show_lines=True)
    for column, style in (("id", "bold"), ("weight", None), ("tags", "cyan"),
                          ("critique", None), ("revision", None), ("judge", "green")):
        table.add_column(column, style=style, overflow="fold")
    for p in c.principles:
        table.add_row(p.id, f"{p.weight:g}", ", ".join(p.tags), p.critique, p.revision, p.judge or "[dim]-[/dim]")
    console.print(table)
    s = c.sampling
    console.print(
        f"sampling: {s.principles_per_round} principle(s) per round, {s.rounds} round(s), "
        f"{s.principles_per_judgment} principle(s) per judgment, seed {s.seed}"
    )
    if c.few_shot:
        shots = Table(title=f"{len(c.few_shot)} few-shot examples", show_lines=True)
        shots.add_column("principle", style="bold")
        shots.add_column("prompt", overflow="fold")
        shots.add_column("critique", overflow="fold")
        for ex in c.few_shot:
            shots.add_row(ex.principle or "[dim]-[/dim]", _clip(ex.prompt), _clip(ex.critique))
        console.print(shots)
    else:
        console.print("few-shot: none")


def _clip(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@constitution_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="CAI recipe JSON: {\"constitutions\": [...], \"system_chat\": [...]}.")],
    name: Annotated[str | None, typer.Option(help="Constitution name (default: the file's stem).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output YAML file (default: FILE with a .yaml suffix).")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite OUT if it exists.")] = False,
) -> None:
    """Convert a public CAI recipe JSON constitution into our YAML, then validate it by loading it back.

    Principles get ids p01, p02, ...; six-message chats become few_shot examples.
    Parts that do not fit are skipped with a warning.

    Example:

        cai constitution import recipe.json

        cai constitution import recipe.json --name my_rules --out my_rules.yaml
    """
    from cai_engine.constitution import constitution_from_cai_json, constitution_to_yaml, load_constitution
    from cai_engine.errors import ConfigError

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read ({exc.strerror}); check the path") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}; fix the JSON syntax") from None
    target = out or file.with_suffix(".yaml")
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; pass --force to overwrite it or choose another --out")

    def warn(message: str) -> None:
        sys.stderr.write(f"warning: {file}: {message}\n")

    constitution = constitution_from_cai_json(data, name=name or file.stem, warn=warn)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = f"# Imported from {file.name} by `cai constitution import`.\n" + constitution_to_yaml(constitution)
    target.write_text(text, encoding="utf-8")
    loaded = load_constitution(target)
    if loaded.hash != constitution.hash:  # the writer and the loader disagree: a bug, not user error
        raise ConfigError(f"{target}: written YAML does not load back identically; please report this")
    typer.echo(
        f"wrote {target}: {loaded.name} ({len(loaded.principles)} principles, "
        f"{len(loaded.few_shot)} few-shot examples, hash {loaded.hash})"
    )


def register(app: typer.Typer) -> None:
    """Mount ``cai constitution ...`` on the root app."""
    app.add_typer(constitution_app, name="constitution")
