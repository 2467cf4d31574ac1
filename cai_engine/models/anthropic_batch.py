"""Anthropic Message Batches adapter: create with custom ids, poll ``processing_status``, stream results."""

from __future__ import annotations

from typing import Any

from cai_engine.models.anthropic_wire import parse_message, request_body
from cai_engine.models.base import ChatRequest, ChatResponse
from cai_engine.models.batch_adapter import BatchResults, BatchStatus


class AnthropicBatch:
    provider = "anthropic"

    def __init__(self, client: Any, model_name: str, spec: str):
        """``client``: an ``anthropic.AsyncAnthropic``; ``model_name`` goes into each request,
        ``spec`` into each response."""
        self.client = client
        self.model_name = model_name
        self.spec = spec

    def supports(self, request: ChatRequest) -> bool:
        return request.params.n == 1  # one message per batch item

    async def submit(self, items: list[tuple[str, ChatRequest]]) -> str:
        requests = [{"custom_id": cid, "params": request_body(self.model_name, req)} for cid, req in items]
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
                out[entry.custom_id] = ChatResponse(choices=[choice], usage=usage, model=self.spec)
            else:
                err = getattr(result, "error", None)
                inner = getattr(err, "error", None)
                out[entry.custom_id] = f"batch item {result.type}: {getattr(inner, 'message', '') or ''}"
        return out
