"""The Anthropic Messages API wire format, shared by the backend and the Message Batches adapter.

Our OpenAI-shaped request maps onto it: system turns go to the top-level ``system``,
``max_tokens`` is always sent (the API requires it), ``stop`` becomes ``stop_sequences``,
temperature is clamped to the API's 0..1. Stop reasons map onto ours; input usage includes
prompt-cache reads and writes, which :class:`~cai_engine.models.base.Usage` also keeps apart.
``breakpoints`` (indices into the request's messages) put ``cache_control`` on those blocks: a
system message's index marks the top-level system block.
"""

from __future__ import annotations

from typing import Any, Collection

from cai_engine.models.base import ChatRequest, Choice, Usage
from cai_engine.models.hosted import get_field, token_count, usage_from
from cai_engine.models.retryable import MalformedResponse

STOP_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
    "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop",
}
INPUT_USAGE_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
EPHEMERAL = {"type": "ephemeral"}


def _marked(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "cache_control": EPHEMERAL}]


def request_body(model_name: str, request: ChatRequest, breakpoints: Collection[int] = ()) -> dict[str, Any]:
    """Messages API JSON parameters for one choice of ``request`` (also a batch item's ``params``)."""
    p = request.params
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    messages: list[dict[str, Any]] = []
    cache_system = False
    for i, m in enumerate(request.messages):
        if m.role == "system":
            cache_system = cache_system or i in breakpoints
        elif i in breakpoints:
            messages.append({"role": m.role, "content": _marked(m.content)})
        else:
            messages.append({"role": m.role, "content": m.content})
    body: dict[str, Any] = {
        "model": model_name,
        "max_tokens": p.max_tokens,
        "messages": messages,
        "temperature": min(p.temperature, 1.0),  # the API's range is 0..1
    }
    if system:
        body["system"] = _marked(system) if cache_system else system
    if p.top_p < 1.0:
        body["top_p"] = p.top_p
    if p.stop:
        body["stop_sequences"] = p.stop
    return body


def parse_message(message: Any) -> tuple[Choice, Usage]:
    """One Messages API message (SDK object or dict from batch results) as a choice + usage."""
    content = get_field(message, "content")
    if content is None:
        raise MalformedResponse("message without content")
    text = "".join(get_field(b, "text") or "" for b in content if get_field(b, "type") == "text")
    reason = get_field(message, "stop_reason")
    raw = get_field(message, "usage")
    usage = usage_from(raw, INPUT_USAGE_FIELDS, ("output_tokens",),
                       cached=token_count(raw, "cache_read_input_tokens"),
                       written=token_count(raw, "cache_creation_input_tokens"))
    return Choice(text=text, finish_reason=STOP_REASONS.get(reason, reason)), usage
