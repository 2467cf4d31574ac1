"""Where the two answers of a preference pair come from.

``--pairs-from`` names one of four sources:

* ``revisions:DIR_OR_FILE`` - a revise run: the initial answer (a) against the final revision (b).
* ``samples:PROMPTS`` - two samples of one policy (``--policy-model``) at a temperature, two seeds.
* ``models:PROMPTS`` - one answer from ``--policy-model`` (a) and one from ``--model-b`` (b).
* ``file:PAIRS.jsonl`` - the user's own pairs: ``prompt`` and ``response_a``/``response_b`` (or
  ``a``/``b``, or ``chosen``/``rejected``, which also records the human label).

Fixed sources give both texts up front; the generated ones give a recipe that the judge worker
fills in (so generation and judging of one prompt stream together and resume together).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Literal

from cai_engine.engine.engine import Engine
from cai_engine.engine.records import iter_latest, stable_hash
from cai_engine.errors import CaiError
from cai_engine.models.base import ChatRequest, Message, SamplingParams, Usage
from cai_engine.sources import iter_prompts

SourceKind = Literal["revisions", "samples", "models", "file"]
SOURCE_KINDS: tuple[str, ...] = ("revisions", "samples", "models", "file")
_FILE_KEYS = (("response_a", "response_b"), ("a", "b"), ("chosen", "rejected"))


@dataclass(frozen=True)
class Candidate:
    text: str
    source: dict[str, Any]


@dataclass(frozen=True)
class PairSpec:
    """One pair to judge. ``a``/``b`` are None until a generated source fills them in."""

    prompt: str
    origin: dict[str, Any]
    a: Candidate | None = None
    b: Candidate | None = None
    label: Literal["a", "b"] | None = None  # a human preference, when the source knows one
    meta: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the pair's inputs: texts when known, else the generation recipe."""
        if self.a is not None and self.b is not None:
            return {"prompt": self.prompt, "a": self.a.text, "b": self.b.text}
        return {"prompt": self.prompt, "recipe": self.origin}


def parse_pairs_from(value: str) -> tuple[SourceKind, Path]:
    kind, sep, rest = value.partition(":")
    if not sep or kind not in SOURCE_KINDS or not rest:
        raise CaiError(
            f"--pairs-from {value!r} is not KIND:PATH; use revisions:OUT_DIR, samples:PROMPTS, models:PROMPTS or file:PAIRS.jsonl"
        )
    path = Path(rest)
    if not path.exists():
        raise CaiError(f"--pairs-from {value!r}: {path} not found")
    return kind, path  # type: ignore[return-value]


