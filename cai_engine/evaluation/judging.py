"""Judge-side work items of the eval that are not pairwise: harm and refusal classifications.

A classification record is keyed by what determines it (kind, request, answer text, judge and
template fingerprint), not by which model wrote the answer, so identical answers of the trained
model and the base are classified once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from cai_engine.engine.engine import Engine
from cai_engine.engine.records import stable_hash
from cai_engine.evaluation.classify import ClassifySettings, Unreadable, classify
from cai_engine.evaluation.config import EvalConfig


@dataclass(frozen=True)
class ClassifyJob:
    kind: str  # "harm" | "refusal"
    generation: dict[str, Any]  # the ok generation record whose answer is classified


def classify_settings(config: EvalConfig) -> ClassifySettings:
    return ClassifySettings(logprobs=config.logprobs)


def classification_id(job: ClassifyJob, judge_fingerprint: dict[str, Any], settings: ClassifySettings) -> str:
    return stable_hash({"kind": job.kind, "request": job.generation["prompt"], "response": job.generation["text"],
                        "judge": judge_fingerprint, **settings.fingerprint()})


def classify_base(job: ClassifyJob, judge_spec: str) -> dict[str, Any]:
    g = job.generation
    return {"kind": job.kind, "set": g["set"], "index": g["index"], "category": g.get("category"), "prompt": g["prompt"],
            "response": g["text"], "answer_model": g["model"], "generation_id": g["id"], "judge_model": judge_spec}


def classification_worker(engines: list[Engine], settings: ClassifySettings
                          ) -> Callable[[ClassifyJob, str], Awaitable[dict[str, Any]]]:
    """The per-item function of the classifications over the job's one engine, the judge (a ``Job.setup``)."""
    return lambda job, rid: classify_item(job, rid, engines[0], settings)


async def classify_item(job: ClassifyJob, rid: str, engine: Engine, settings: ClassifySettings) -> dict[str, Any]:
    """One classification record; an unreadable judge keeps its raw replies in a failed record."""
    base = {**classify_base(job, engine.spec), "id": rid}
    try:
        result = await classify(engine, settings, job.kind, job.generation["prompt"], job.generation["text"], rid)
    except Unreadable as exc:
        return {**base, "status": "failed", "error": str(exc), "raw": exc.raws}
    return {**base, "status": "ok", **result}
