"""Model backends behind one :class:`~cai_engine.models.base.ChatModel` protocol."""

from cai_engine.models.base import (
    BaseChatModel,
    ChatModel,
    ChatRequest,
    ChatResponse,
    Choice,
    Message,
    ModelConfig,
    SamplingParams,
    TokenLogprob,
    Usage,
    parse_spec,
)
from cai_engine.models.registry import create_model, register

__all__ = [
    "BaseChatModel", "ChatModel", "ChatRequest", "ChatResponse", "Choice", "Message", "ModelConfig", "SamplingParams",
    "TokenLogprob", "Usage", "create_model", "parse_spec", "register",
]
