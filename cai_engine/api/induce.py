"""``induce`` / ``ainduce`` / ``audit``: constitutions from labelled preferences, and which principles drive a judge.

The one code path behind ``cai constitution induce`` and ``cai constitution audit``; keyword names
are the CLI's long option names. ``induce`` runs four resumable steps in one Session (one budget
ledger, cache, writer and OUT lock on the work folder):

1. split the labelled pairs, deterministically by content, into proposal pairs and held-out pairs;
2. propose ``per_pair`` principles for each proposal pair (``proposals.jsonl``);
3. merge near-duplicates into candidates (``merges.jsonl`` when the model merges) and test the best
   supported ``max_candidates`` as the judge's only principle on every held-out pair (``tests.jsonl``);
4. keep the best by votes and agreement, write the constitution YAML, judge the held-out pairs
   with it and with the baseline (``evaluation.jsonl``), and write the report beside the YAML.

A rerun of the same command resumes every step; changing only ``min_agreement``,
``max_principles``, ``max_candidates``, ``similarity``, ``merge`` or ``baseline`` reuses what was
already judged and pays only for what is new.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from cai_engine.api.loop import run_async, run_sync
from cai_engine.api.progress import ProgressOption, resolve_progress
from cai_engine.engine.session import Session
from cai_engine.errors import CaiError

NONE = "none"


def _specs(pairs: Any, work: Path, column: str | None, split: str | None, limit: int | None) -> tuple[list[Any], str]:
    from cai_engine.pipelines.candidates import file_pairs

    if isinstance(pairs, list):
        work.mkdir(parents=True, exist_ok=True)
        path: Any = work / "input_pairs.jsonl"
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in pairs), encoding="utf-8")
        source = "python list"
    else:
        path = pairs if isinstance(pairs, str) and pairs.startswith("hf:") else Path(pairs)
        if isinstance(path, Path) and not path.exists():
            raise CaiError(f"--pairs {path} not found; pass a JSONL/parquet file of prompt/chosen/rejected rows or hf:NAME")
        source = str(pairs)
    specs = list(file_pairs(path, limit, column=column, split=split))
    if any(s.label is None for s in specs):
        raise CaiError(f"{source}: induction needs labelled pairs: every row needs 'chosen' and 'rejected' (the preferred answer first)")
    return specs, source


def split_pairs(specs: list[Any], holdout: float, seed: int) -> tuple[list[Any], list[Any]]:
    """(proposal pairs, held-out pairs): ordered by a seeded hash of each pair's content, so the split
    does not depend on row order and a rerun gets the same one."""
    from cai_engine.engine.records import stable_hash

    unique = list({stable_hash(s.fingerprint()): s for s in specs}.items())
    if len(unique) < 4:
        raise CaiError(f"induction needs at least 4 distinct labelled pairs, got {len(unique)}; label a few dozen in `cai view`")
    ranked = [s for _, s in sorted(unique, key=lambda kv: stable_hash({"split": seed, "pair": kv[0]}))]
    n_test = min(len(ranked) - 2, max(2, round(len(ranked) * holdout)))
    return ranked[n_test:], ranked[:n_test]


def _extends_ref(extends: str, out: Path) -> str:
    """How the written YAML names its parent: a shipped name as is, a file relative to the YAML."""
    path = Path(extends)
    if path.is_file():
        return os.path.relpath(path.resolve(), out.parent.resolve())
    return extends


class _Plan:
    def __init__(self, pairs: Any, *, model: str, model_config: Any, out: Path | str, name: str | None,
                 extends: str | None, baseline: str | None, min_agreement: float, max_principles: int, per_pair: int,
                 max_candidates: int, holdout: float, similarity: float, merge: str, column: str | None,
                 split: str | None, limit: int | None, max_tokens: int, temperature: float, no_logprobs: bool,
                 seed: int, work_dir: Path | str | None):
        from cai_engine.api.constitution import load_constitution
        from cai_engine.engine.factory import load_model_config
        from cai_engine.induction.merge import MERGE_METHODS
        from cai_engine.induction.propose import ProposeSettings

        self.out = Path(out)
        if self.out.suffix.lower() not in (".yaml", ".yml"):
            raise CaiError(f"--out {self.out} must be a .yaml file (the induced constitution); the report goes beside it")
        if merge not in MERGE_METHODS:
            raise CaiError(f"--merge {merge!r}: use one of {', '.join(MERGE_METHODS)}")
        if not 0.0 < holdout < 1.0:
            raise CaiError(f"--holdout {holdout} must be between 0 and 1 (the share of pairs kept to test principles)")
        self.work = Path(work_dir) if work_dir is not None else self.out.parent / f"{self.out.stem}.induce"
        self.report_path = self.out.with_suffix(".md")
        self.config = load_model_config(model, Path(model_config) if model_config else None)
        self.parent = load_constitution(extends) if extends else None
        self.extends = _extends_ref(extends, self.out) if extends else None
        base = baseline if baseline is not None else (extends or "general")
        self.baseline = None if base.lower() == NONE else load_constitution(base)
        self.baseline_name = base
        self.name = name or self.out.stem.replace("_", "-")
        self.propose = ProposeSettings(per_pair=per_pair, max_tokens=max_tokens, temperature=temperature, seed=seed)
        self.specs, self.source = _specs(pairs, self.work, column, split, limit)
        self.train, self.held_out = split_pairs(self.specs, holdout, seed)
        self.min_agreement, self.max_principles, self.max_candidates = min_agreement, max_principles, max_candidates
        self.similarity, self.merge, self.logprobs, self.seed, self.holdout = similarity, merge, not no_logprobs, seed, holdout

    def fingerprint(self) -> dict[str, Any]:
        """What the records of the work folder depend on (selection knobs are left out: they reuse them)."""
        return {"pairs": self.source, "n": len(self.specs), "holdout": self.holdout, "seed": self.seed,
                "propose": self.propose.fingerprint(self.config.spec), "logprobs": self.logprobs}

    def settings(self) -> dict[str, Any]:
        return {"per_pair": self.propose.per_pair, "holdout": self.holdout, "similarity": self.similarity,
                "merge": self.merge, "max_candidates": self.max_candidates, "min_agreement": self.min_agreement,
                "max_principles": self.max_principles, "seed": self.seed, "logprobs": self.logprobs}


def _latest(path: Path, ids: set[str]) -> list[dict[str, Any]]:
    from cai_engine.engine.records import iter_latest

    return [r for r in iter_latest(path) if r["id"] in ids] if path.exists() else []


async def induce_in_session(session: Session, plan: _Plan, *, concurrency: int | None, retry_failed: bool,
                            progress: Callable[..., Any], new_settings: bool = False) -> dict[str, Any]:
    from cai_engine.engine.outsettings import claim
    from cai_engine.induction import merge as merging
    from cai_engine.induction import report as reporting
    from cai_engine.induction import score
    from cai_engine.induction.propose import proposal_id, run_propose
    from cai_engine.manifest import write_manifest
    from cai_engine.pipelines.judge import JudgeSettings

    engine = session.engine(plan.config)
    session.stamp["settings_id"] = claim(plan.work, "induce", plan.fingerprint(), new_settings=new_settings)
    conc = engine.runner_concurrency(concurrency)
    started = time.perf_counter()
    common = {"engine": engine, "concurrency": conc, "retry_failed": retry_failed}

    with progress("induce: propose principles", len(plan.train), [engine]) as bar:
        await run_propose(plan.train, settings=plan.propose, out_path=plan.work / "proposals.jsonl",
                          on_record=bar.record, on_skip=bar.skip, **common)
    wanted = {proposal_id(s, plan.propose, engine.spec) for s in plan.train}
    proposals = _latest(plan.work / "proposals.jsonl", wanted)
    ok = [r for r in proposals if r.get("status") == "ok"]
    candidates = merging.cluster(ok, plan.similarity)
    merge_info: dict[str, Any] = {}
    if plan.merge == "model" and len(candidates) > 1:
        candidates, merge_info = await merging.model_merge(candidates, engine, plan.work / "merges.jsonl", seed=plan.seed)
    if not candidates:
        raise CaiError(f"no principle could be read from {len(proposals)} proposal replies of {engine.spec} "
                       f"(see {plan.work / 'proposals.jsonl'}); use a stronger --model or raise --max-tokens")
    merging.assign_ids(candidates, plan.parent.principle_ids if plan.parent else ())
    tested = candidates[: plan.max_candidates]

    settings = {c.id: score.candidate_settings(c.principle(), logprobs=plan.logprobs, seed=plan.seed) for c in tested}
    items = [(settings[c.id], spec) for c in tested for spec in plan.held_out]
    with progress("induce: test candidates", len(items), [engine]) as bar:
        await score.judge_items(items, out_path=plan.work / "tests.jsonl", on_record=bar.record, on_skip=bar.skip, **common)
    by_id = {score.item_id(it, engine): it[0].constitution.principles[0].id for it in items}
    results: dict[str, list[dict[str, Any]]] = {c.id: [] for c in tested}
    for record in _latest(plan.work / "tests.jsonl", set(by_id)):
        results[by_id[record["id"]]].append(record)
    rows = [{**c.summary(), "figures": score.figures(results[c.id], c.id, seed=plan.seed)} for c in tested]
    kept, rejected = score.select(rows, min_agreement=plan.min_agreement, max_principles=plan.max_principles)
    rejected += [{**c.summary(), "figures": None, "kept": False, "reason": f"not tested (beyond --max-candidates {plan.max_candidates})"}
                 for c in candidates[plan.max_candidates:]]

    info = {"pairs": len(plan.specs), "labels": plan.source, "model": engine.spec, "held_out": len(plan.held_out),
            "proposal_pairs": len(plan.train), "report": plan.report_path.name}
    comparison = None
    written = None
    if kept:
        from cai_engine.api.constitution import load_constitution
        from cai_engine.atomic import write_text_atomic

        doc = reporting.constitution_doc(
            kept, name=plan.name, extends=plan.extends, parent_k=plan.parent.sampling.principles_per_judgment if plan.parent else None,
            parent_size=len(plan.parent.principles) if plan.parent else 0, info=info)
        plan.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(plan.out, reporting.constitution_yaml(doc, info))
        written = str(plan.out)
        induced = load_constitution(plan.out)  # what the user gets must load: checked here, not hoped for
        sides = {"induced": induced, **({"baseline": plan.baseline} if plan.baseline is not None else {})}
        judge_settings = {k: JudgeSettings(constitution=c, principles_per_judgment=c.sampling.principles_per_judgment,
                                           logprobs=plan.logprobs, seed=plan.seed) for k, c in sides.items()}
        items = [(s, spec) for s in judge_settings.values() for spec in plan.held_out]
        with progress("induce: evaluate on held-out pairs", len(items), [engine]) as bar:
            await score.judge_items(items, out_path=plan.work / "evaluation.jsonl", on_record=bar.record,
                                    on_skip=bar.skip, **common)
        records = {k: _latest(plan.work / "evaluation.jsonl", {score.item_id((s, spec), engine) for spec in plan.held_out})
                   for k, s in judge_settings.items()}
        comparison = score.compare(score.pair_scores(records["induced"]),
                                   score.pair_scores(records["baseline"]) if "baseline" in records else None, seed=plan.seed)

    parse: dict[str, int] = {}
    for r in ok:
        parse[r["parse"]] = parse.get(r["parse"], 0) + 1
    report = {
        "name": plan.name, "constitution": written, "labels": plan.source, "model": engine.spec,
        "baseline": f"{plan.baseline.name}@{plan.baseline.hash}" if plan.baseline is not None else None,
        "extends": plan.extends, "split": {"pairs": len(plan.specs), "proposal": len(plan.train), "held_out": len(plan.held_out)},
        "proposals": {"replies": len(ok), "failed": len(wanted) - len(ok),
                      "parse": parse, "principles": sum(len(r["principles"]) for r in ok)},
        "candidates": {"merged": len(candidates), "tested": len(tested), "model_merge": merge_info or None},
        "settings": plan.settings(), "kept": kept, "rejected": rejected, "comparison": comparison,
        "work_dir": str(plan.work),
    }
    report["paths"] = {k: str(v) for k, v in reporting.write_report(report, plan.report_path).items()}
    write_manifest(plan.work, "induce", {"labels": plan.source, "model": plan.config.model_dump(mode="json", exclude={"api_key_file"}),
                                         "settings": plan.settings(), "budget": session.ledger.snapshot(),
                                         "engines": [engine.stats.model_dump()], "wall_s": round(time.perf_counter() - started, 2)})
    if not kept:
        best = max((c["figures"]["agreement"] or 0.0 for c in rejected if c.get("figures")), default=None)
        raise CaiError(f"no candidate reached --min-agreement {plan.min_agreement} (best {best}); nothing written to "
                       f"{plan.out}. {plan.report_path} lists every candidate; label more pairs, use a stronger --model "
                       "or lower --min-agreement")
    return report


def _induce_call(pairs: Any, model: str, kwargs: dict[str, Any], progress: ProgressOption, concurrency: int | None,
                 retry_failed: bool, new_settings: bool) -> tuple[Callable[[Session], Any], Path]:
    plan = _Plan(pairs, model=model, **kwargs)

    def body(session: Session) -> Any:
        return induce_in_session(session, plan, concurrency=concurrency, retry_failed=retry_failed,
                                 progress=resolve_progress(progress), new_settings=new_settings)

    return body, plan.work


def induce(
    pairs: Any, *, model: str = "local/smollm2", model_config: Path | str | None = None, out: Path | str = "induced.yaml",
    name: str | None = None, extends: str | None = None, baseline: str | None = None, min_agreement: float = 0.6,
    max_principles: int = 5, per_pair: int = 3, max_candidates: int = 20, holdout: float = 0.5,
    similarity: float = 0.6, merge: str = "textsim", column: str | None = None, split: str | None = None,
    limit: int | None = None, concurrency: int | None = None, max_tokens: int = 400, temperature: float = 0.0,
    no_logprobs: bool = False, seed: int = 0, retry_failed: bool = False, no_cache: bool = False,
    max_cost: float | None = None, grace: float = 30.0, work_dir: Path | str | None = None,
    new_settings: bool = False, progress: ProgressOption = True,
) -> dict[str, Any]:
    """Induce a constitution from labelled pairs (``prompt``/``chosen``/``rejected`` rows: a file, an
    ``hf:`` spec or a list of dicts); writes ``out`` and its report, returns the report."""
    kwargs = dict(model_config=model_config, out=out, name=name, extends=extends, baseline=baseline,
                  min_agreement=min_agreement, max_principles=max_principles, per_pair=per_pair,
                  max_candidates=max_candidates, holdout=holdout, similarity=similarity, merge=merge, column=column,
                  split=split, limit=limit, max_tokens=max_tokens, temperature=temperature, no_logprobs=no_logprobs,
                  seed=seed, work_dir=work_dir)
    body, work = _induce_call(pairs, model, kwargs, progress, concurrency, retry_failed, new_settings)
    return run_sync("induce", body, out_dir=work, max_cost_usd=max_cost, use_cache=not no_cache, grace_s=grace)


async def ainduce(
    pairs: Any, *, model: str = "local/smollm2", model_config: Path | str | None = None, out: Path | str = "induced.yaml",
    name: str | None = None, extends: str | None = None, baseline: str | None = None, min_agreement: float = 0.6,
    max_principles: int = 5, per_pair: int = 3, max_candidates: int = 20, holdout: float = 0.5,
    similarity: float = 0.6, merge: str = "textsim", column: str | None = None, split: str | None = None,
    limit: int | None = None, concurrency: int | None = None, max_tokens: int = 400, temperature: float = 0.0,
    no_logprobs: bool = False, seed: int = 0, retry_failed: bool = False, no_cache: bool = False,
    max_cost: float | None = None, work_dir: Path | str | None = None, new_settings: bool = False,
    progress: ProgressOption = True,
) -> dict[str, Any]:
    """:func:`induce` inside a running event loop (``await cai_engine.ainduce(...)``)."""
    kwargs = dict(model_config=model_config, out=out, name=name, extends=extends, baseline=baseline,
                  min_agreement=min_agreement, max_principles=max_principles, per_pair=per_pair,
                  max_candidates=max_candidates, holdout=holdout, similarity=similarity, merge=merge, column=column,
                  split=split, limit=limit, max_tokens=max_tokens, temperature=temperature, no_logprobs=no_logprobs,
                  seed=seed, work_dir=work_dir)
    body, work = _induce_call(pairs, model, kwargs, progress, concurrency, retry_failed, new_settings)
    return await run_async(body, out_dir=work, max_cost_usd=max_cost, use_cache=not no_cache)


def audit(pairs_dir: Path | str, *, out: Path | str | None = None, min_pairs: int = 5, seed: int = 0) -> dict[str, Any]:
    """Audit AI-judged pairs (the ``--out`` dir of ``cai judge`` / ``cai judge-eval``, or its pairs.jsonl):
    per principle, agreement with the final label and with the other principles; writes audit.json/.md."""
    from cai_engine.engine.records import iter_latest
    from cai_engine.induction.audit import audit_records, write_audit

    source = Path(pairs_dir)
    records_file = source / "pairs.jsonl" if source.is_dir() else source
    if not records_file.exists():
        raise CaiError(f"{records_file} not found; pass the --out dir of `cai judge` or `cai judge-eval` (or its pairs.jsonl)")
    out_dir = Path(out) if out is not None else records_file.parent
    report = {"source": str(records_file), **audit_records(iter_latest(records_file), min_pairs=min_pairs, seed=seed)}
    if not report["pairs"]:
        raise CaiError(f"{records_file}: no judged pair with per-principle verdicts to audit")
    report["paths"] = {k: str(v) for k, v in write_audit(report, out_dir).items()}
    return report
