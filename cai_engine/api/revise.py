"""``revise`` / ``arevise``: critique -> revise SFT records for prompts under a constitution.

The one code path behind ``cai revise`` and the Python API: keyword names are the CLI's long
option names. With ``out`` the work is resumable exactly as on the CLI (rerun = continue).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from cai_engine.api.inputs import Prompts, check_prompt_items, describe, iter_prompt_items, source_of
from cai_engine.api.loop import run_async, run_sync
from cai_engine.api.progress import ProgressOption, resolve_progress
from cai_engine.api.result import Result, records_dataset
from cai_engine.engine.outsettings import claim
from cai_engine.engine.session import Session

RECORDS_FILE = "revisions.jsonl"


def _out_dir(out: Path | str | None, kind: str = "revise") -> Path:
    """``out``, or a fresh folder under ``CAI_HOME/api-runs`` when the caller gave none."""
    from cai_engine.paths import cai_home

    if out is not None:
        return Path(out)
    (cai_home() / "api-runs").mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=cai_home() / "api-runs"))


def _prepare(prompts: Prompts, constitution: Any, model: str, model_config: Path | str | None, rounds: int | None,
             principles_per_round: int | None, few_shot: int | None, max_tokens: int | None,
             temperature: float | None, seed: int) -> tuple[Any, Any, Any]:
    from cai_engine.api.constitution import load_constitution
    from cai_engine.engine.factory import load_model_config
    from cai_engine.errors import ConfigError
    from cai_engine.pipelines.revise import ReviseSettings

    loaded = load_constitution(constitution)
    config = load_model_config(model, Path(model_config) if model_config is not None else None)
    k = principles_per_round or loaded.sampling.principles_per_round
    if k > len(loaded.principles):
        raise ConfigError(f"--principles-per-round {k} is more than the {len(loaded.principles)} principles of {loaded.name}")
    params = config.defaults.model_copy(
        update={key: value for key, value in {"max_tokens": max_tokens, "temperature": temperature}.items() if value is not None}
    )
    settings = ReviseSettings(
        constitution=loaded, params=params, rounds=loaded.sampling.rounds if rounds is None else rounds,
        principles_per_round=k,
        few_shot=len(loaded.few_shot) if few_shot is None else min(few_shot, len(loaded.few_shot)), seed=seed,
    )
    return loaded, config, settings


async def _revise_body(session: Session, *, prompts: Prompts, out: Path, loaded: Any, config: Any, settings: Any,
                       column: str | None, limit: int | None, concurrency: int | None, retry_failed: bool,
                       batch: bool, shard: str | None, progress: Any, new_settings: bool = False,
                       format: str = "auto", split: str | None = None, streaming: bool = False,
                       skip_bad_rows: bool = False, ray: Any = None) -> Result:
    from cai_engine.engine.runner import parse_shard
    from cai_engine.executors import executor_for
    from cai_engine.manifest import write_manifest
    from cai_engine.pipelines.revise import run_revise

    shard_spec = parse_shard(shard)
    executor = executor_for(ray)
    read = {"format": format, "split": split, "streaming": streaming, "skip_bad_rows": skip_bad_rows}
    checked = check_prompt_items(prompts, column, limit, **read)  # every row checked before the first request
    total = None if shard_spec else checked.count
    engine = session.engine(config, batch_dir=out / "batches" if batch else None)
    session.stamp["settings_id"] = claim(out, "revise", {**settings.fingerprint(engine.spec), "prompts": source_of(prompts),
                                                         "column": column, "format": format, "split": split},
                                         new_settings=new_settings)
    runner_concurrency = engine.runner_concurrency(concurrency)
    if engine.concurrency_note:
        session.notify(engine.concurrency_note)
    started = time.perf_counter()
    try:
        with progress(f"revise {loaded.name}", total, [engine]) as bar:
            summary = await run_revise(
                iter_prompt_items(prompts, column, limit, **read), engine=engine, settings=settings,
                out_path=out / RECORDS_FILE, concurrency=runner_concurrency,
                retry_failed=retry_failed, on_record=bar.record, on_skip=bar.skip, shard=shard_spec,
                executor=executor,
            )
    finally:
        write_manifest(out, "revise", {
            "constitution": {"name": loaded.name, "hash": loaded.hash, "source": str(loaded.source_path)},
            "prompts": describe(prompts),
            "prompt_options": {"column": column, **read, "bad_rows_skipped": checked.bad_rows},
            "model": config.model_dump(mode="json", exclude={"api_key_file"}),
            "settings": {"rounds": settings.rounds, "principles_per_round": settings.principles_per_round,
                         "few_shot": settings.few_shot, "seed": settings.seed, "shard": shard},
            "engine": engine.stats.model_dump(),
            **({"ray": executor.report} if executor is not None else {}),
            "budget": session.ledger.snapshot(),
            "wall_s": round(time.perf_counter() - started, 2),
        })
    result = Result(dataset=None, out=out, summary=summary, stats=[engine.stats.model_dump()],
                    budget=session.ledger.snapshot())
    result.bad_rows = checked.bad_rows  # type: ignore[attr-defined]  # rows skipped by skip_bad_rows
    return result


def _args(prompts: Prompts, constitution: Any, model: str, model_config: Path | str | None, out: Path | str | None,
          rounds: int | None, principles_per_round: int | None, few_shot: int | None, max_tokens: int | None,
          temperature: float | None, seed: int, no_cache: bool, max_cost: float | None,
          grace: float) -> tuple[dict[str, Any], dict[str, Any]]:
    loaded, config, settings = _prepare(prompts, constitution, model, model_config, rounds, principles_per_round,
                                        few_shot, max_tokens, temperature, seed)
    out_dir = _out_dir(out)
    body = {"prompts": prompts, "out": out_dir, "loaded": loaded, "config": config, "settings": settings}
    session = {"out_dir": out_dir, "max_cost_usd": max_cost, "use_cache": not no_cache, "grace_s": grace}
    return body, session


def _finish(result: Result, with_dataset: bool) -> Result:
    if with_dataset:
        result.dataset = records_dataset(result.out / RECORDS_FILE)
    return result


def revise(
    prompts: Prompts, *, constitution: Any = "general", model: str = "local/smollm2",
    model_config: Path | str | None = None, out: Path | str | None = None, rounds: int | None = None,
    principles_per_round: int | None = None, few_shot: int | None = None, column: str | None = None,
    limit: int | None = None, concurrency: int | None = None, max_tokens: int | None = None,
    temperature: float | None = None, seed: int = 0, retry_failed: bool = False, no_cache: bool = False,
    max_cost: float | None = None, batch: bool = False, shard: str | None = None, grace: float = 30.0,
    new_settings: bool = False, format: str = "auto", split: str | None = None, streaming: bool = False,
    skip_bad_rows: bool = False, progress: ProgressOption = True, with_dataset: bool = True, ray: Any = None,
) -> Result:
    """Answer each prompt, critique the answer against sampled principles, and revise it.

    ``prompts``: a list (strings, ``messages`` lists or dict rows), a prompt file, an
    ``hf:NAME_OR_DIR[:CONFIG]`` spec (``split``, ``streaming``), or a ``datasets.Dataset``; each
    prompt is a string, a ``messages`` list or an HH transcript (detected per row, or ``format``
    ``text|messages|hh``), see ``docs/data.md``. Every row is checked before the first request;
    ``skip_bad_rows`` skips bad rows with a warning (their count is ``result.bad_rows``). ``out``: the output folder (``revisions.jsonl``, ``manifest.json``,
    ``ledger.json``, ``settings.json``); rerunning into it resumes; without it a fresh folder under
    ``CAI_HOME`` is used. A rerun with other settings is refused unless ``new_settings=True``. ``ray``: run the
    prompts on Ray workers (``True``, a dict of :class:`~cai_engine.executors.settings.RaySettings` fields
    such as ``{"workers": 4, "address": "auto"}``, or a ``RaySettings``; ``docs/scaling.md``). Returns a :class:`~cai_engine.api.result.Result` (a Dataset of the records + figures).
    """
    body, session = _args(prompts, constitution, model, model_config, out, rounds, principles_per_round, few_shot,
                          max_tokens, temperature, seed, no_cache, max_cost, grace)
    result = run_sync("revise", lambda s: _revise_body(
        s, **body, column=column, limit=limit, concurrency=concurrency, retry_failed=retry_failed, batch=batch,
        shard=shard, progress=resolve_progress(progress), new_settings=new_settings, format=format, split=split,
        streaming=streaming, skip_bad_rows=skip_bad_rows, ray=ray), **session)
    return _finish(result, with_dataset)


async def arevise(
    prompts: Prompts, *, constitution: Any = "general", model: str = "local/smollm2",
    model_config: Path | str | None = None, out: Path | str | None = None, rounds: int | None = None,
    principles_per_round: int | None = None, few_shot: int | None = None, column: str | None = None,
    limit: int | None = None, concurrency: int | None = None, max_tokens: int | None = None,
    temperature: float | None = None, seed: int = 0, retry_failed: bool = False, no_cache: bool = False,
    max_cost: float | None = None, batch: bool = False, shard: str | None = None,
    new_settings: bool = False, format: str = "auto", split: str | None = None, streaming: bool = False,
    skip_bad_rows: bool = False, progress: ProgressOption = True, with_dataset: bool = True, ray: Any = None,
) -> Result:
    """:func:`revise` inside a running event loop (a notebook cell: ``await cai_engine.arevise(...)``)."""
    body, session = _args(prompts, constitution, model, model_config, out, rounds, principles_per_round, few_shot,
                          max_tokens, temperature, seed, no_cache, max_cost, 30.0)
    result = await run_async(lambda s: _revise_body(
        s, **body, column=column, limit=limit, concurrency=concurrency, retry_failed=retry_failed, batch=batch,
        shard=shard, progress=resolve_progress(progress), new_settings=new_settings, format=format, split=split,
        streaming=streaming, skip_bad_rows=skip_bad_rows, ray=ray), **session)
    return _finish(result, with_dataset)
