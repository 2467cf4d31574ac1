"""Anthropic Message Batches adapter: create with custom ids, poll ``processing_status``, stream results."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cai_engine.models.anthropic_backend import parse_message, request_body
from cai_engine.models.base import ChatRequest, ChatResponse
from cai_engine.models.batching import BatchResults, BatchStatus

if TYPE_CHECKING:
    from cai_engine.models.anthropic_backend import AnthropicBackend


class AnthropicBatch:
    provider = "anthropic"

    def __init__(self, backend: "AnthropicBackend"):
        self.backend = backend
        self.client: Any = backend.pool.endpoints[0].client

    def supports(self, request: ChatRequest) -> bool:
        return request.params.n == 1  # one message per batch item

    async def submit(self, items: list[tuple[str, ChatRequest]]) -> str:
        requests = [{"custom_id": cid, "params": request_body(self.backend.name, req)} for cid, req in items]
        batch = await self.client.messages.batches.create(requests=requests)
        return str(batch.id)

    async def status(self, batch_id: str) -> BatchStatus:
        batch = await self.client.messages.batches.retrieve(batch_id)
        c = batch.request_counts
        detail = f"{c.succeeded} ok, {c.errored} errored, {c.processing} processing" if c else ""
        return BatchStatus(done=batch.processing_status == "ended", state=str(batch.processing_status), detail=detail)

    async def results(self, batch_id: str) -> BatchResults:
        out: BatchResults = {}
        async for entry in await self.client.messages.batches.results(batch_id):
            result = entry.result
            if result.type == "succeeded":
                try:
                    choice, usage = parse_message(result.message)
                except ValueError as exc:
                    out[entry.custom_id] = f"unusable batch result: {exc}"
                    continue
                out[entry.custom_id] = ChatResponse(choices=[choice], usage=usage, model=self.backend.spec)
            else:
                err = getattr(result, "error", None)
                inner = getattr(err, "error", None)
                out[entry.custom_id] = f"batch item {result.type}: {getattr(inner, 'message', '') or ''}"
        return out
