"""``evaluate`` / ``aevaluate``: the trained model against its base under the judge.

Keyword names are ``EvalConfig``'s fields (``cai eval``'s options are derived from the same model);
``config=`` takes a whole :class:`~cai_engine.evaluation.config.EvalConfig` or dict instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cai_engine.api.loop import run_async, run_sync
from cai_engine.api.progress import ProgressOption, resolve_progress
from cai_engine.errors import ConfigError


def eval_config(config: Any = None, **fields: Any) -> Any:
    """An :class:`EvalConfig` from a config object/dict plus keyword overrides; errors in one line."""
    from pydantic import ValidationError

    from cai_engine.evaluation.config import EvalConfig

    base = config.model_dump() if isinstance(config, EvalConfig) else dict(config or {})
    base.update({k: v for k, v in fields.items() if v is not None})
    try:
        return EvalConfig.model_validate(base)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


async def _evaluate_body(cfg: Any, out_dir: Path, progress: ProgressOption, ray: Any) -> Any:
    """The evaluation and its manifest entry (settings, engines, the Ray runs, wall time)."""
    import time

    from cai_engine.evaluation.runner import evaluate_async
    from cai_engine.executors import executor_for
    from cai_engine.manifest import write_manifest

    executor = executor_for(ray)
    started = time.perf_counter()
    report = await evaluate_async(cfg, out_dir, progress=resolve_progress(progress), executor=executor)
    write_manifest(out_dir, "eval", {"config": cfg.model_dump(mode="json"), "engines": report.engines,
                                     **({"ray": executor.reports} if executor is not None else {}),
                                     "wall_s": round(time.perf_counter() - started, 2)})
    return report


def evaluate(out: Path | str, config: Any = None, *, progress: ProgressOption = True, ray: Any = None, **fields: Any) -> Any:
    """Run (or resume) the evaluation into ``out``; returns the :class:`EvalReport` (also ``OUT/eval.json``).

    ``ray``: answer and judge on Ray workers (True, a dict of
    :class:`~cai_engine.executors.settings.RaySettings` fields, or one), as for :func:`revise`.

    Example: ``evaluate("out/eval", model="local/runs/demo/dpo/model", base_model="local/smollm2", limit=20)``.
    """
    cfg = eval_config(config, **fields)
    out_dir = Path(out)
    return run_sync("evaluate", lambda _s: _evaluate_body(cfg, out_dir, progress, ray),
                    out_dir=out_dir, max_cost_usd=cfg.max_cost_usd, use_cache=cfg.use_cache)


async def aevaluate(out: Path | str, config: Any = None, *, progress: ProgressOption = True, ray: Any = None,
                    **fields: Any) -> Any:
    """:func:`evaluate` inside a running event loop (``await cai_engine.aevaluate(...)``)."""
    cfg = eval_config(config, **fields)
    out_dir = Path(out)
    return await run_async(lambda _s: _evaluate_body(cfg, out_dir, progress, ray),
                           out_dir=out_dir, max_cost_usd=cfg.max_cost_usd, use_cache=cfg.use_cache)
