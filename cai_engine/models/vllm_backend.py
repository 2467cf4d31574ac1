"""``vllm/MODEL_OR_PATH``: an in-process vLLM engine (``vllm.v1`` ``AsyncLLM``).

Every :meth:`VLLMBackend.generate` call becomes one request on vLLM's async engine, so the
concurrent requests of a pipeline are continuously batched by vLLM itself (no waiting for a whole
batch to finish). The chat template is applied here with the model's own tokenizer (the same
template the transformers backend and ``vllm serve`` use) and the token ids go to the engine.

``ModelConfig.engine_args`` pass straight through to ``vllm.AsyncEngineArgs`` (tensor_parallel_size,
data_parallel_size, gpu_memory_utilization, max_model_len, dtype, quantization, ...), except one
key of ours: ``lora`` = path of a PEFT LoRA adapter applied to every request (LoRA is then enabled
in the engine with the adapter's rank). ``vllm/smollm2`` is the embedded checkpoint
(:mod:`cai_engine.models.embedded`).

vLLM is an optional dependency imported only here, lazily: ``cai`` works without it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from cai_engine.errors import ModelError
from cai_engine.models.base import BaseChatModel, ChatRequest, ChatResponse, Choice, ModelConfig, TokenLogprob, Usage
from cai_engine.models.fingerprint import digest, weights_fingerprint

INSTALL_HINT = (
    "vLLM is not installed; on a CUDA machine run `pip install 'cai-engine[vllm]'`, "
    "on CPU build its own venv with scripts/build_vllm_cpu_venv.sh and run cai from .venv-vllm"
)
#: Our own keys in ``engine_args`` (not vLLM's); removed before the rest reach AsyncEngineArgs.
OWN_KEYS = frozenset({"lora"})
#: Defaults that make vLLM start on a CPU-only machine (vllm-cpu); ignored on GPU.
#: On CPU, float32 unless the config says otherwise: vLLM's ``dtype="auto"`` casts a float32 checkpoint to
#: bfloat16 on CPUs with AVX512-BF16/AMX, and a small model (the embedded 135M) then answers nonsense
#: ("What is the capital of France?" -> "L'Etoile, la Marseillaise..."); the transformers backend's
#: CPU default is float32 too, so both backends give the same greedy text on the same checkpoint.
CPU_DEFAULTS: dict[str, Any] = {"enforce_eager": True, "gpu_memory_utilization": 0.4, "dtype": "float32"}


def import_vllm() -> Any:
    """``import vllm`` or a one-line ModelError saying how to install it."""
    try:
        import vllm
    except ImportError as exc:  # also covers a broken install (missing compiled extension)
        detail = "" if getattr(exc, "name", None) == "vllm" else f" ({exc})"
        raise ModelError(INSTALL_HINT + detail) from None
    return vllm


def resolve_model(name: str) -> str:
    """``smollm2`` -> the embedded dense checkpoint; an existing path -> that path; else a hub id as is."""
    from cai_engine.models.embedded import EMBEDDED_NAME, ensure_embedded_checkpoint, set_offline

    if name == EMBEDDED_NAME:
        set_offline()
        return str(ensure_embedded_checkpoint())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"vllm/{name}: {path} has no config.json; point at a Hugging Face checkpoint directory")
        return str(path.resolve())
    return name


def _lora_rank(adapter: Path) -> int:
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise ModelError(f"engine_args.lora: {adapter} has no adapter_config.json; point at a PEFT LoRA adapter dir")
    try:
        return int(json.loads(config_file.read_text()).get("r", 16))
    except (ValueError, TypeError) as exc:
        raise ModelError(f"engine_args.lora: {config_file} is not a valid adapter config ({exc})") from None


def engine_kwargs(model: str, config: ModelConfig, on_cpu: bool) -> tuple[dict[str, Any], Path | None]:
    """The ``AsyncEngineArgs`` keyword arguments for ``config``, and the LoRA adapter dir if any."""
    args = dict(config.engine_args)
    lora = args.pop("lora", None)
    kwargs: dict[str, Any] = {"model": model}
    if on_cpu:
        kwargs.update(CPU_DEFAULTS)
    if config.dtype and "dtype" not in args:
        kwargs["dtype"] = config.dtype
    kwargs.update(args)
    adapter: Path | None = None
    if lora is not None:
        adapter = Path(str(lora)).expanduser()
        rank = _lora_rank(adapter)
        kwargs.setdefault("enable_lora", True)
        kwargs.setdefault("max_lora_rank", max(8, rank))
    return kwargs, adapter


def _check_keys(engine_args_cls: type, kwargs: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(engine_args_cls)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ModelError(
            f"engine_args: unknown vLLM engine argument(s) {', '.join(unknown)}; "
            "see `vllm serve --help` for the names (use underscores), plus `lora` for an adapter dir"
        )


def sampling_params(vllm: Any, params: Any) -> Any:
    """Our :class:`SamplingParams` as vLLM's (``logprobs=k`` also returns the sampled token)."""
    logprobs: int | None = None
    if params.logprobs or params.top_logprobs:
        logprobs = params.top_logprobs or 0
    from vllm.sampling_params import RequestOutputKind

    return vllm.SamplingParams(
        output_kind=RequestOutputKind.FINAL_ONLY,  # one message per request, not one per token
        n=params.n,
        temperature=params.temperature,
        top_p=params.top_p,
        seed=params.seed,
        stop=list(params.stop) if params.stop else None,
        max_tokens=params.max_tokens,
        logprobs=logprobs,
    )


