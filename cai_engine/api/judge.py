"""``judge`` / ``ajudge`` / ``judge_eval``: AI-judged preference pairs under a constitution.

The one code path behind ``cai judge`` and ``cai judge-eval``; keyword names are the CLI's long
option names. ``pairs_from`` is ``revisions:OUT``, ``samples:PROMPTS``, ``models:PROMPTS`` or
``file:PAIRS`` as on the CLI (PROMPTS and PAIRS: any prompt source, ``hf:NAME_OR_DIR`` included),
or a list of ``{"prompt", "chosen", "rejected"}`` / ``{"prompt", "a", "b"}`` dicts. Prompts may be
conversations (``messages`` lists, HH transcripts); every row is checked before the first request.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from cai_engine.api.loop import run_async, run_sync
from cai_engine.api.progress import ProgressOption, resolve_progress
from cai_engine.api.result import Result, records_dataset
from cai_engine.engine.outsettings import claim
from cai_engine.engine.session import Session
from cai_engine.errors import CaiError, ConfigError

RECORDS_FILE = "pairs.jsonl"


def parse_clamp(value: str | tuple[float, float]) -> tuple[float, float]:
    if isinstance(value, tuple):
        low, high = value
    else:
        try:
            low, high = (float(v) for v in value.split(","))
        except ValueError:
            raise CaiError(f"--cot-clamp {value!r} is not LOW,HIGH; write e.g. 0.4,0.6") from None
    if not 0.0 <= low <= 0.5 <= high <= 1.0:
        raise CaiError(f"--cot-clamp {value!r} must satisfy 0 <= LOW <= 0.5 <= HIGH <= 1, e.g. 0.4,0.6")
    return low, high


def judge_settings(loaded: Any, k: int | None, cot: bool, cot_clamp: str | tuple[float, float], no_logprobs: bool,
                   seed: int, max_tokens: int | None) -> Any:
    from cai_engine.pipelines.judge import JudgeSettings

    k = k or loaded.sampling.principles_per_judgment
    if k > len(loaded.principles):
        raise ConfigError(f"--principles-per-judgment {k} is more than the {len(loaded.principles)} principles of {loaded.name}")
    return JudgeSettings(constitution=loaded, principles_per_judgment=k, cot=cot, cot_clamp=parse_clamp(cot_clamp),
                         logprobs=not no_logprobs, seed=seed, max_tokens=max_tokens)


def _pairs_file(pairs: list[dict[str, Any]], out: Path) -> Path:
    """A list of pair dicts as the ``file:`` source (kept in OUT, so a rerun resumes the same pairs)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "input_pairs.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for row in pairs:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


class _Plan:
    """What to judge: the pair source, how many, and the policy that writes candidates (if any)."""

    def __init__(self, pairs_from: str | list[dict[str, Any]], out: Path, *, policy_model: str | None,
                 policy_config: Path | None, model_b: str | None, temperature: float, column: str | None,
                 limit: int | None, shard: bool, read: dict[str, Any] | None = None):
        from cai_engine.engine.factory import load_model_config
        from cai_engine.engine.records import count_latest
        from cai_engine.pipelines import candidates as cands
        from cai_engine.sources import check_pairs, check_prompts

        read = read or {}
        self.bad_rows = 0

        if isinstance(pairs_from, list):
            pairs_from = f"file:{_pairs_file(pairs_from, out)}"
        self.pairs_from = pairs_from
        kind, path = cands.parse_pairs_from(pairs_from)
        self.kind = kind
        self.policy = self.second = self.gen_params = None
        self.source: Any
        total: int | None
        if kind in ("samples", "models"):
            if not policy_model and policy_config is None:
                raise CaiError(f"--pairs-from {kind}:... needs --policy-model SPEC to write the candidates")
            self.policy = load_model_config(policy_model, policy_config)
            if kind == "models":
                if not model_b:
                    raise CaiError("--pairs-from models:... needs --model-b SPEC (the second model)")
                self.second = load_model_config(model_b, None)
            self.gen_params = self.policy.defaults.model_copy(
                update={"temperature": temperature if kind == "samples" else self.policy.defaults.temperature})

            def pairs(recipe: dict[str, Any]) -> Any:
                return cands.prompt_pairs(kind, path, recipe, column, limit, **read)

            checked = check_prompts(path, column, limit, **read)  # every row checked before the first request
            total, self.bad_rows = checked.count, checked.bad_rows
            self.source = pairs
        elif kind == "revisions":
            self.source = cands.revision_pairs(path, limit)
            records = path / "revisions.jsonl" if path.is_dir() else path
            total = count_latest(records, "ok") if records.exists() else 0
            total = min(total, limit) if limit is not None else total
        else:
            self.source = cands.file_pairs(path, limit, column=column, **read)
            checked = check_pairs(lambda on_bad_row: cands.file_pairs(path, limit, column=column, on_bad_row=on_bad_row,
                                                                      **read), str(path))
            total, self.bad_rows = checked.count, checked.bad_rows
        self.total = None if shard else total


