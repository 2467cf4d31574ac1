"""The contract between the engine's batch coordinator and a provider's Batch API adapter.

Adapters (``openai_batch``, ``anthropic_batch``) only speak the provider API; queuing, persisting
batch ids, polling cadence, resume and fallback live in :mod:`cai_engine.engine.batch_api`.
A backend hands out its adapter through ``ChatModel.batch_adapter()``; an adapter is built from
the backend's client, model name and spec, and never imports the backend module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cai_engine.models.base import ChatRequest, ChatResponse


@dataclass(frozen=True)
class BatchStatus:
    """``done``: results can be fetched (possibly partial, e.g. an expired batch)."""

    done: bool
    state: str
    detail: str = ""


#: Per custom_id: the response, or an error message (the item is then retried one by one).
BatchResults = dict[str, "ChatResponse | str"]


@runtime_checkable
class BatchAdapter(Protocol):
    """One provider's Batch API for one model. Calls raise the SDK's exceptions (the engine's retry
    policy classifies them with the backend's ``retry_classifier()``)."""

    provider: str

    def supports(self, request: ChatRequest) -> bool:
        """Whether this request can go into a batch (e.g. Anthropic batches cannot do n > 1)."""
        ...

    async def submit(self, items: list[tuple[str, ChatRequest]]) -> str:
        """Create one batch of ``(custom_id, request)`` items; return the provider's batch id."""
        ...

    async def status(self, batch_id: str) -> BatchStatus: ...

    async def results(self, batch_id: str) -> BatchResults: ...
