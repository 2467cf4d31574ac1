"""Backends by provider name, imported lazily so `cai --help` never loads torch or an SDK.

Built-in providers map to ``module:factory`` strings; outside packages can call :func:`register`.
A factory takes ``(model_name, ModelConfig)`` and returns a :class:`ChatModel`.
"""

from __future__ import annotations

import importlib
from typing import Callable

from cai_engine.errors import ModelError
from cai_engine.models.base import ChatModel, ModelConfig, parse_spec

Factory = Callable[[str, ModelConfig], ChatModel]

_BUILTIN: dict[str, str] = {
    "local": "cai_engine.models.local:create",
    "mock": "cai_engine.models.mock:create",
    "openai": "cai_engine.models.openai_backend:create",
    "anthropic": "cai_engine.models.anthropic_backend:create",
    "vllm": "cai_engine.models.vllm_backend:create",
}
_REGISTERED: dict[str, Factory] = {}


def register(provider: str) -> Callable[[Factory], Factory]:
    """Decorator: make ``provider/...`` specs resolve to this factory."""

    def wrap(factory: Factory) -> Factory:
        _REGISTERED[provider] = factory
        return factory

    return wrap


def providers() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def _factory(provider: str) -> Factory:
    if provider in _REGISTERED:
        return _REGISTERED[provider]
    target = _BUILTIN.get(provider)
    if target is None:
        raise ModelError(f"unknown model provider {provider!r}; known providers: {', '.join(providers())}")
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def create_model(spec_or_config: str | ModelConfig) -> ChatModel:
    """Build the backend for a spec string or a full :class:`ModelConfig`."""
    config = spec_or_config if isinstance(spec_or_config, ModelConfig) else ModelConfig(spec=spec_or_config)
    provider, name = parse_spec(config.spec)
    return _factory(provider)(name, config)
