"""OpenAI Batch API adapter: upload a JSONL of chat-completion requests, create, poll, download.

Half price and a 24 h window; the engine's batch coordinator decides when to submit and resumes
polling after a restart from the batch ids it persisted.
"""

from __future__ import annotations

import json
from typing import Any

from cai_engine.models.base import ChatRequest
from cai_engine.models.batch_adapter import BatchResults, BatchStatus
from cai_engine.models.openai_wire import parse_completion, request_body

_DONE = {"completed", "failed", "expired", "cancelled"}


class OpenAIBatch:
    provider = "openai"

    def __init__(self, client: Any, model_name: str, spec: str):
        """``client``: an ``openai.AsyncOpenAI``; ``model_name`` goes into each request body,
        ``spec`` into each response."""
        self.client = client
        self.model_name = model_name
        self.spec = spec

    def supports(self, request: ChatRequest) -> bool:
        return True

    async def submit(self, items: list[tuple[str, ChatRequest]]) -> str:
        lines = [
            json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                        "body": request_body(self.model_name, req)}, ensure_ascii=False)
            for cid, req in items
        ]
        data = ("\n".join(lines) + "\n").encode("utf-8")
        uploaded = await self.client.files.create(file=("cai-batch.jsonl", data, "application/jsonl"),
                                                  purpose="batch")
        batch = await self.client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h",
            metadata={"source": "cai-engine", "items": str(len(items))},
        )
        return str(batch.id)

    async def status(self, batch_id: str) -> BatchStatus:
        batch = await self.client.batches.retrieve(batch_id)
        counts = batch.request_counts
        detail = f"{counts.completed}/{counts.total} done, {counts.failed} failed" if counts else ""
        return BatchStatus(done=batch.status in _DONE, state=str(batch.status), detail=detail)

    async def results(self, batch_id: str) -> BatchResults:
        batch = await self.client.batches.retrieve(batch_id)
        out: BatchResults = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self.client.files.content(file_id)
            for line in content.text.splitlines():
                if not line.strip():
                    continue
                row = json.loads(line)
                cid = row.get("custom_id")
                response = row.get("response") or {}
                if response.get("status_code") == 200 and response.get("body"):
                    try:
                        out[cid] = parse_completion(response["body"], self.spec)
                    except ValueError as exc:
                        out[cid] = f"unusable batch result: {exc}"
                else:
                    err = row.get("error") or (response.get("body") or {}).get("error") or {}
                    out[cid] = f"batch item failed: {err.get('code', response.get('status_code'))}: {err.get('message', '')}"
        return out
