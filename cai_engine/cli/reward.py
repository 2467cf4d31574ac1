"""``cai reward serve``: the constitution judge as an HTTP reward service (OpenRLHF, verl, TRL)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cai_engine.cli import options as opt

reward_app = typer.Typer(help="Serve the constitution judge as a reward model for RL trainers.", no_args_is_help=True)


@reward_app.command("serve")
def serve_command(
    constitution: opt.ConstitutionOpt = "general",
    judge_model: Annotated[str, typer.Option("--judge-model", "-j", help="Judge model spec.")] = "local/smollm2",
    judge_config: Annotated[Optional[Path], typer.Option("--judge-config", help="YAML of ModelConfig fields for the judge.")] = None,
    reference_model: Annotated[Optional[str], typer.Option(
        "--reference-model", help="Writes the reference answer when a request has no labels (pairwise mode).")] = None,
    reference_config: Annotated[Optional[Path], typer.Option("--reference-config", help="YAML of ModelConfig fields for the reference model.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="pairwise (against a reference answer) or pointwise (judge questions).")] = "pairwise",
    principles_per_judgment: Annotated[Optional[int], typer.Option("--principles-per-judgment", "-k", min=1)] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind (default: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0 = any free port, printed at start).")] = 8000,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the service's budget ledger, lock and log.")] = Path("out/reward-service"),
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Samples scored at once.")] = 16,
    no_cache: opt.NoCacheOpt = False,
    max_cost: opt.MaxCostOpt = None,
) -> None:
    """Serve POST {"query", "prompts", "labels"} -> {"rewards", "scores", "extra_logs"} (OpenRLHF's payload).

    Pairwise: reward = 2 * P(response better than the reference) - 1, judged in both orders under the
    constitution; the reference is the request's label, else --reference-model's answer. Pointwise:
    the judge's 0-10 rating on the principles' judge questions, as 2 * score/10 - 1. Ctrl-C stops it.

    Example:

        cai reward serve -c general -j openai/gpt-4o-mini --reference-model openai/gpt-4o-mini --port 8000
    """
    from cai_engine.api.constitution import load_constitution
    from cai_engine.api.judge import judge_settings
    from cai_engine.cli.progress import console
    from cai_engine.engine.factory import load_model_config
    from cai_engine.engine.session import Session
    from cai_engine.engine.stopping import Stopped
    from cai_engine.errors import CaiError
    from cai_engine.serving.http import serve
    from cai_engine.serving.reward import RewardScorer

    if mode not in ("pairwise", "pointwise"):
        raise CaiError(f"--mode {mode!r}: use pairwise or pointwise")
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise CaiError("cai reward serve needs aiohttp: pip install 'cai-engine[serve]'") from None
    loaded = load_constitution(constitution)
    settings = judge_settings(loaded, principles_per_judgment, False, "0.4,0.6", False, 0, None)
    judge_cfg = load_model_config(judge_model, judge_config)
    ref_cfg = load_model_config(reference_model, reference_config) if reference_model else None
    session = Session(out, max_cost_usd=max_cost, use_cache=not no_cache)

    async def body(s: Session) -> None:
        judge = s.engine(judge_cfg)
        reference = None
        if ref_cfg is not None:
            reference = judge if ref_cfg == judge_cfg else s.engine(ref_cfg)
        scorer = RewardScorer(judge, loaded, mode=mode, reference=reference, settings=settings,  # type: ignore[arg-type]
                              concurrency=concurrency)

        def ready(bound_host: str, bound_port: int) -> None:
            console.print(f"[green]reward service[/green] {loaded.name} ({mode}, judge {judge.spec}) on "
                          f"http://{bound_host}:{bound_port}/reward  (Ctrl-C to stop)")

        await serve(scorer, host, port, stop=s.stop, on_ready=ready,
                    stats=lambda: {e.spec: e.stats.progress_text() for e in s.engines})

    try:
        session.run(body)
    except Stopped:
        console.print("reward service stopped")


def register(app: typer.Typer) -> None:
    app.add_typer(reward_app, name="reward")