async def judge_in_session(session: Session, pairs: Any, total: int | None, out: Path, settings: Any, judge_config: Any,
                           *, what: str, policy: Any = None, model_b: Any = None, kind: str = "file",
                           gen_params: Any = None, concurrency: int | None = None, retry_failed: bool = False,
                           manifest: dict[str, Any], batch: bool = False, shard: str | None = None,
                           progress: Callable[..., Any], settings_kind: str = "judge",
                           new_settings: bool = False, ray: Any = None) -> Result:
    """Build engines, stream pairs through the judge with progress, write the manifest.

    ``pairs`` is an iterable of :class:`PairSpec`, or for generated sources a function of the
    generator's recipe returning one (the recipe goes into every pair id). A policy with the same
    config as the judge shares the judge's engine, so a local model is loaded once. ``ray``: judge
    on Ray workers (see :func:`~cai_engine.api.revise.revise`).
    """
    from cai_engine.engine.runner import parse_shard
    from cai_engine.executors import executor_for
    from cai_engine.manifest import write_manifest
    from cai_engine.pipelines.candidates import CandidateGenerator
    from cai_engine.pipelines.judge import run_judge

    shard_spec = parse_shard(shard)
    executor = executor_for(ray)
    engines = [session.engine(judge_config, batch_dir=out / "batches" if batch else None)]
    generator = None
    if policy is not None:

        def engine_for(config: Any) -> Any:
            same = next((e for e in engines if e.config == config), None)
            if same is None:
                same = session.engine(config)
                engines.append(same)
            return same

        first = engine_for(policy)
        second = engine_for(model_b) if model_b is not None else None
        generator = CandidateGenerator(kind, first, gen_params, model_b=second,
                                       system_prompt=settings.constitution.system_prompt, seed=settings.seed)
        pairs = pairs(generator.recipe())
    recipe = generator.recipe() if generator is not None else None
    session.stamp["settings_id"] = claim(out, settings_kind, {
        **settings.fingerprint(engines[0].spec), "pairs_from": manifest.get("pairs_from") or manifest.get("labels"),
        "candidates": recipe}, new_settings=new_settings)
    runner_concurrency = engines[0].runner_concurrency(concurrency)
    for other in engines[1:]:
        other.runner_concurrency(concurrency)  # a higher --concurrency raises the policy's cap too
    notes = [e.concurrency_note for e in engines if e.concurrency_note]
    started = time.perf_counter()
    try:
        for note in notes:
            session.notify(note)
        with progress(what, total, engines) as bar:
            summary = await run_judge(
                pairs, engine=engines[0], settings=settings, out_path=out / RECORDS_FILE, generator=generator,
                concurrency=runner_concurrency, retry_failed=retry_failed,
                on_record=bar.record, on_skip=bar.skip, shard=shard_spec, executor=executor,
            )
    finally:
        write_manifest(out, what.split()[0], {
            **manifest,
            "constitution": {"name": settings.constitution.name, "hash": settings.constitution.hash},
            "settings": settings.fingerprint(engines[0].spec),
            "engines": [e.stats.model_dump() for e in engines],
            **({"ray": executor.report} if executor is not None else {}),
            "budget": session.ledger.snapshot(),
            "wall_s": round(time.perf_counter() - started, 2),
        })
    return Result(dataset=None, out=out, summary=summary, stats=[e.stats.model_dump() for e in engines],
                  budget=session.ledger.snapshot())


