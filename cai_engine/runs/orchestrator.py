"""Drive a run: for each stage, skip it when done for the same inputs, else run (or resume) it.

``runs/NAME/`` gets ``run.yaml`` (the resolved config; model configs hold key *variable names*,
never keys), ``state.json`` (stage fingerprints and outputs), ``manifest.json`` (versions, hashes,
counts, tokens, cost, wall time per stage) and ``report.md`` with its plots.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from cai_engine.constitution import load_constitution
from cai_engine.engine.outlock import LOCK_FILE, OutLock
from cai_engine.engine.progress import ProgressFactory, no_progress
from cai_engine.engine.records import stable_hash
from cai_engine.engine.session import Session
from cai_engine.errors import CaiError
from cai_engine.manifest import write_manifest
from cai_engine.models.keys import redact, redact_text
from cai_engine.runs import stages as S
from cai_engine.runs.config import PREFERENCE_STAGES, RL_STAGES, RunConfig, load_run_config
from cai_engine.runs.state import RunState
from cai_engine.yamlfile import read_mapping

# An interrupted attempt resumes: generation stages from their record stores, training stages from
# their newest checkpoint (``save_steps``), except PPO, which TRL cannot resume and so restarts.
RESTARTING_STAGES = ("ppo",)


def _file_hash(path: Path | str | None) -> str | None:
    if path is None or isinstance(path, str) or not path.exists():  # str: a Hub dataset id
        return None
    if path.is_dir():
        return stable_hash(sorted((str(p.relative_to(path)), p.stat().st_size) for p in path.rglob("*") if p.is_file()))
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def stage_fingerprint(config: RunConfig, constitution_hash: str, stage: str, upstream: str) -> str:
    """Hash of what determines a stage's outputs: its settings, the shared inputs, and upstream stages."""
    settings: dict[str, Any] = {
        "revise": config.revise.model_dump(mode="json"),
        "pairs": config.pairs.model_dump(mode="json"),
        "eval": config.eval.model_dump(mode="json"),
    }.get(stage, config.train.get(stage, {}))
    return stable_hash(
        {
            "stage": stage,
            "settings": settings,
            "upstream": upstream,
            "constitution": constitution_hash,
            "prompts": config.prompts.model_dump(mode="json") | {"train_hash": _file_hash(config.prompts.train)},
            "heldout_hash": _file_hash(config.prompts.heldout) if stage == "eval" else None,
            "models": config.models.model_dump(mode="json", include={"policy": {"spec"}, "judge": {"spec"}}),
            "generation": config.generation.model_dump(mode="json", exclude={"concurrency"}),
        }
    )


async def _run_stage(ctx: S.RunContext, stage: str) -> dict[str, Any]:
    if stage == "revise":
        return await S.stage_revise(ctx)
    if stage == "sft":
        return await S.stage_sft(ctx)
    if stage == "pairs":
        return await S.stage_pairs(ctx)
    if stage == "reward":
        return await S.stage_reward(ctx)
    if stage in PREFERENCE_STAGES:
        return await S.stage_preference(ctx, stage)
    if stage in RL_STAGES:
        return await S.stage_rl(ctx, stage)
    if stage == "eval":
        return await S.stage_eval(ctx)
    raise CaiError(f"unknown stage {stage!r}")


def _check_inputs(config: RunConfig, config_path: Path) -> None:
    """Fail before any stage starts (and before any model loads) when an input file is missing."""
    for field, path in (("prompts.train", config.prompts.train), ("prompts.heldout", config.prompts.heldout)):
        if path is not None and not isinstance(path, str) and not path.exists():  # str: a Hub dataset id
            raise CaiError(f"{config_path}: {field}: {path} not found (relative paths are relative to the config file)")


# What a run writes into its dir before ``state.json`` exists: a first attempt stopped that early.
_EARLY_FILES = frozenset({LOCK_FILE, "run.yaml", "state.json.tmp"})


def _check_run_dir(run_dir: Path, config_path: Path) -> None:
    """Refuse a run dir that is an existing folder of other things (``name: .``, a ``cai revise``
    OUT, a folder of user files): stages replace their folders and ``run.yaml``/``manifest.json``/
    ``report.md``/``plots``, so only a new or empty folder, or an earlier run of this run (it has
    ``state.json``), is safe. Checked before anything is written or deleted."""
    where = f"{config_path}: name/out_dir resolves to {run_dir.resolve()}"
    if run_dir.exists() and not run_dir.is_dir():
        raise CaiError(f"{where}, which is a file; set name or out_dir to a new folder")
    if config_path.resolve() == (run_dir / "run.yaml").resolve():
        raise CaiError(f"{where}, where the run writes run.yaml over this config file; "
                       "set name or out_dir to a new folder")
    if not run_dir.is_dir() or (run_dir / "state.json").is_file():
        return
    others = sorted(p.name for p in run_dir.iterdir() if p.name not in _EARLY_FILES)
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise CaiError(f"{where}, a folder that is not a run dir (no state.json) and holds {shown}; "
                       "the run would overwrite or delete them: set name or out_dir to a new folder")