def _text(value: Any) -> str:
    """A response given as a string or as a conversational list (last assistant turn)."""
    if isinstance(value, list):
        turns = [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") == "assistant"]
        value = turns[-1] if turns else ""
    return "" if value is None else str(value)


def _prompt_text(value: Any) -> str:
    if isinstance(value, list):
        turns = [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        value = turns[-1] if turns else ""
    return "" if value is None else str(value)


def revision_pairs(path: Path, limit: int | None = None) -> Iterator[PairSpec]:
    """Initial vs final answer of every finished revision record."""
    records_file = path / "revisions.jsonl" if path.is_dir() else path
    if not records_file.exists():
        raise CaiError(f"{records_file} not found; point revisions: at the --out dir of `cai revise` or its revisions.jsonl")
    for n, record in enumerate(iter_latest(records_file, status="ok")):
        if limit is not None and n >= limit:
            return
        base = {"revision_id": record["id"], "model": record.get("model")}
        yield PairSpec(
            prompt=record["prompt"],
            origin={"kind": "revisions", "file": str(records_file), "revision_id": record["id"]},
            a=Candidate(record["initial_response"], {**base, "kind": "initial"}),
            b=Candidate(record["final_response"], {**base, "kind": "revision", "rounds": len(record.get("rounds", []))}),
        )


def file_pairs(path: Path, limit: int | None = None) -> Iterator[PairSpec]:
    """User pairs from JSONL; ``chosen``/``rejected`` rows also carry the human label (a = chosen)."""
    with path.open(encoding="utf-8") as fh:
        produced = 0
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if limit is not None and produced >= limit:
                return
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CaiError(f"{path}:{lineno}: invalid JSON ({exc.msg}); each line must be one JSON object") from None
            keys = next((k for k in _FILE_KEYS if k[0] in row and k[1] in row), None) if isinstance(row, dict) else None
            if keys is None or "prompt" not in row:
                raise CaiError(
                    f"{path}:{lineno}: a pair needs 'prompt' and 'response_a'/'response_b' (or 'a'/'b', or 'chosen'/'rejected')"
                )
            labelled = keys == ("chosen", "rejected")
            src = {"kind": "file", "file": str(path), "line": lineno}
            produced += 1
            yield PairSpec(
                prompt=_prompt_text(row["prompt"]),
                origin={**src, "row_id": row.get("id")},
                a=Candidate(_text(row[keys[0]]), {**src, "field": keys[0]}),
                b=Candidate(_text(row[keys[1]]), {**src, "field": keys[1]}),
                label="a" if labelled else None,
                meta={k: row[k] for k in ("id", "category", "note") if k in row},
            )


def prompt_pairs(kind: SourceKind, path: Path, recipe: dict[str, Any], column: str | None, limit: int | None) -> Iterator[PairSpec]:
    """Prompts whose two candidates are still to be generated by :class:`CandidateGenerator`."""
    for item in iter_prompts(path, column, limit):
        yield PairSpec(prompt=item.text, origin={"kind": kind, "file": str(path), "row": item.row, **recipe})


class CandidateGenerator:
    """Fills a generated pair: two seeded samples of one policy, or one answer each of two models."""

    def __init__(
        self,
        kind: Literal["samples", "models"],
        policy: Engine,
        params: SamplingParams,
        *,
        model_b: Engine | None = None,
        system_prompt: str | None = None,
        seed: int = 0,
    ):
        if kind == "models" and model_b is None:
            raise CaiError("--pairs-from models:... needs --model-b SPEC (the second model); --policy-model is the first")
        self.kind = kind
        self.policy = policy
        self.model_b = model_b
        self.params = params
        self.system_prompt = system_prompt
        self.seed = seed

    def recipe(self) -> dict[str, Any]:
        """Everything that determines the generated texts: goes into the pair id."""
        return {
            "policy": self.policy.spec,
            "model_b": self.model_b.spec if self.model_b else None,
            "params": self.params.model_dump(exclude={"seed"}),
            "system_prompt": self.system_prompt,
            "seed": self.seed,
        }

    async def _answer(self, engine: Engine, prompt: str, seed: int) -> tuple[str, Usage]:
        messages = [Message(role="system", content=self.system_prompt)] if self.system_prompt else []
        messages.append(Message(role="user", content=prompt))
        response = await engine.generate(ChatRequest(messages=messages, params=self.params.model_copy(update={"seed": seed, "n": 1})))
        text = response.text.strip()
        if not text:
            raise CaiError(f"empty answer from {engine.spec} for a pair candidate")
        return text, response.usage

    async def fill(self, spec: PairSpec) -> tuple[PairSpec, Usage]:
        import asyncio

        seeds = [int(stable_hash({"seed": self.seed, "prompt": spec.prompt, "slot": slot}, length=8), 16) for slot in ("a", "b")]
        second = self.model_b if self.kind == "models" and self.model_b is not None else self.policy
        (text_a, usage_a), (text_b, usage_b) = await asyncio.gather(
            self._answer(self.policy, spec.prompt, seeds[0]), self._answer(second, spec.prompt, seeds[1])
        )
        params = self.params.model_dump(exclude={"seed"})
        a = Candidate(text_a, {"kind": self.kind, "model": self.policy.spec, "seed": seeds[0], "params": params})
        b = Candidate(text_b, {"kind": self.kind, "model": second.spec, "seed": seeds[1], "params": params})
        return replace(spec, a=a, b=b), usage_a + usage_b