def _judge_call(pairs_from: str | list[dict[str, Any]], constitution: Any, out: Path | str | None, judge_model: str,
                judge_config: Path | str | None, policy_model: str | None, policy_config: Path | str | None,
                model_b: str | None, principles_per_judgment: int | None, cot: bool, cot_clamp: Any,
                no_logprobs: bool, column: str | None, limit: int | None, concurrency: int | None,
                max_tokens: int | None, temperature: float, seed: int, retry_failed: bool, batch: bool,
                shard: str | None, progress: ProgressOption,
                new_settings: bool = False, read: dict[str, Any] | None = None,
                ray: Any = None) -> tuple[Callable[[Session], Any], Path]:
    from cai_engine.api.constitution import load_constitution
    from cai_engine.api.revise import _out_dir
    from cai_engine.engine.factory import load_model_config

    out_dir = _out_dir(out, "judge")
    loaded = load_constitution(constitution)
    settings = judge_settings(loaded, principles_per_judgment, cot, cot_clamp, no_logprobs, seed, max_tokens)
    judge_cfg = load_model_config(judge_model, Path(judge_config) if judge_config else None)
    plan = _Plan(pairs_from, out_dir, policy_model=policy_model,
                 policy_config=Path(policy_config) if policy_config else None, model_b=model_b,
                 temperature=temperature, column=column, limit=limit, shard=shard is not None, read=read)
    manifest = {"pairs_from": plan.pairs_from, "shard": shard,
                "prompt_options": {"column": column, **(read or {}), "bad_rows_skipped": plan.bad_rows},
                "judge_model": judge_cfg.model_dump(mode="json", exclude={"api_key_file"})}

    async def body(session: Session) -> Any:
        result = await judge_in_session(
            session, plan.source, plan.total, out_dir, settings, judge_cfg, what=f"judge {loaded.name}",
            policy=plan.policy, model_b=plan.second, kind=plan.kind, gen_params=plan.gen_params,
            concurrency=concurrency, retry_failed=retry_failed, manifest=manifest, batch=batch, shard=shard,
            progress=resolve_progress(progress), new_settings=new_settings, ray=ray)
        result.bad_rows = plan.bad_rows  # rows skipped by skip_bad_rows
        return result

    return body, out_dir


def judge(
    pairs_from: str | list[dict[str, Any]], *, constitution: Any = "general", out: Path | str | None = None,
    judge_model: str = "local/smollm2", judge_config: Path | str | None = None, policy_model: str | None = None,
    policy_config: Path | str | None = None, model_b: str | None = None, principles_per_judgment: int | None = None,
    cot: bool = False, cot_clamp: str | tuple[float, float] = "0.4,0.6", no_logprobs: bool = False,
    column: str | None = None, limit: int | None = None, concurrency: int | None = None,
    max_tokens: int | None = None, temperature: float = 1.0, seed: int = 0, retry_failed: bool = False,
    no_cache: bool = False, max_cost: float | None = None, batch: bool = False, shard: str | None = None,
    grace: float = 30.0, new_settings: bool = False, format: str = "auto", split: str | None = None,
    streaming: bool = False, skip_bad_rows: bool = False, progress: ProgressOption = True,
    with_dataset: bool = True, ray: Any = None,
) -> Result:
    """Judge pairs of answers in both orders into ``OUT/pairs.jsonl`` (resumable); returns the pair records.

    ``format``/``split``/``streaming``/``skip_bad_rows`` read the prompts (or pairs) as for :func:`revise`;
    ``ray`` judges on Ray workers, as for :func:`revise`."""
    read = {"format": format, "split": split, "streaming": streaming, "skip_bad_rows": skip_bad_rows}
    body, out_dir = _judge_call(pairs_from, constitution, out, judge_model, judge_config, policy_model, policy_config,
                                model_b, principles_per_judgment, cot, cot_clamp, no_logprobs, column, limit,
                                concurrency, max_tokens, temperature, seed, retry_failed, batch, shard, progress,
                                new_settings, read, ray)
    result = run_sync("judge", body, out_dir=out_dir, max_cost_usd=max_cost, use_cache=not no_cache, grace_s=grace)
    if with_dataset:
        result.dataset = records_dataset(out_dir / RECORDS_FILE)
    return result


async def ajudge(
    pairs_from: str | list[dict[str, Any]], *, constitution: Any = "general", out: Path | str | None = None,
    judge_model: str = "local/smollm2", judge_config: Path | str | None = None, policy_model: str | None = None,
    policy_config: Path | str | None = None, model_b: str | None = None, principles_per_judgment: int | None = None,
    cot: bool = False, cot_clamp: str | tuple[float, float] = "0.4,0.6", no_logprobs: bool = False,
    column: str | None = None, limit: int | None = None, concurrency: int | None = None,
    max_tokens: int | None = None, temperature: float = 1.0, seed: int = 0, retry_failed: bool = False,
    no_cache: bool = False, max_cost: float | None = None, batch: bool = False, shard: str | None = None,
    format: str = "auto", split: str | None = None, streaming: bool = False, skip_bad_rows: bool = False,
    progress: ProgressOption = True, with_dataset: bool = True, ray: Any = None,
) -> Result:
    """:func:`judge` inside a running event loop (``await cai_engine.ajudge(...)``)."""
    read = {"format": format, "split": split, "streaming": streaming, "skip_bad_rows": skip_bad_rows}
    body, out_dir = _judge_call(pairs_from, constitution, out, judge_model, judge_config, policy_model, policy_config,
                                model_b, principles_per_judgment, cot, cot_clamp, no_logprobs, column, limit,
                                concurrency, max_tokens, temperature, seed, retry_failed, batch, shard, progress,
                                read=read, ray=ray)
    result = await run_async(body, out_dir=out_dir, max_cost_usd=max_cost, use_cache=not no_cache)
    if with_dataset:
        result.dataset = records_dataset(out_dir / RECORDS_FILE)
    return result