def run(config_path: Path, *, from_stage: str | None = None, echo: Any = print, out_dir: Path | None = None,
        progress: ProgressFactory | None = None) -> Path:
    """Run every stage of ``config_path`` in order; returns the run dir.

    ``out_dir`` replaces the config's run dir (``cai demo --out``); ``progress`` is the caller's
    progress factory (the CLI's bar), silent when ``None``: nothing in ``runs`` prints on its own
    except through ``echo``.
    """
    config, run_dir = load_run_config(config_path, out_dir)
    if from_stage is not None and from_stage not in config.stages:
        raise CaiError(f"--from {from_stage}: not a stage of this run ({', '.join(config.stages)})")
    constitution = load_constitution(config.constitution)
    _check_inputs(config, config_path)
    _check_run_dir(run_dir, config_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    with OutLock(run_dir):
        return _run_stages(config, config_path, run_dir, constitution, from_stage, echo, progress)


def _run_stages(config: RunConfig, config_path: Path, run_dir: Path, constitution: Any, from_stage: str | None,
                echo: Any, progress: ProgressFactory | None = None) -> Path:
    """The stages of one run, in order, under the run dir's lock."""
    # The resolved config, credentials out of URLs (base_urls may be https://user:pass@host/v1).
    (run_dir / "run.yaml").write_text(yaml.safe_dump(redact(config.model_dump(mode="json")), sort_keys=False))
    state = RunState.load(run_dir)
    ctx = S.RunContext(config=config, run_dir=run_dir, constitution=constitution, progress=progress or no_progress)
    upstream = ""
    forced = False
    for stage in config.stages:
        fingerprint = stage_fingerprint(config, constitution.hash, stage, upstream)
        upstream = fingerprint
        forced = forced or stage == from_stage
        if not forced and state.is_done(stage, fingerprint):
            ctx.outputs[stage] = state.stages[stage].outputs
            echo(f"{stage}: up to date, skipped")
            continue
        resuming = state.begin(stage, fingerprint, ctx.stage_dir(stage), resumable=stage not in RESTARTING_STAGES and not forced)
        state.save(run_dir)
        echo(f"{stage}: {'resuming' if resuming else 'running'}")
        started = time.perf_counter()
        try:
            # One Session per stage (its own writer, cache and graceful stop), all charging the run
            # dir's ledger, so max_cost_usd holds for the whole run across stages and reruns.
            session = Session(run_dir, max_cost_usd=config.max_cost_usd, use_cache=config.use_cache, lock=False)
            outputs = session.run(lambda _session: _run_stage(ctx, stage))
        except BaseException as exc:
            entry = state.stages[stage]
            entry.status = "failed" if isinstance(exc, Exception) else "running"
            entry.error = redact_text(str(exc))[:500]
            state.save(run_dir)
            raise
        outputs = {k: str(v) if isinstance(v, Path) else v for k, v in outputs.items()}
        wall = round(time.perf_counter() - started, 2)
        entry = state.stages[stage]
        entry.status, entry.outputs, entry.wall_s = "done", outputs, wall
        state.save(run_dir)
        ctx.outputs[stage] = outputs
        write_manifest(
            run_dir,
            stage,
            {
                "fingerprint": fingerprint,
                "wall_s": wall,
                "constitution": {"name": constitution.name, "hash": constitution.hash},
                "inputs": {"prompts": str(config.prompts.train), "prompts_hash": _file_hash(config.prompts.train)},
                "outputs": outputs,
                "engine": ctx.engine_stats.get(stage),
            },
        )
        echo(f"{stage}: done in {wall:.1f}s")
    from cai_engine.runs.report import write_report

    report = write_report(run_dir)
    echo(f"report: {report}")
    return run_dir


def status(run_dir: Path) -> list[tuple[str, str, str]]:
    """``(stage, status, detail)`` rows for ``cai status``."""
    if not (run_dir / "state.json").exists():
        raise CaiError(f"{run_dir} has no state.json: not a run dir, or the run has not started (cai run runs/NAME.yaml)")
    config = read_mapping(run_dir / "run.yaml", "run config").data if (run_dir / "run.yaml").exists() else {}
    state = RunState.load(run_dir)
    rows = []
    for stage in config.get("stages", list(state.stages)):
        entry = state.stages.get(stage)
        if entry is None:
            rows.append((stage, "pending", ""))
            continue
        detail = f"{entry.wall_s:.1f}s" if entry.wall_s is not None else ""
        if entry.status == "done" and "rows" in entry.outputs:
            detail += f", {entry.outputs['rows']} rows"
        if entry.error:
            detail += f" ({entry.error[:120]})"
        rows.append((stage, entry.status, detail.strip(", ")))
    return rows
