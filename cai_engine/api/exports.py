"""``export_sft`` / ``export_dpo`` / ``export_reward`` and ``train`` / ``run``: thin, documented
entry points over the exporters, the TRL stages and the run orchestrator (the CLI calls the same)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _loaded(out: Path) -> Any:
    import datasets

    return datasets.load_from_disk(str(out / "dataset"))


def export_sft(source: Path | str, *, out: Path | str, with_system: bool = False, drop_unchanged: bool = False,
               keep_truncated: bool = False, all_settings: bool = False) -> Any:
    """Revision records -> SFT dataset (``messages``) in ``out``; returns the ``datasets.Dataset``.

    Truncated records and records of other settings are dropped unless kept (``out/quality.json`` counts them)."""
    from cai_engine.exports.sft import export_sft as run_export

    run_export(Path(source), Path(out), with_system=with_system, drop_unchanged=drop_unchanged,
               keep_truncated=keep_truncated, all_settings=all_settings)
    return _loaded(Path(out))


def _preference(kind: str, source: Path | str, out: Path | str, min_confidence: float | None, drop_inconsistent: bool,
                length_balanced: bool, keep_truncated: bool, all_settings: bool) -> Any:
    from cai_engine.exports.preference import export_preference

    export_preference(Path(source), Path(out), kind=kind, min_confidence=min_confidence,  # type: ignore[arg-type]
                      drop_inconsistent=drop_inconsistent, length_balanced=length_balanced,
                      keep_truncated=keep_truncated, all_settings=all_settings)
    return _loaded(Path(out))


def export_dpo(source: Path | str, *, out: Path | str, min_confidence: float | None = None, drop_inconsistent: bool = True,
               length_balanced: bool = False, keep_truncated: bool = False, all_settings: bool = False) -> Any:
    """Pair records -> DPO dataset (``prompt``/``chosen``/``rejected``) in ``out``; returns it.

    ``min_confidence`` None: the default floor (0.6); inconsistent and truncated pairs are dropped unless kept."""
    return _preference("dpo", source, out, min_confidence, drop_inconsistent, length_balanced, keep_truncated, all_settings)


def export_reward(source: Path | str, *, out: Path | str, min_confidence: float | None = None, drop_inconsistent: bool = True,
                  length_balanced: bool = False, keep_truncated: bool = False, all_settings: bool = False) -> Any:
    """Pair records -> reward-model dataset (with ``margin``) in ``out``; returns it (filters as :func:`export_dpo`)."""
    return _preference("reward", source, out, min_confidence, drop_inconsistent, length_balanced, keep_truncated, all_settings)


def train(stage: str, config: Path | str | dict[str, Any] | None = None, **fields: Any) -> Any:
    """Run one TRL stage (sft, reward, dpo, ipo, orpo, kto, ppo, grpo, rloo); ``config`` is a YAML
    path or a dict of the stage's fields, ``fields`` override it. Returns the stage's result
    (``model_dir``, ``metrics_path``, ``final_metrics``)."""
    from cai_engine.training import load_stage_config, run_stage

    if isinstance(config, dict):
        fields = {**config, **fields}
        config = None
    return run_stage(stage, load_stage_config(stage, config, [], **fields))


def run(run_config: Path | str | dict[str, Any], *, from_stage: str | None = None, echo: Any = print,
        out_dir: Path | str | None = None, progress: Any = True) -> Path:
    """Run every stage of a run config; returns the run dir. ``run_config`` is a ``runs/NAME.yaml``
    path, or a dict of its fields: that is written to ``.NAME.run.yaml`` in the current folder, so
    its relative paths (prompts, constitution) resolve against the current folder and the outputs
    go to ``runs/NAME`` there, as for a YAML file kept in the working folder."""
    import yaml

    from cai_engine.runs.orchestrator import run as run_stages

    if isinstance(run_config, dict):
        name = str(run_config.get("name", "run"))
        path = Path.cwd() / f".{name}.run.yaml"
        data = {"out_dir": f"runs/{name}", **run_config}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        run_config = path
    from cai_engine.api.progress import resolve_progress

    return run_stages(Path(run_config), from_stage=from_stage, echo=echo,
                      out_dir=Path(out_dir) if out_dir is not None else None, progress=resolve_progress(progress))
