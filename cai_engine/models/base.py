"""The one interface every backend implements, and the data that crosses it.

Pipelines build a :class:`ChatRequest`, hand it to the engine, and get a :class:`ChatResponse`
back; they never import a backend. Backends never know about constitutions.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from cai_engine.models.batch_adapter import BatchAdapter
    from cai_engine.models.retryable import RetryDecision


class Message(BaseModel):
    """One chat turn in the OpenAI-style role/content shape (also TRL's conversational format)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class SamplingParams(BaseModel):
    """Sampling settings for one request. Backends map them onto their own APIs."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int = Field(256, ge=1, description="Upper bound on generated tokens per choice.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 means greedy decoding.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    seed: int | None = Field(None, description="Per-request seed; makes sampling reproducible where the backend allows.")
    stop: list[str] | None = Field(None, description="Stop strings; the text is cut before the first one.")
    n: int = Field(1, ge=1, le=64, description="Number of choices to sample for the same messages.")
    logprobs: bool = Field(False, description="Return log-probabilities of generated tokens.")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="Alternatives per position (needs logprobs).")


class ChatRequest(BaseModel):
    """Messages plus sampling parameters: everything that determines a response (the cache key)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message]
    params: SamplingParams = Field(default_factory=SamplingParams)


class TokenLogprob(BaseModel):
    """Log-probability of one generated token and of the most likely alternatives at that position."""

    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


class Choice(BaseModel):
    text: str
    finish_reason: str | None = Field(None, description="'stop', 'length', 'error' ... as the backend reports it.")
    logprobs: list[TokenLogprob] | None = None


class Usage(BaseModel):
    """Tokens of one response (or a sum of them).

    ``input_tokens`` is every prompt token, cached or not (OpenAI's ``prompt_tokens``; Anthropic's
    ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens``). Of those,
    ``cached_input_tokens`` were read from the provider's prompt cache (billed at the cached price)
    and ``cache_write_input_tokens`` were written to it (Anthropic bills writes above the input price).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_input_tokens=self.cache_write_input_tokens + other.cache_write_input_tokens,
        )


class ChatResponse(BaseModel):
    choices: list[Choice]
    usage: Usage = Field(default_factory=Usage)
    model: str = Field(description="The model spec that answered.")
    latency_s: float = 0.0
    cached: bool = False

    @property
    def text(self) -> str:
        """Text of the first choice: what most pipeline steps need."""
        return self.choices[0].text if self.choices else ""


class Prices(BaseModel):
    """USD per million tokens. The cache prices default to the input price (no discount assumed)."""

    model_config = ConfigDict(extra="forbid")

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float | None = Field(
        None, ge=0, description="Input tokens read from the provider's prompt cache (None: the input price).")
    cache_write_per_mtok: float | None = Field(
        None, ge=0, description="Input tokens written to the prompt cache (Anthropic; None: the input price).")

    def cost(self, usage: "Usage") -> float:
        """USD for ``usage``: uncached input, cache reads, cache writes and output at their prices."""
        cached = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        write = self.input_per_mtok if self.cache_write_per_mtok is None else self.cache_write_per_mtok
        plain = max(0, usage.input_tokens - usage.cached_input_tokens - usage.cache_write_input_tokens)
        return (plain * self.input_per_mtok + usage.cached_input_tokens * cached
                + usage.cache_write_input_tokens * write + usage.output_tokens * self.output_per_mtok) / 1e6


class ModelConfig(BaseModel):
    """How to reach and drive one model. The same object is the YAML schema and the CLI defaults.

    Only the fields a backend understands are used by it; the rest keep their defaults.
    """

    model_config = ConfigDict(extra="forbid")

    spec: str = Field("local/smollm2", description="provider/model, e.g. openai/gpt-4o-mini, local/smollm2, vllm/PATH.")
    base_urls: list[str] = Field(default_factory=list, description="OpenAI-compatible endpoints; several are load-balanced.")
    api_key_env: str | None = Field(None, description="Environment variable holding the API key (never the key itself).")
    api_key_file: Path | None = Field(None, description="File holding the API key, as an alternative to api_key_env.")
    max_concurrency: int = Field(
        8, ge=1, description="Requests in flight at once. Hosted models (openai/, anthropic/) left unset adapt: "
        "they follow the provider's rate-limit headers up to the account's quota; set, it is a hard cap "
        "(--concurrency above it raises it). Local backends use it as given.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute limit (unset: hosted models follow the provider's headers).")
    tpm: int | None = Field(None, ge=1, description="Tokens per minute limit (prompt estimate + max_tokens; unset: from the headers).")
    timeout_s: float = Field(120.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(6, ge=0, description="Retries of retryable failures (429, 5xx, timeouts, connection errors).")
    defaults: SamplingParams = Field(default_factory=SamplingParams, description="Default sampling parameters.")
    prices: Prices | None = Field(None, description="Override the price table for cost accounting.")
    prompt_cache: bool | None = Field(
        None, description="Prefix reuse: cache_control breakpoints on the stable prefix (anthropic/), a "
        "prompt_cache_key per conversation (openai/). Unset: on, except openai/ with base_urls (compatible "
        "servers cache prefixes themselves); false: off; true: on everywhere.")
    max_batch_size: int = Field(16, ge=1, description="Local backends: most requests generated in one batch.")
    batch_wait_ms: float = Field(5.0, ge=0, description="Local backends: how long to gather concurrent requests into a batch.")
    device: str | None = Field(None, description="Local backends: torch device (default: cuda if available, else cpu).")
    dtype: str | None = Field(None, description="Local backends: torch dtype name (default float32 on CPU, bfloat16 on GPU).")
    engine_args: dict[str, object] = Field(default_factory=dict, description="vLLM engine arguments passed through.")

    @property
    def provider(self) -> str:
        return parse_spec(self.spec)[0]

    @property
    def model_name(self) -> str:
        return parse_spec(self.spec)[1]


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``provider/model`` at the first ``/`` (model names may contain more slashes)."""
    from cai_engine.errors import ModelError

    provider, sep, name = spec.partition("/")
    if not sep or not provider or not name:
        raise ModelError(
            f"model spec {spec!r} is not provider/model; try local/smollm2, openai/gpt-4o-mini, "
            "anthropic/claude-3-5-haiku-latest or vllm/PATH"
        )
    return provider, name