def judge_eval(
    labels: Path | str | None = None, *, constitution: Any = "general", out: Path | str = "out/judge-eval",
    judge_model: str = "local/smollm2", judge_config: Path | str | None = None,
    principles_per_judgment: int | None = None, cot: bool = False, cot_clamp: str | tuple[float, float] = "0.4,0.6",
    no_logprobs: bool = False, limit: int | None = None, concurrency: int | None = None, seed: int = 0,
    retry_failed: bool = False, no_cache: bool = False, max_cost: float | None = None, grace: float = 30.0,
    column: str | None = None, format: str = "auto", split: str | None = None, streaming: bool = False,
    skip_bad_rows: bool = False, progress: ProgressOption = True,
) -> dict[str, Any]:
    """Measure a judge against human labels; returns the report (also written to OUT as JSON/Markdown/PNG).

    ``labels``: any pairs source with ``chosen``/``rejected`` (JSONL, parquet, ``hf:NAME_OR_DIR``, e.g.
    ``hf:Anthropic/hh-rlhf`` whose whole transcripts share their prompt)."""
    from cai_engine.api.constitution import load_constitution
    from cai_engine.engine.factory import load_model_config
    from cai_engine.engine.records import iter_latest
    from cai_engine.evaluation.judge_eval import SHIPPED_LABELS, evaluate, write_report
    from cai_engine.pipelines.candidates import file_pairs
    from cai_engine.pipelines.judge import pair_id
    from cai_engine.sources import BadRows, is_hf_spec

    labels_path: Any = Path(labels) if labels is not None else SHIPPED_LABELS
    if is_hf_spec(str(labels_path)):
        labels_path = str(labels_path)
    elif not labels_path.exists():
        raise CaiError(f"labels file {labels_path} not found; pass --labels FILE (JSONL of prompt/chosen/rejected)")
    tally = BadRows()
    specs = list(file_pairs(labels_path, limit, column=column, format=format, split=split, streaming=streaming,
                            skip_bad_rows=skip_bad_rows, on_bad_row=tally.add))
    tally.close()
    if not specs:
        raise CaiError(f"{labels_path}: no usable labelled pair" + (f"; {tally.count} bad rows skipped, the first: {tally.first}"
                                                                     if tally.count else ""))
    if any(s.label is None for s in specs):
        raise CaiError(f"{labels_path}: every row of a labels file needs 'chosen' and 'rejected' (the human-preferred answer first)")
    out_dir = Path(out)
    loaded = load_constitution(constitution)
    settings = judge_settings(loaded, principles_per_judgment, cot, cot_clamp, no_logprobs, seed, None)
    judge_cfg = load_model_config(judge_model, Path(judge_config) if judge_config else None)
    manifest = {"labels": str(labels_path), "judge_model": judge_cfg.model_dump(mode="json", exclude={"api_key_file"})}
    run_sync("judge_eval", lambda s: judge_in_session(
        s, specs, len(specs), out_dir, settings, judge_cfg, what=f"judge-eval {loaded.name}", concurrency=concurrency,
        retry_failed=retry_failed, manifest=manifest, progress=resolve_progress(progress), settings_kind="judge-eval",
        new_settings=True),
        out_dir=out_dir, max_cost_usd=max_cost, use_cache=not no_cache, grace_s=grace)
    wanted = {pair_id(s, settings, judge_cfg.spec) for s in specs}
    records = [r for r in iter_latest(out_dir / RECORDS_FILE) if r["id"] in wanted]
    report = {"judge_model": judge_cfg.spec, "constitution": f"{loaded.name}@{loaded.hash}", "labels": str(labels_path),
              **evaluate(records, seed=seed)}
    if tally.count:
        report["bad_rows_skipped"] = tally.count
    report["paths"] = {k: str(v) for k, v in write_report(report, out_dir).items()}
    return report
