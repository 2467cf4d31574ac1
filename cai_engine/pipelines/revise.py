"""Critique -> revise: one prompt in, one revision record out (SL-CAI data).

Per prompt (a conversation that ends with the user's turn): answer it, with every earlier turn as
context, under one system message that joins the constitution's system prompt and the
conversation's own system message (constitution first, a blank line between; see
:func:`cai_engine.sources.combined_system`), then for each round sample
``principles_per_round`` principles (seeded by the record id, so reruns and shards agree) and for
each one ask for a critique and a revision, continuing the same conversation. Every raw request
text, output, principle id, finish reason and token count is kept in the record, so a dataset can
be audited and re-derived without calling a model again.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from cai_engine.constitution import Constitution
from cai_engine.engine.engine import Engine
from cai_engine.engine.records import stable_hash
from cai_engine.engine.session import open_store
from cai_engine.engine.runner import RunSummary
from cai_engine.errors import CaiError
from cai_engine.executors.job import Executor, Job, LocalExecutor
from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams, Usage
from cai_engine.prompts import revise as templates
from cai_engine.sources import PromptItem, as_dicts, combined_system, conversation_key, split_system

RECORD_VERSION = 1

#: The finish reason of a generation that stopped at its token limit (OpenAI, vLLM, ours; Anthropic's
#: ``max_tokens`` is mapped to it by the backend).
LENGTH = "length"


class EmptyGeneration(CaiError):
    """The model returned no text for a step; the record is saved as failed with this reason."""


@dataclass
class ReviseSettings:
    """Everything that determines a revision record, besides the prompt itself."""

    constitution: Constitution
    params: SamplingParams
    rounds: int
    principles_per_round: int
    few_shot: int  # how many of the constitution's few-shot examples to prepend to critique/revision calls
    seed: int

    def __post_init__(self) -> None:
        # Hashing the constitution costs ~90 us; a record id is computed for every input row (a
        # rerun of 1M finished prompts included), so compute it once.
        self.constitution_hash = self.constitution.hash

    def fingerprint(self, model_spec: str) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION,
            "constitution": self.constitution_hash,
            "model": model_spec,
            "params": self.params.model_dump(exclude={"seed"}),
            "rounds": self.rounds,
            "k": self.principles_per_round,
            "few_shot": self.few_shot,
            "seed": self.seed,
        }


@dataclass
class _Conversation:
    """The running chat of one record, plus what it cost."""

    messages: list[Message]
    usage: Usage = field(default_factory=Usage)
    finish_reasons: list[str | None] = field(default_factory=list)


PromptLike = str | Sequence[Any]  # a plain prompt, or a conversation (Turns, Messages or role/content dicts)


def _conversation(prompt: PromptLike) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else as_dicts(prompt)


def record_id(prompt: PromptLike, settings: ReviseSettings, model_spec: str) -> str:
    """Hashes the whole conversation; a one-user-turn conversation hashes as its plain string."""
    key = prompt if isinstance(prompt, str) else conversation_key(prompt)
    return stable_hash({"prompt": key, **settings.fingerprint(model_spec)})


def prompt_messages(prompt: PromptLike, constitution_system: str | None) -> tuple[list[Message], list[Message], Message]:
    """``(system message (0 or 1), context turns, last user turn)`` of a prompt conversation."""
    own_system, turns = split_system(_conversation(prompt))
    system = combined_system(constitution_system, own_system)
    messages = [Message(role=t["role"], content=t["content"]) for t in turns]  # type: ignore[arg-type]
    return ([Message(role="system", content=system)] if system else []), messages[:-1], messages[-1]


def _step_seed(settings: ReviseSettings, rid: str, step: int) -> int:
    """A distinct, reproducible seed per step so sampled steps differ yet reruns match."""
    return int(stable_hash({"seed": settings.seed, "id": rid, "step": step}, length=8), 16)


async def _ask(engine: Engine, conversation: _Conversation, params: SamplingParams, what: str) -> str:
    response = await engine.generate(ChatRequest(messages=conversation.messages, params=params))
    conversation.usage = conversation.usage + response.usage
    conversation.finish_reasons.append(response.choices[0].finish_reason if response.choices else None)
    text = response.text.strip()
    if not text:
        raise EmptyGeneration(f"empty {what} from {engine.spec}")
    return text


async def revise_one(prompt: PromptLike, rid: str, engine: Engine, settings: ReviseSettings) -> dict[str, Any]:
    """Run the full critique->revise loop for one prompt (a string or a conversation) and return its record."""
    constitution = settings.constitution
    started = time.perf_counter()
    system, context, user = prompt_messages(prompt, constitution.system_prompt)
    examples = [
        (ex, constitution.principle(ex.principle) if ex.principle else None)
        for ex in constitution.few_shot[: settings.few_shot]
    ]
    shots = templates.few_shot_messages(examples)

    step = 0

    def params_for_step() -> SamplingParams:
        nonlocal step
        step += 1
        return settings.params.model_copy(update={"seed": _step_seed(settings, rid, step), "n": 1})

    conversation = _Conversation(messages=[*system, *context, user])
    initial = await _ask(engine, conversation, params_for_step(), "initial response")
    # Critique/revision calls see the worked examples before the real exchange (its context included).
    conversation.messages = [*system, *shots, *context, user, Message(role="assistant", content=initial)]

    rounds: list[dict[str, Any]] = []
    current = initial
    for round_index in range(settings.rounds):
        principles = constitution.sample_principles(
            settings.principles_per_round, key=rid, round=round_index, seed=settings.seed
        )
        for principle in principles:
            critique_req = templates.critique_request(principle.critique)
            conversation.messages.append(Message(role="user", content=critique_req))
            critique = await _ask(engine, conversation, params_for_step(), f"critique (round {round_index})")
            conversation.messages.append(Message(role="assistant", content=critique))

            revision_req = templates.revision_request(principle.revision)
            conversation.messages.append(Message(role="user", content=revision_req))
            revision = templates.clean_revision(
                await _ask(engine, conversation, params_for_step(), f"revision (round {round_index})")
            )
            if not revision:
                raise EmptyGeneration(f"revision (round {round_index}) was only a label")
            conversation.messages.append(Message(role="assistant", content=revision))
            rounds.append(
                {
                    "round": round_index,
                    "principle_id": principle.id,
                    "critique_request": critique_req,
                    "critique": critique,
                    "revision_request": revision_req,
                    "revision": revision,
                }
            )
            current = revision

    record = {
        "id": rid,
        "status": "ok",
        "version": RECORD_VERSION,
        "prompt": user.content,
        "messages": _conversation(prompt),
        "system_prompt": constitution.system_prompt,
        "constitution": {"name": constitution.name, "version": constitution.version, "hash": settings.constitution_hash},
        "model": engine.spec,
        "params": settings.params.model_dump(exclude={"seed"}),
        "seed": settings.seed,
        "few_shot": settings.few_shot,
        "initial_response": initial,
        "rounds": rounds,
        "final_response": current,
        "finish_reasons": conversation.finish_reasons,
        "usage": conversation.usage.model_dump(),
        "latency_s": round(time.perf_counter() - started, 3),
    }
    steps = truncated_steps(record)
    record["truncated"] = bool(steps)  # the final revision was written from every step's text
    record["truncated_steps"] = steps
    return record


def step_names(record: dict[str, Any]) -> list[str]:
    """The generation steps of a revision record in call order: ``initial``, then ``critique:i`` and
    ``revision:i`` for the i-th entry of ``rounds`` (the order of ``finish_reasons``)."""
    names = ["initial"]
    for i in range(len(record.get("rounds") or ())):
        names += [f"critique:{i}", f"revision:{i}"]
    return names


def truncated_steps(record: dict[str, Any]) -> list[str]:
    """The steps of a revision record whose generation hit the token limit (``finish_reason`` "length")."""
    reasons = record.get("finish_reasons") or []
    return [name for name, reason in zip(step_names(record), reasons) if reason == LENGTH]


def is_truncated(record: dict[str, Any]) -> bool:
    """Whether the record's final answer depends on a truncated generation: every step is in the
    conversation the final revision was written from, so any truncated step counts. Records written
    before ``truncated`` was kept are judged from their ``finish_reasons``."""
    if "truncated" in record:
        return bool(record["truncated"])
    return bool(truncated_steps(record))


def initial_truncated(record: dict[str, Any]) -> bool:
    """Whether the initial answer alone stopped at the token limit (what candidate *a* of a revision pair depends on)."""
    reasons = record.get("finish_reasons") or []
    return bool(reasons) and reasons[0] == LENGTH


def _revise_worker(engines: list[Engine], settings: ReviseSettings) -> Callable[[PromptItem, str], Any]:
    engine = engines[0]
    return lambda item, rid: revise_one(item.messages, rid, engine, settings)


def _revise_failure(item: PromptItem, settings: ReviseSettings, spec: str) -> dict[str, Any]:
    return {
        "prompt": item.text,
        "messages": as_dicts(item.messages),
        "model": spec,
        "constitution": {"name": settings.constitution.name, "hash": settings.constitution_hash},
    }


def revise_job(settings: ReviseSettings, config: ModelConfig) -> Job[PromptItem]:
    """:func:`revise_one` over one model, as a :class:`~cai_engine.executors.job.Job` that can travel."""
    return Job(models=[config], setup=functools.partial(_revise_worker, settings=settings),
               failure_base=functools.partial(_revise_failure, settings=settings, spec=config.spec))


async def run_revise(
    prompts: Iterable[PromptItem],
    *,
    engine: Engine,
    settings: ReviseSettings,
    out_path: Path,
    concurrency: int,
    retry_failed: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_skip: Callable[[int], None] | None = None,
    shard: tuple[int, int] | None = None,
    executor: Executor | None = None,
) -> RunSummary:
    """Stream ``prompts`` through :func:`revise_one`, appending records to ``out_path`` (resumable).

    ``executor``: where the items run (default: here; a :class:`~cai_engine.executors.ray_driver.RayExecutor`
    runs them on Ray workers, the records still written here)."""
    with open_store(out_path) as store:
        return await (executor or LocalExecutor()).run(
            prompts,
            job=revise_job(settings, engine.config),
            engines=[engine],
            record_id=lambda item: record_id(item.messages, settings, engine.spec),
            store=store,
            concurrency=concurrency,
            retry_failed=retry_failed,
            on_record=on_record,
            on_skip=on_skip,
            shard=shard,
        )
