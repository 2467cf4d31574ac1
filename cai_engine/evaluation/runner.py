"""``evaluate(...)``: the trained model against its base, end to end, resumable, into ``eval.json``.

Two phases, each streamed through :func:`cai_engine.engine.runner.run_items` into an append-only
record file, so a killed eval resumes where it stopped and a rerun with the same inputs costs
nothing:

1. ``generations.jsonl`` - both models answer every prompt of the selected sets (same sampling).
2. ``winrate_pairs.jsonl`` (the judge's pair records, the same shape as ``cai judge``'s
   ``pairs.jsonl``) and ``classifications.jsonl`` (harm / refusal yes-no judgments).

The report is then scored from the records that belong to this configuration (ids are recomputed,
so stale records of an older model or setting in the same dir are ignored) and written as
``eval.json`` (:class:`~cai_engine.evaluation.report.EvalReport`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cai_engine.atomic import write_json_atomic
from cai_engine.constitution import Constitution, load_constitution
from cai_engine.engine.engine import Engine
from cai_engine.engine.progress import ProgressFactory, no_progress
from cai_engine.engine.session import open_store
from cai_engine.errors import ConfigError
from cai_engine.evaluation import length_diversity, safety, sycophancy, winrate
from cai_engine.evaluation.config import EvalConfig
from cai_engine.evaluation.generate import GenJob, GenSettings, base_record, generation_id, generation_worker, model_fingerprint
from cai_engine.evaluation.judging import ClassifyJob, classification_id, classification_worker, classify_base, classify_settings
from cai_engine.executors.job import Executor, Job, LocalExecutor
from cai_engine.evaluation.report import EvalReport
from cai_engine.evaluation.sets import EvalItem, load_set, shipped_path
from cai_engine.models.base import ModelConfig, SamplingParams
from cai_engine.pipelines.judge import JudgeSettings, judge_job, pair_id

ROLES = ("trained", "base")
FILES = {"generations": "generations.jsonl", "pairs": "winrate_pairs.jsonl", "classifications": "classifications.jsonl",
         "report": "eval.json"}


@dataclass
class EvalEngines:
    """Engines to use instead of building them from the config's specs (tests, a run sharing engines)."""

    trained: Engine
    base: Engine
    judge: Engine

    def distinct(self) -> list[Engine]:
        seen: list[Engine] = []
        for e in (self.trained, self.base, self.judge):
            if all(e is not s for s in seen):
                seen.append(e)
        return seen


def engines_for(trained: ModelConfig, base: ModelConfig, judge: ModelConfig,
                build: Callable[[ModelConfig], Engine]) -> EvalEngines:
    """One engine per distinct model config: trained = base = judge loads one local model, not three."""
    built: dict[str, Engine] = {}

    def engine(model_config: ModelConfig) -> Engine:
        key = model_config.model_dump_json()
        if key not in built:
            built[key] = build(model_config)
        return built[key]

    try:
        return EvalEngines(engine(trained), engine(base), engine(judge))
    except BaseException:  # a bad second config: release the caches the first engines opened
        for e in built.values():
            if e.cache is not None and e.owns_cache:
                e.cache.close()
        raise


def build_engines(config: EvalConfig) -> EvalEngines:
    """The engines of an eval config's specs and model config files (see :func:`engines_for`).

    Inside a command's :class:`~cai_engine.engine.session.Session` they come from it (one budget
    and cache for the three roles); otherwise each is a stand-alone engine."""
    from cai_engine.engine.factory import build_engine, load_model_config
    from cai_engine.engine.session import current_session

    session = current_session()

    def build(model_config: ModelConfig) -> Engine:
        if session is not None:
            return session.engine(model_config, use_cache=config.use_cache)
        return build_engine(model_config, use_cache=config.use_cache, max_cost_usd=config.max_cost_usd)

    return engines_for(
        load_model_config(config.model, config.model_config_file),
        load_model_config(config.base_model, config.base_model_config_file),
        load_model_config(config.judge_model, config.judge_config_file),
        build,
    )


def judge_settings(config: EvalConfig, constitution: Constitution) -> JudgeSettings:
    k = config.principles_per_judgment or constitution.sampling.principles_per_judgment
    if k > len(constitution.principles):
        raise ConfigError(f"principles_per_judgment {k} is more than the {len(constitution.principles)} principles of {constitution.name}")
    return JudgeSettings(constitution=constitution, principles_per_judgment=k, cot=config.cot, logprobs=config.logprobs, seed=config.seed)


def load_sets(config: EvalConfig) -> dict[str, list[EvalItem]]:
    """The sets the chosen metrics need (text statistics use whatever is generated, heldout at least)."""
    wanted: list[str] = []
    if "winrate" in config.metrics or "text" in config.metrics:
        wanted.append("heldout")
    if "safety" in config.metrics:
        wanted += ["redteam", "benign_risky"]
    if "sycophancy" in config.metrics:
        wanted.append("sycophancy")
    paths = {"heldout": config.heldout, "redteam": config.redteam, "benign_risky": config.benign_risky, "sycophancy": config.sycophancy}
    return {name: load_set(name, paths[name], config.limit) for name in wanted}


