"""Pairwise AI judge under a constitution: one pair in, one ``pairs.jsonl`` record out (RL-CAI data).

Per pair: draw ``principles_per_judgment`` principles (seeded by the pair's content, so every run
and shard agrees), and for each ask the judge the principle's comparative question twice, once
with candidate *a* shown first and once with *b* first. Each reply becomes ``P(first better)``
(soft, from the answer token's logprobs where the backend returns them; otherwise a strict parse;
with chain of thought, clamped to a band such as 0.4-0.6 as in the CAI paper). The judgments are
combined by :mod:`cai_engine.pipelines.aggregate`. A reply that cannot be read is retried with a
different seed and temperature; if it still cannot be read the pair is saved as *failed* with
every raw reply, never dropped silently.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from cai_engine.constitution import Constitution, Principle
from cai_engine.engine.engine import Engine
from cai_engine.engine.records import stable_hash
from cai_engine.engine.session import open_store
from cai_engine.engine.runner import RunSummary
from cai_engine.executors.job import Executor, Job, LocalExecutor
from cai_engine.models.base import ChatRequest, SamplingParams, Usage
from cai_engine.pipelines import aggregate
from cai_engine.pipelines.candidates import CandidateGenerator, PairSpec
from cai_engine.pipelines.verdict import read_verdict
from cai_engine.prompts import judge as templates
from cai_engine.sources import as_dicts

RECORD_VERSION = 1


class UnparseableVerdict(Exception):
    """Every attempt at one judgment gave a reply with no readable verdict."""

    def __init__(self, principle_id: str, order: str, raws: list[str]):
        super().__init__(f"unparseable verdict for principle {principle_id!r} order {order} after {len(raws)} attempts")
        self.principle_id = principle_id
        self.order = order
        self.raws = raws


@dataclass
class JudgeSettings:
    """Everything that determines a pair's judgment, besides the pair itself."""

    constitution: Constitution
    principles_per_judgment: int = 1
    cot: bool = False
    cot_clamp: tuple[float, float] = (0.4, 0.6)
    max_tokens: int | None = None  # default: 8 direct, 384 with chain of thought
    logprobs: bool = True  # ask for logprobs; backends without them fall back to the parsed verdict
    top_logprobs: int = 5
    parse_retries: int = 2
    retry_temperature: float = 0.7
    tie_margin: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.constitution_hash = self.constitution.hash  # once: every pair id needs it
        low, high = self.cot_clamp
        if not 0.0 <= low <= 0.5 <= high <= 1.0:
            raise ValueError(f"cot_clamp {self.cot_clamp} must satisfy 0 <= low <= 0.5 <= high <= 1")

    @property
    def tokens(self) -> int:
        return self.max_tokens or (384 if self.cot else 8)

    def fingerprint(self, judge_spec: str) -> dict[str, Any]:
        return {
            "v": RECORD_VERSION,
            "constitution": self.constitution_hash,
            "judge": judge_spec,
            "k": self.principles_per_judgment,
            "cot": self.cot,
            "cot_clamp": list(self.cot_clamp) if self.cot else None,
            "max_tokens": self.tokens,
            "logprobs": self.logprobs,
            "top_logprobs": self.top_logprobs,
            "seed": self.seed,
        }


def pair_id(spec: PairSpec, settings: JudgeSettings, judge_spec: str) -> str:
    return stable_hash({"pair": spec.fingerprint(), **settings.fingerprint(judge_spec)})


def principles_for(spec: PairSpec, settings: JudgeSettings) -> list[Principle]:
    """The ensemble for this pair: seeded by its inputs, the same for any judge model."""
    key = stable_hash(spec.fingerprint())
    return settings.constitution.sample_principles(settings.principles_per_judgment, key=key, seed=settings.seed)


def _attempt_params(settings: JudgeSettings, rid: str, principle_id: str, order: str, attempt: int) -> SamplingParams:
    seed = int(stable_hash({"id": rid, "p": principle_id, "o": order, "try": attempt}, length=8), 16)
    return SamplingParams(
        max_tokens=settings.tokens,
        temperature=0.0 if attempt == 0 else settings.retry_temperature,
        seed=seed,
        logprobs=settings.logprobs,
        top_logprobs=settings.top_logprobs if settings.logprobs else None,
    )