@runtime_checkable
class ChatModel(Protocol):
    """A backend. Implementations must be safe to call concurrently from one event loop.

    Optional capabilities are declared here, not probed: a backend without them returns ``None``
    (inherit :class:`BaseChatModel` for those defaults).
    """

    spec: str

    async def generate(self, request: ChatRequest) -> ChatResponse:
        """Answer one request. Raise the SDK's/transport's own exceptions; the engine classifies them."""
        ...

    async def aclose(self) -> None:
        """Release clients, threads and GPU memory."""
        ...

    def fingerprint(self) -> str:
        """What determines this backend's answers, as a short stable string (the response-cache key):
        weights for local/vLLM, model + endpoint hosts for hosted APIs, never a key. Cheap to call."""
        ...

    def retry_classifier(self) -> Callable[[BaseException], RetryDecision] | None:
        """How the engine's retry policy reads this backend's exceptions; ``None``: never retry."""
        ...

    def batch_adapter(self) -> BatchAdapter | None:
        """The provider's Batch API adapter, or ``None`` if the backend has no Batch API."""
        ...


class BaseChatModel(ChatModel):
    """The defaults of the optional capabilities: fingerprint = spec, no retries, no Batch API."""

    spec: str

    @abstractmethod
    async def generate(self, request: ChatRequest) -> ChatResponse: ...

    async def aclose(self) -> None:
        return None

    def fingerprint(self) -> str:
        return self.spec

    def retry_classifier(self) -> Callable[[BaseException], RetryDecision] | None:
        return None

    def batch_adapter(self) -> BatchAdapter | None:
        return None
