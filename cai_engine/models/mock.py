"""``mock/NAME``: a real provider with scripted, deterministic replies, for fast pipeline tests.

It never stands in for the embedded model where model behaviour matters. Replies come from, in order:
a queue filled with :meth:`MockModel.enqueue`, a ``responder`` callable, or an echo of the last
user message. ``mock/slow`` waits 50 ms per call; ``mock/fail`` raises on every call, for failure-path tests.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable

from cai_engine.models.base import BaseChatModel, ChatRequest, ChatResponse, Choice, ModelConfig, Usage

Responder = Callable[[ChatRequest], str]


class MockModel(BaseChatModel):
    """Fingerprint = spec; no retries (a failure is final); no Batch API."""

    def __init__(self, name: str, config: ModelConfig, responder: Responder | None = None, delay_s: float = 0.0):
        self.spec = f"mock/{name}"
        self.name = name
        self.config = config
        self.responder = responder
        self.delay_s = delay_s
        self.calls: list[ChatRequest] = []
        self._queue: deque[str] = deque()

    def enqueue(self, *replies: str) -> None:
        self._queue.extend(replies)

    async def generate(self, request: ChatRequest) -> ChatResponse:
        self.calls.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.name == "fail":
            raise RuntimeError("mock/fail always fails")
        texts = [self._reply(request) for _ in range(request.params.n)]
        words_in = sum(len(m.content.split()) for m in request.messages)
        return ChatResponse(
            choices=[Choice(text=t, finish_reason="stop") for t in texts],
            usage=Usage(input_tokens=words_in, output_tokens=sum(len(t.split()) for t in texts)),
            model=self.spec,
        )

    def _reply(self, request: ChatRequest) -> str:
        if self._queue:
            return self._queue.popleft()
        if self.responder is not None:
            return self.responder(request)
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        return f"[{self.name}] reply to: {last_user[:80]}"


def create(name: str, config: ModelConfig) -> MockModel:
    """``mock/slow`` answers after 50 ms (for kill/resume tests); other names answer at once."""
    return MockModel(name, config, delay_s=0.05 if name == "slow" else 0.0)