async def judge_once(
    engine: Engine, settings: JudgeSettings, rid: str, prompt: Any, first: str, second: str, principle: Principle, order: str
) -> tuple[dict[str, Any], Usage]:
    """One judgment (one principle, one order), with retries on an unreadable reply.

    ``prompt``: the prompt string or the whole prompt conversation (the judge is shown all of it)."""
    question = templates.question_for(principle.judge, principle.critique)
    messages = templates.judge_messages(prompt, first, second, question, cot=settings.cot)
    usage = Usage()
    raws: list[str] = []
    for attempt in range(1 + settings.parse_retries):
        params = _attempt_params(settings, rid, principle.id, order, attempt)
        response = await engine.generate(ChatRequest(messages=messages, params=params))
        usage = usage + response.usage
        choice = response.choices[0] if response.choices else None
        text = choice.text if choice else ""
        raws.append(text)
        verdict = read_verdict(text, choice.logprobs if choice else None, cot=settings.cot, cot_clamp=settings.cot_clamp)
        if verdict is not None:
            judgment = {
                "principle_id": principle.id,
                "order": order,
                "verdict": verdict.letter or "tie",
                "p_first": verdict.p_first,
                "method": verdict.method,
                "soft": verdict.soft,
                "attempts": attempt + 1,
                "raw": text,
            }
            return judgment, usage
    raise UnparseableVerdict(principle.id, order, raws)


def pair_truncated(record: dict[str, Any]) -> bool:
    """Whether a candidate of a pair record (what ``chosen``/``rejected`` are) stopped at the token limit.

    The candidates' sources say so (``truncated``, from the revision record or the generation's
    ``finish_reason``); the judge's own replies are not exported text and do not count. Records
    written before ``truncated`` was kept are judged from their candidates' sources."""
    if "truncated" in record:
        return bool(record["truncated"])
    return any(bool((c.get("source") or {}).get("truncated")) or (c.get("source") or {}).get("finish_reason") == "length"
               for c in record.get("candidates") or ())


def _base_record(spec: PairSpec, rid: str, settings: JudgeSettings, judge_spec: str) -> dict[str, Any]:
    candidates = [
        {"id": slot, "text": cand.text if cand else None, "source": cand.source if cand else None}
        for slot, cand in (("a", spec.a), ("b", spec.b))
    ]
    record = {
        "id": rid,
        "version": RECORD_VERSION,
        "prompt": spec.prompt,
        "messages": as_dicts(spec.conversation),
        "origin": spec.origin,
        "candidates": candidates,
        "judge_model": judge_spec,
        "constitution": {"name": settings.constitution.name, "version": settings.constitution.version, "hash": settings.constitution_hash},
        "settings": settings.fingerprint(judge_spec),
    }
    record["truncated"] = pair_truncated(record)
    if spec.label is not None:
        record["label"] = spec.label
    if spec.meta:
        record["meta"] = spec.meta
    return record