def _unique(jobs: list[Any], key: Callable[[Any], str]) -> list[Any]:
    """Drop jobs whose record id an earlier job already has (the same answer or judgment twice)."""
    seen: set[str] = set()
    kept = []
    for job in jobs:
        k = key(job)
        if k not in seen:
            seen.add(k)
            kept.append(job)
    return kept


async def evaluate_async(
    config: EvalConfig, out_dir: Path, *, engines: EvalEngines | None = None, progress: ProgressFactory | None = None,
    executor: Executor | None = None,
) -> EvalReport:
    """Run (or resume) the evaluation into ``out_dir`` and return its report (also in ``eval.json``).

    Engines passed in are left open for the caller; engines built here are closed before returning.
    ``executor``: where the answers and judgments run (default: here; a
    :class:`~cai_engine.executors.ray_driver.RayExecutor` runs them on Ray workers, each phase a job
    whose records come back to this process, which alone writes OUT).
    """
    started = time.perf_counter()
    if not config.metrics:
        raise ConfigError("metrics is empty; choose at least one of winrate, safety, sycophancy, text")
    constitution = load_constitution(config.constitution)
    jsettings = judge_settings(config, constitution)
    sets = load_sets(config)
    owned = engines is None
    engines = engines or build_engines(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = progress or no_progress
    executor = executor or LocalExecutor()
    try:
        with executor.held():  # one Ray connection for all phases, not one per phase
            report = await _evaluate(config, out_dir, engines, progress, executor, constitution, jsettings, sets, started)
    finally:
        if owned:
            for engine in engines.distinct():
                await engine.aclose()
    write_json_atomic(out_dir / FILES["report"], report.model_dump(mode="json"))
    return report


async def _evaluate(config: EvalConfig, out_dir: Path, engines: EvalEngines, progress: ProgressFactory, executor: Executor,
                    constitution: Constitution, jsettings: JudgeSettings, sets: dict[str, list[EvalItem]],
                    started: float) -> EvalReport:
    gen = GenSettings(
        params=SamplingParams(max_tokens=config.max_tokens, temperature=config.temperature, top_p=config.top_p),
        system_prompt=constitution.system_prompt if config.system_prompt else None, seed=config.seed,
    )
    distinct = engines.distinct()
    slot = {role: next(i for i, e in enumerate(distinct) if e is getattr(engines, role)) for role in ROLES}
    fps = {role: model_fingerprint(getattr(engines, role)) for role in ROLES}
    judge_fp = model_fingerprint(engines.judge)
    jobs = _unique([GenJob(slot[role], getattr(engines, role).spec, fps[role], item)
                    for role in ROLES for items in sets.values() for item in items],
                   lambda j: generation_id(j.fingerprint, j.item, gen))
    answers = Job(models=[e.config for e in distinct], setup=functools.partial(generation_worker, settings=gen),
                  failure_base=functools.partial(base_record, settings=gen))
    concurrency = config.concurrency or sum(e.suggested_concurrency for e in distinct)
    with open_store(out_dir / FILES["generations"]) as store, progress("eval: answers", len(jobs), distinct) as bar:
        await executor.run(
            jobs, job=answers, engines=distinct, record_id=lambda j: generation_id(j.fingerprint, j.item, gen),
            store=store, concurrency=concurrency, retry_failed=config.retry_failed,
            on_record=bar.record, on_skip=bar.skip,
        )
        generations = {
            role: {name: [store.get(generation_id(fps[role], item, gen)) for item in items] for name, items in sets.items()}
            for role in ROLES
        }
    ok = {role: {name: [r for r in recs if r and r.get("status") == "ok"] for name, recs in by_set.items()}
          for role, by_set in generations.items()}
    failures = sum(1 for by_set in generations.values() for recs in by_set.values() for r in recs if not r or r.get("status") != "ok")

    # ---- phase 2: the judge ---------------------------------------------------------------
    pairs = []
    if "winrate" in config.metrics:
        trained_by_index = {r["index"]: r for r in ok["trained"]["heldout"]}
        pairs = [winrate.pair_spec(trained_by_index[b["index"]], b) for b in ok["base"]["heldout"] if b["index"] in trained_by_index]
    kinds = []
    if "safety" in config.metrics:
        kinds = [("harm", "redteam")] + ([("refusal", "redteam"), ("refusal", "benign_risky")] if config.judge_refusals else [])
    ccfg = classify_settings(config)
    cjobs = _unique([ClassifyJob(kind, r) for kind, name in kinds for role in ROLES for r in ok[role][name]],
                    lambda j: classification_id(j, judge_fp, ccfg))
    judge = engines.judge
    pair_job, pair_engines = judge_job(jsettings, judge)
    classify_job = Job(models=[judge.config], setup=functools.partial(classification_worker, settings=ccfg),
                       failure_base=functools.partial(classify_base, judge_spec=judge.spec))
    with open_store(out_dir / FILES["pairs"]) as pstore, open_store(out_dir / FILES["classifications"]) as cstore, \
            progress("eval: judge", len(pairs) + len(cjobs), [judge]) as bar:
        jconc = config.concurrency or judge.suggested_concurrency
        await asyncio.gather(
            executor.run(pairs, job=pair_job, engines=pair_engines, record_id=lambda s: pair_id(s, jsettings, judge.spec),
                         store=pstore, concurrency=jconc, retry_failed=config.retry_failed,
                         on_record=bar.record, on_skip=bar.skip),
            executor.run(cjobs, job=classify_job, engines=[judge], record_id=lambda j: classification_id(j, judge_fp, ccfg),
                         store=cstore, concurrency=jconc, retry_failed=config.retry_failed,
                         on_record=bar.record, on_skip=bar.skip),
        )
        pair_records = [pstore.get(pair_id(s, jsettings, judge.spec)) for s in pairs]
        classes: dict[str, dict[str, dict[str, Any]]] = {"harm": {}, "refusal": {}}
        cfailed = sum(1 for j in cjobs if (cstore.get(classification_id(j, judge_fp, ccfg)) or {}).get("status") != "ok")
        for kind, name in kinds:  # every generation (of either role) maps to the classification of its text
            for role in ROLES:
                for r in ok[role][name]:
                    rec = cstore.get(classification_id(ClassifyJob(kind, r), judge_fp, ccfg))
                    if rec and rec.get("status") == "ok":
                        classes[kind][r["id"]] = rec
    return _score(config, constitution, sets, ok, pair_records, classes, cfailed, failures, engines, started)


def _score(config: EvalConfig, constitution: Constitution, sets: dict[str, list[EvalItem]], ok: dict[str, dict[str, list[dict[str, Any]]]],
           pair_records: list[dict[str, Any] | None], classes: dict[str, dict[str, dict[str, Any]]], cfailed: int, failures: int,
           engines: EvalEngines, started: float) -> EvalReport:
    boot = {"n_boot": config.n_boot, "seed": config.seed}
    data: dict[str, Any] = {
        "model": engines.trained.spec, "base_model": engines.base.spec, "judge_model": engines.judge.spec,
        "constitution": {"name": constitution.name, "version": str(constitution.version), "hash": constitution.hash},
        "sets": {name: {"path": str(getattr(config, name) or shipped_path(name)), "prompts": len(items)} for name, items in sets.items()},
        "settings": config.model_dump(mode="json", exclude={"model", "base_model", "judge_model"}),
        "generation_failures": failures,
        "engines": [e.stats.model_dump() for e in engines.distinct()],
    }
    if "winrate" in config.metrics:
        data["winrate"] = winrate.score([r for r in pair_records if r], len(sets["heldout"]), **boot)
    if "safety" in config.metrics:
        roles = {role: safety.score_role(ok[role]["redteam"], ok[role]["benign_risky"], classes["harm"], classes["refusal"], **boot)
                 for role in ROLES}
        data["safety"] = {**roles, "failed": cfailed,
                          "verdict_methods": safety.methods([*classes["harm"].values(), *classes["refusal"].values()])}
    if "sycophancy" in config.metrics:
        data["sycophancy"] = {role: sycophancy.score_role(ok[role]["sycophancy"], **boot) for role in ROLES}
    if "text" in config.metrics:
        data["text"] = {role: length_diversity.score_role([r for recs in ok[role].values() for r in recs]) for role in ROLES}
    notes = []
    if engines.trained is engines.base:
        notes.append("trained and base are the same model config: one set of answers serves both, so every pair is a tie")
    if engines.judge is engines.trained or engines.judge is engines.base:
        notes.append("the judge is one of the compared models: expect self-preference")
    data["notes"] = notes
    data["wall_s"] = round(time.perf_counter() - started, 2)
    return EvalReport.model_validate(data)


def evaluate(config: EvalConfig, out_dir: Path, *, engines: EvalEngines | None = None,
             progress: ProgressFactory | None = None, executor: Executor | None = None) -> EvalReport:
    """Synchronous wrapper of :func:`evaluate_async`: one :class:`Session` on ``out_dir`` (its lock,
    one budget for the three roles, the graceful stop) in its own event loop."""
    from cai_engine.engine.session import Session

    session = Session(Path(out_dir), max_cost_usd=config.max_cost_usd, use_cache=config.use_cache)
    return session.run(lambda _session: evaluate_async(config, Path(out_dir), engines=engines, progress=progress,
                                                                   executor=executor))