def convert_logprobs(output: Any, top_k: int) -> list[TokenLogprob] | None:
    """vLLM's per-position ``{token_id: Logprob}`` as our TokenLogprob list (top = the top_k by rank)."""
    if output.logprobs is None:
        return None
    result: list[TokenLogprob] = []
    for token_id, position in zip(output.token_ids, output.logprobs):
        if not position:
            continue
        chosen = position.get(token_id)
        top: dict[str, float] = {}
        for alt in position.values():
            if alt.rank is not None and alt.rank <= top_k and alt.decoded_token is not None:
                text = alt.decoded_token
                top[text] = max(alt.logprob, top.get(text, float("-inf")))
        result.append(
            TokenLogprob(
                token=(chosen.decoded_token or "") if chosen else "",
                logprob=chosen.logprob if chosen else float("nan"),
                top=dict(sorted(top.items(), key=lambda kv: -kv[1])),
            )
        )
    return result


def _files_fingerprint(path: Path) -> str | None:
    try:
        return weights_fingerprint(path)
    except FileNotFoundError:
        return None


class VLLMBackend(BaseChatModel):
    """One ``AsyncLLM`` per backend, started on first use (start-up takes seconds to minutes).

    Creating it checks that vLLM imports and the model path is a checkpoint, and loads nothing
    (``vllm/smollm2`` is converted when the engine starts). No retries, no Batch API.
    """

    def __init__(self, name: str, config: ModelConfig):
        from cai_engine.models.embedded import EMBEDDED_NAME, check_embedded, set_offline

        self.spec = f"vllm/{name}"
        self.name = name
        self.config = config
        self._vllm = import_vllm()
        self._model_path: str | None = None
        if name == EMBEDDED_NAME:
            set_offline()
            check_embedded()
        else:
            self._model_path = resolve_model(name)
        self._fingerprint: str | None = None
        self._engine: Any = None
        self._tokenizer: Any = None
        self._lora_request: Any = None
        self._start_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"VLLMBackend({self.spec!r})"

    @property
    def model_path(self) -> str:
        """What the engine loads: a checkpoint dir, or a hub id as given."""
        if self._model_path is None:
            self._model_path = resolve_model(self.name)
        return self._model_path

    def fingerprint(self) -> str:
        """``vllm/NAME@digest`` of the checkpoint's and the LoRA adapter's file stats (the GGUF file's
        for ``vllm/smollm2``); just the spec for a hub id without an adapter. Computed once."""
        if self._fingerprint is None:
            from cai_engine.models.embedded import EMBEDDED_NAME, fingerprint_source

            if self.name == EMBEDDED_NAME:
                model: str | None = weights_fingerprint(fingerprint_source())
            else:
                model = _files_fingerprint(Path(self.model_path))
            lora = self.config.engine_args.get("lora")
            adapter = None if lora is None else (_files_fingerprint(Path(str(lora)).expanduser()) or "missing")
            if adapter is not None:
                self._fingerprint = f"{self.spec}@{digest({'model': model, 'lora': adapter})}"
            else:
                self._fingerprint = self.spec if model is None else f"{self.spec}@{model}"
        return self._fingerprint

    @property
    def engine(self) -> Any:
        """The running ``AsyncLLM`` (None until :meth:`start`)."""
        return self._engine

    async def start(self) -> None:
        """Start the engine now (otherwise the first request does); idempotent."""
        async with self._start_lock:
            if self._engine is None:
                self._engine = self._build_engine()
                tokenizer = self._engine.get_tokenizer()
                self._tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer

    def _build_engine(self) -> Any:
        vllm = self._vllm
        self._fingerprint = None  # describe the files as they are when loaded
        from vllm.platforms import current_platform

        on_cpu = bool(current_platform.is_cpu())
        if on_cpu:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        kwargs, adapter = engine_kwargs(self.model_path, self.config, on_cpu)
        _check_keys(vllm.AsyncEngineArgs, kwargs)
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            self._lora_request = LoRARequest(adapter.name, 1, str(adapter.resolve()))
        from vllm.v1.engine.async_llm import AsyncLLM

        try:
            return AsyncLLM.from_engine_args(vllm.AsyncEngineArgs(**kwargs))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{self.spec}: vLLM rejected the engine arguments: {str(exc).splitlines()[0]}") from None

    def prompt_ids(self, request: ChatRequest) -> list[int]:
        """Token ids of the chat-templated conversation, ending with the assistant turn's header."""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        ids = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)

    def _engine_input(self, ids: list[int]) -> Any:
        try:  # vLLM >= 0.30 wants rendered inputs; older versions take a TokensPrompt dict
            from vllm.inputs.engine import tokens_input
        except ImportError:
            return {"prompt_token_ids": ids}
        return tokens_input(ids)

    async def generate(self, request: ChatRequest) -> ChatResponse:
        if self._engine is None:
            await self.start()
        started = time.perf_counter()
        params = request.params
        ids = self.prompt_ids(request)
        final = None
        async for output in self._engine.generate(
            self._engine_input(ids),
            sampling_params(self._vllm, params),
            request_id=uuid.uuid4().hex,
            lora_request=self._lora_request,
        ):
            final = output
        if final is None:
            raise RuntimeError(f"{self.spec}: the engine finished the request without output")
        top_k = params.top_logprobs or 0
        outputs = sorted(final.outputs, key=lambda o: o.index)
        choices = [
            Choice(text=o.text, finish_reason=o.finish_reason, logprobs=convert_logprobs(o, top_k)) for o in outputs
        ]
        usage = Usage(
            input_tokens=len(final.prompt_token_ids or ids), output_tokens=sum(len(o.token_ids) for o in outputs),
            # Prompt tokens served from vLLM's prefix cache (on by default); older vLLMs do not say.
            cached_input_tokens=int(getattr(final, "num_cached_tokens", 0) or 0),
        )
        return ChatResponse(choices=choices, usage=usage, model=self.spec, latency_s=time.perf_counter() - started)

    async def aclose(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()


def create(name: str, config: ModelConfig) -> VLLMBackend:
    return VLLMBackend(name, config)