async def judge_pair(
    spec: PairSpec, rid: str, engine: Engine, settings: JudgeSettings, generator: CandidateGenerator | None = None
) -> dict[str, Any]:
    """Judge one pair in both orders under its principle ensemble and return its record."""
    started = time.perf_counter()
    policy_usage = Usage()
    if spec.a is None or spec.b is None:
        if generator is None:
            raise ValueError("a pair without candidates needs a CandidateGenerator")
        spec, policy_usage = await generator.fill(spec)
    assert spec.a is not None and spec.b is not None
    record = _base_record(spec, rid, settings, engine.spec)
    record["lengths"] = aggregate.lengths(spec.a.text, spec.b.text)
    principles = principles_for(spec, settings)
    record["principles"] = [p.id for p in principles]

    if spec.a.text.strip() == spec.b.text.strip():
        # Nothing to compare: a tie by construction, no judge call spent.
        return {
            **record, "status": "ok", "identical": True, "judgments": [], "p_a_better": 0.5, "chosen": "tie",
            "consistent": True, "confidence": 0.5, "per_principle": {},
            "usage": {"judge": Usage().model_dump(), "policy": policy_usage.model_dump()},
            "latency_s": round(time.perf_counter() - started, 3),
        }

    a, b = spec.a.text, spec.b.text
    jobs = [
        judge_once(engine, settings, rid, spec.conversation, first, second, principle, order)
        for principle in principles
        for order, first, second in (("ab", a, b), ("ba", b, a))
    ]
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    judgments: list[dict[str, Any]] = []
    usage = Usage()
    unparsed: list[UnparseableVerdict] = []
    for outcome in outcomes:
        if isinstance(outcome, UnparseableVerdict):
            unparsed.append(outcome)
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            judgments.append(outcome[0])
            usage = usage + outcome[1]
    record["usage"] = {"judge": usage.model_dump(), "policy": policy_usage.model_dump()}
    record["latency_s"] = round(time.perf_counter() - started, 3)
    if unparsed:
        first_failure = unparsed[0]
        return {
            **record,
            "status": "failed",
            "error": f"{first_failure}; see raw",
            "judgments": judgments,
            "raw": [{"principle_id": u.principle_id, "order": u.order, "replies": u.raws} for u in unparsed],
        }
    return {**record, "status": "ok", "judgments": judgments, **aggregate.combine(judgments, settings.tie_margin)}


def _judge_worker(engines: list[Engine], settings: JudgeSettings,
                  generation: tuple[Any, ...] | None) -> Callable[[PairSpec, str], Any]:
    judge = engines[0]
    generator = None
    if generation is not None:
        kind, policy, second, params, system_prompt, seed = generation
        generator = CandidateGenerator(kind, engines[policy], params,
                                       model_b=engines[second] if second is not None else None,
                                       system_prompt=system_prompt, seed=seed)
    return lambda spec, rid: judge_pair(spec, rid, judge, settings, generator)


def judge_job(settings: JudgeSettings, engine: Engine,
              generator: CandidateGenerator | None = None) -> tuple[Job[PairSpec], list[Engine]]:
    """:func:`judge_pair` as a :class:`~cai_engine.executors.job.Job` that can travel, and the engines
    it runs on here (the judge first, then the generator's policy and second model, each once)."""
    engines = [engine]
    for other in (generator.policy, generator.model_b) if generator is not None else ():
        if other is not None and all(other is not e for e in engines):
            engines.append(other)
    generation = None
    if generator is not None:
        slot = {id(e): i for i, e in enumerate(engines)}
        generation = (generator.kind, slot[id(generator.policy)],
                      slot[id(generator.model_b)] if generator.model_b is not None else None,
                      generator.params, generator.system_prompt, generator.seed)
    job = Job(models=[e.config for e in engines],
              setup=functools.partial(_judge_worker, settings=settings, generation=generation),
              failure_base=functools.partial(_failure_base, settings=settings, judge_spec=engine.spec))
    return job, engines


def _failure_base(spec: PairSpec, settings: JudgeSettings, judge_spec: str) -> dict[str, Any]:
    return _base_record(spec, "", settings, judge_spec)


async def run_judge(
    pairs: Iterable[PairSpec],
    *,
    engine: Engine,
    settings: JudgeSettings,
    out_path: Path,
    concurrency: int,
    generator: CandidateGenerator | None = None,
    retry_failed: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_skip: Callable[[int], None] | None = None,
    shard: tuple[int, int] | None = None,
    executor: Executor | None = None,
) -> RunSummary:
    """Stream ``pairs`` through :func:`judge_pair`, appending records to ``out_path`` (resumable).

    ``shard=(i, n)`` judges only the pairs whose id falls in shard ``i`` of ``n`` (``cai merge`` joins them).
    ``executor``: where the pairs are judged (default: here; see :func:`~cai_engine.pipelines.revise.run_revise`).
    """
    job, engines = judge_job(settings, engine, generator)
    with open_store(out_path) as store:
        return await (executor or LocalExecutor()).run(
            pairs,
            job=job,
            engines=engines,
            record_id=lambda spec: pair_id(spec, settings, engine.spec),
            store=store,
            concurrency=concurrency,
            retry_failed=retry_failed,
            on_record=on_record,
            on_skip=on_skip,
            shard=shard,
        )
