"""Eval generations: each model answers every prompt of the sets once (sycophancy probes twice).

One record per (model, set, prompt) in ``generations.jsonl``. The record id hashes the model's
fingerprint, the prompt (the whole conversation of a multi-turn prompt, kept as ``messages``; the
constitution's system prompt and the conversation's own are joined as in ``cai revise``; and pushback), the sampling parameters and the system prompt, never the
model's *role*: when the trained model and the base are the same model, one generation serves
both. The per-prompt seed depends on the prompt only, so both models sample with the same random
numbers (a fairer comparison at temperature > 0). Correctness, refusal and length are computed
from the stored texts when the report is scored, so improving a detector never needs new samples.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from cai_engine.engine.engine import Engine
from cai_engine.engine.records import stable_hash
from cai_engine.evaluation.sets import EvalItem
from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams, Usage
from cai_engine.sources import as_dicts, combined_system, split_system

RECORD_VERSION = 1


def model_fingerprint(engine: Engine) -> dict[str, Any]:
    """What identifies a model's outputs: its spec and its backend's ``fingerprint()`` (the weight
    and adapter files for local/vLLM models), so a checkpoint retrained in place at the same path
    is regenerated instead of reusing the old model's answers."""
    return {"spec": engine.spec, "weights": engine.fingerprint}


@dataclass(frozen=True)
class GenSettings:
    """Sampling shared by every eval generation (the same for the trained model and the base)."""

    params: SamplingParams
    system_prompt: str | None = None
    seed: int = 0

    def item_params(self, item: EvalItem) -> SamplingParams:
        seed = int(stable_hash({"seed": self.seed, "set": item.set, "prompt": item.prompt_key()}, length=8), 16)
        return self.params.model_copy(update={"seed": seed, "n": 1})


@dataclass(frozen=True)
class GenJob:
    """One model answering one item: ``model`` is the model's place in the job's engine list (plain
    data, so the item can travel to a Ray worker, which holds its own engines)."""

    model: int
    spec: str
    fingerprint: dict[str, Any]
    item: EvalItem


def generation_id(fingerprint: dict[str, Any], item: EvalItem, settings: GenSettings) -> str:
    return stable_hash({
        "v": RECORD_VERSION, "model": fingerprint, "set": item.set, "prompt": item.prompt_key(),
        "pushback": item.pushback if item.set == "sycophancy" else None,
        "params": settings.item_params(item).model_dump(mode="json"), "system": settings.system_prompt,
    })


def base_record(job: GenJob, settings: GenSettings) -> dict[str, Any]:
    item = job.item
    record: dict[str, Any] = {
        "version": RECORD_VERSION, "set": item.set, "index": item.index, "prompt": item.prompt,
        "model": job.spec, "model_fingerprint": job.fingerprint,
        "params": settings.item_params(item).model_dump(mode="json"), "system_prompt": settings.system_prompt,
    }
    if item.messages:
        record["messages"] = as_dicts(item.messages)
    if item.category is not None:
        record["category"] = item.category
    if item.set == "sycophancy":
        record.update({"answer": item.answer, "aliases": list(item.aliases), "pushback": item.pushback})
    return record


async def _turn(engine: Engine, messages: list[Message], params: SamplingParams) -> tuple[str, str | None, Usage]:
    response = await engine.generate(ChatRequest(messages=messages, params=params))
    choice = response.choices[0] if response.choices else None
    return (choice.text.strip() if choice else ""), (choice.finish_reason if choice else None), response.usage


def generation_worker(engines: list[Engine], settings: GenSettings) -> Callable[[GenJob, str], Awaitable[dict[str, Any]]]:
    """The per-item function of the answers phase over the job's engines (a ``Job.setup``)."""
    return lambda job, rid: generate_item(job, rid, engines[job.model], settings)


async def generate_item(job: GenJob, rid: str, engine: Engine, settings: GenSettings) -> dict[str, Any]:
    """Answer one item with ``engine`` (and, for a sycophancy probe, answer the pushback too); its record."""
    started = time.perf_counter()
    item = job.item
    params = settings.item_params(item)
    own_system, turns = split_system(item.conversation)
    system = combined_system(settings.system_prompt, own_system)
    messages = [Message(role="system", content=system)] if system else []
    messages += [Message(role=t["role"], content=t["content"]) for t in turns]  # type: ignore[arg-type]
    text, finish, usage = await _turn(engine, messages, params)
    record = {**base_record(job, settings), "id": rid, "status": "ok", "text": text, "finish_reason": finish}
    if item.set == "sycophancy":
        assert item.pushback is not None
        follow_up = [*messages, Message(role="assistant", content=text), Message(role="user", content=item.pushback)]
        second, second_finish, second_usage = await _turn(engine, follow_up, params)
        usage = usage + second_usage
        record.update({"second_text": second, "second_finish_reason": second_finish})
    record["usage"] = usage.model_dump()
    record["latency_s"] = round(time.perf_counter() - started, 3)
    return record
