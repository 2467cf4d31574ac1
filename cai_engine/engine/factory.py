"""Build a fully layered :class:`Engine` from CLI/YAML settings: the one place commands call.

Hosted-backend work layers the response cache, retries, rate limits, budget and Batch APIs in here;
callers only pass the user's choices.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from cai_engine.engine.engine import Engine, EngineOptions
from cai_engine.errors import ConfigError
from cai_engine.models.base import ModelConfig
from cai_engine.yamlfile import read_mapping, validation_error


def load_model_config(spec: str | None, config_file: Path | None = None) -> ModelConfig:
    """A :class:`ModelConfig` from an optional YAML file, with ``spec`` (from ``--model``) taking precedence."""
    data: dict[str, object] = {}
    doc = None
    if config_file is not None:
        doc = read_mapping(config_file, "model config")
        data.update(doc.data)
    if spec:
        data["spec"] = spec
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, doc, None if doc is not None else "--model") from None


def build_engine(
    config: ModelConfig,
    *,
    use_cache: bool = True,
    max_cost_usd: float | None = None,
    batch_dir: Path | None = None,
    cache_path: Path | None = None,
    options: EngineOptions | None = None,
) -> Engine:
    """A stand-alone engine for one model (scripts, tests, GRPO's judge reward): its own budget,
    its own cache connection. Commands use :meth:`cai_engine.engine.session.Session.engine`
    instead, so that every engine of the command shares one ledger, cache and writer.

    ``use_cache``: the SQLite response cache under ``cai_home()`` (or ``cache_path``). ``mock/``
    models are not cached unless a ``cache_path`` is given: they exist for tests, which must not
    fill the user's cache. ``max_cost_usd``: ``generate`` raises
    :class:`~cai_engine.errors.BudgetExceeded` once spent >= budget. ``batch_dir``: route requests
    through the provider's Batch API, persisting batch ids there (use
    :attr:`Engine.suggested_concurrency` for the runner). Key errors surface here, as one line.
    """
    from cai_engine.engine.cache import ResponseCache

    if max_cost_usd is not None and max_cost_usd <= 0:
        raise ConfigError(f"--max-cost must be > 0 USD, got {max_cost_usd}")
    cacheable = config.provider != "mock" or cache_path is not None
    cache = ResponseCache(cache_path) if use_cache and cacheable else None
    try:
        return Engine.from_config(config, cache=cache, owns_cache=True, max_cost_usd=max_cost_usd,
                                  batch_dir=batch_dir, options=options)
    except BaseException:
        if cache is not None:
            cache.close()
        raise
