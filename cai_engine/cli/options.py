"""Option types shared by generation commands (revise, judge, ...): defined once, reused."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelSpec = Annotated[str, typer.Option("--model", "-m", help="Model spec provider/model, e.g. local/smollm2, openai/gpt-4o-mini.")]
ModelConfigFile = Annotated[
    Optional[Path], typer.Option("--model-config", help="YAML file of ModelConfig fields (base_urls, api_key_env, rpm, prices...).")
]
ConstitutionOpt = Annotated[str, typer.Option("--constitution", "-c", help="Constitution YAML path or shipped name (general, medical, tutoring, customer_service, coding).")]
PromptsOpt = Annotated[Path, typer.Option("--prompts", "-p", help=(
    "Prompts: .jsonl/.json/.csv/.tsv/.parquet/.txt, a datasets dir, or hf:NAME_OR_DIR[:CONFIG] (a Hub dataset, "
    "a local folder of parquet/JSON files); rows are strings, messages lists or HH transcripts (docs/data.md)."))]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="Output dir; rerunning into the same dir resumes.")]
ColumnOpt = Annotated[Optional[str], typer.Option(
    "--column", help="Prompt column (default: first of prompt/messages/conversations/instruction/question/input/text).")]
FormatOpt = Annotated[str, typer.Option(
    "--format", help="How to read each prompt: auto (per row), text (one user turn), messages (a list of turns), "
    "hh (a 'Human: ... Assistant: ...' transcript, as in Anthropic/hh-rlhf).")]
SplitOpt = Annotated[Optional[str], typer.Option("--split", help="Dataset split of an hf: source or datasets dir (default: train).")]
StreamingOpt = Annotated[bool, typer.Option("--streaming", help="Stream an hf: dataset instead of downloading it first (read twice: check, then run).")]
SkipBadRowsOpt = Annotated[bool, typer.Option(
    "--skip-bad-rows", help="Skip unusable input rows with a warning (counted in the summary) instead of stopping.")]
LimitOpt = Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N prompts.")]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", min=1, help="Items in flight at once (default: hosted models follow the provider's quota up to 512; "
                                                 "others their max_concurrency). Above a model's cap it raises the cap.")]
RetryFailedOpt = Annotated[bool, typer.Option("--retry-failed", help="Redo records that failed in an earlier run.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Bypass the response cache.")]
MaxCostOpt = Annotated[Optional[float], typer.Option(
    "--max-cost", min=0, help="Stop cleanly once this many USD are spent on this --out (reruns included).")]
GraceOpt = Annotated[float, typer.Option(
    "--grace", min=0, help="On Ctrl-C/SIGTERM, seconds to let requests in flight finish and be saved.")]
BatchOpt = Annotated[bool, typer.Option("--batch", help="Use the provider's Batch API (OpenAI, Anthropic): cheaper, slower.")]
MaxTokensOpt = Annotated[Optional[int], typer.Option("--max-tokens", min=1, help="Max generated tokens per step.")]
TemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", min=0, max=2, help="Sampling temperature (0 = greedy).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for principle sampling and per-step sampling seeds.")]
ShardOpt = Annotated[
    Optional[str], typer.Option("--shard", help="Only shard i/N of the items (0-based, split by record id); join shards with `cai merge`.")
]
MaxFailureRateOpt = Annotated[float, typer.Option(
    "--max-failure-rate", min=0.0, max=1.0,
    help="Exit non-zero when more than this share of this run's records failed, or all did (1 = never).")]
NewSettingsOpt = Annotated[bool, typer.Option(
    "--new-settings", help="Accept settings that differ from the ones --out was made with (kept apart; exports use the new).")]
PushToHubOpt = Annotated[Optional[str], typer.Option(
    "--push-to-hub", help="Also push the export (with its card) to this Hub dataset repo, ORG/NAME.")]
PrivateOpt = Annotated[bool, typer.Option("--private", help="Create the --push-to-hub repo as private.")]
RayOpt = Annotated[bool, typer.Option(
    "--ray", help="Run the items on Ray workers; only this process writes OUT (pip install 'cai-engine\\[ray]'; docs/scaling.md).")]
RayAddressOpt = Annotated[Optional[str], typer.Option(
    "--ray-address", help="Ray cluster to join (auto, ray://HOST:10001); default $RAY_ADDRESS, else a local Ray. Implies --ray.")]
RayWorkersOpt = Annotated[Optional[int], typer.Option(
    "--ray-workers", min=1, help="Ray worker actors, one model replica each (default 2). Implies --ray.")]


def ray_choice(ray: bool, address: str | None, workers: int | None) -> dict[str, object] | None:
    """The API's ``ray=`` from the three options (None: in process)."""
    if not (ray or address or workers):
        return None
    return {"address": address, "workers": workers}
