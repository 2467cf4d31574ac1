"""Where the two answers of a preference pair come from.

``--pairs-from`` names one of four sources:

* ``revisions:DIR_OR_FILE`` - a revise run: the initial answer (a) against the final revision (b).
* ``samples:PROMPTS`` - two samples of one policy (``--policy-model``) at a temperature, two seeds.
* ``models:PROMPTS`` - one answer from ``--policy-model`` (a) and one from ``--model-b`` (b).
* ``file:PAIRS`` - the user's own pairs: ``prompt`` and ``response_a``/``response_b`` (or
  ``a``/``b``, or ``chosen``/``rejected``, which also records the human label). Any prompt source
  holds them (JSONL, parquet, a datasets folder, ``hf:NAME_OR_DIR``). The prompt may be a string,
  a ``messages`` list or an HH transcript; an answer may be a string or a list whose last
  assistant turn is the answer. Without a ``prompt`` column, ``chosen``/``rejected`` may be whole
  conversations that share everything before their final answer (``Anthropic/hh-rlhf``): that
  shared part is the prompt.

``samples:`` and ``models:`` take any prompt source too (``samples:hf:NAME``). Every pair keeps its
prompt conversation (:attr:`PairSpec.messages`); the pair id hashes all of it.

Fixed sources give both texts up front; the generated ones give a recipe that the judge worker
fills in (so generation and judging of one prompt stream together and resume together).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from cai_engine.engine.engine import Engine
from cai_engine.engine.records import iter_latest, stable_hash
from cai_engine.errors import CaiError
from cai_engine.models.base import ChatRequest, Message, SamplingParams, Usage
from cai_engine.pipelines.revise import LENGTH, initial_truncated, is_truncated
from cai_engine.sources import (
    BadRow, Turn, as_dicts, combined_system, conversation_key, finish, from_record, is_hf_spec, iter_prompts, iter_rows,
    split_system, to_turns,
)

SourceKind = Literal["revisions", "samples", "models", "file"]
SOURCE_KINDS: tuple[str, ...] = ("revisions", "samples", "models", "file")
_FILE_KEYS = (("response_a", "response_b"), ("a", "b"), ("chosen", "rejected"))


@dataclass(frozen=True)
class Candidate:
    text: str
    source: dict[str, Any]


@dataclass(frozen=True)
class PairSpec:
    """One pair to judge. ``a``/``b`` are None until a generated source fills them in.

    ``prompt`` is the last user turn; ``messages`` the whole prompt conversation (ending with that
    turn; empty means the one user turn ``prompt``).
    """

    prompt: str
    origin: dict[str, Any]
    a: Candidate | None = None
    b: Candidate | None = None
    label: Literal["a", "b"] | None = None  # a human preference, when the source knows one
    meta: dict[str, Any] = field(default_factory=dict)
    messages: tuple[Turn, ...] = ()

    @property
    def conversation(self) -> tuple[Turn, ...]:
        return self.messages or (Turn("user", self.prompt),)

    def prompt_key(self) -> Any:
        """The prompt as ids hash it: the plain string for one user turn, else every turn."""
        return conversation_key(self.messages) if self.messages else self.prompt

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the pair's inputs: texts when known, else the generation recipe."""
        if self.a is not None and self.b is not None:
            return {"prompt": self.prompt_key(), "a": self.a.text, "b": self.b.text}
        return {"prompt": self.prompt_key(), "recipe": self.origin}


def conversation_spec(messages: Any, **fields: Any) -> PairSpec:
    """A PairSpec whose prompt is a conversation (Turns, Messages or role/content dicts)."""
    turns = tuple(Turn(m["role"], m["content"]) for m in as_dicts(messages))
    return PairSpec(prompt=turns[-1].content, messages=turns if len(turns) > 1 or turns[0].role != "user" else (), **fields)


def parse_pairs_from(value: str) -> tuple[SourceKind, Path | str]:
    """``KIND:PATH`` -> ``(kind, path)``; an ``hf:`` spec (``samples:hf:NAME``, ``file:hf:DIR``) stays a string."""
    kind, sep, rest = value.partition(":")
    if not sep or kind not in SOURCE_KINDS or not rest:
        raise CaiError(
            f"--pairs-from {value!r} is not KIND:PATH; use revisions:OUT_DIR, samples:PROMPTS, models:PROMPTS or file:PAIRS.jsonl"
        )
    if is_hf_spec(rest):
        if kind == "revisions":
            raise CaiError(f"--pairs-from {value!r}: revisions: takes the --out dir of `cai revise`, not an hf: dataset")
        return kind, rest  # type: ignore[return-value]
    path = Path(rest)
    if not path.exists():
        raise CaiError(f"--pairs-from {value!r}: {path} not found")
    return kind, path  # type: ignore[return-value]


def _answer_text(value: Any, what: str) -> str:
    """An answer given as a string or as a conversation (its last assistant turn)."""
    if isinstance(value, (list, tuple)):
        turns = [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") == "assistant"]
        if not turns:
            raise ValueError(f"{what!r} is a list with no assistant turn")
        value = turns[-1]
    if value is None or not str(value).strip():
        raise ValueError(f"{what!r} is empty")
    return str(value)


def _transcript_pair(row: dict[str, Any], keys: tuple[str, str], fmt: str) -> tuple[tuple[Turn, ...], str, str]:
    """No prompt column: two whole conversations that share all but their final answers."""
    convs = [finish(to_turns(row[k], fmt), keep_answer=True) for k in keys]
    for key, conv in zip(keys, convs):
        if conv[-1].role != "assistant":
            raise ValueError(f"no 'prompt' column, and {key!r} does not end with an assistant answer to split off")
    if convs[0][:-1] != convs[1][:-1]:
        raise ValueError(f"{keys[0]!r} and {keys[1]!r} differ before their final answers, so they share no prompt")
    prompt = finish(list(convs[0][:-1]))
    return prompt, convs[0][-1].content, convs[1][-1].content


def revision_pairs(path: Path, limit: int | None = None) -> Iterator[PairSpec]:
    """Initial vs final answer of every finished revision record."""
    records_file = path / "revisions.jsonl" if path.is_dir() else path
    if not records_file.exists():
        raise CaiError(f"{records_file} not found; point revisions: at the --out dir of `cai revise` or its revisions.jsonl")
    for n, record in enumerate(iter_latest(records_file, status="ok")):
        if limit is not None and n >= limit:
            return
        base = {"revision_id": record["id"], "model": record.get("model")}
        # a is the initial answer (its own generation); b, the final revision, was written from every step.
        yield conversation_spec(
            from_record(record),
            origin={"kind": "revisions", "file": str(records_file), "revision_id": record["id"]},
            a=Candidate(record["initial_response"], {**base, "kind": "initial", "truncated": initial_truncated(record)}),
            b=Candidate(record["final_response"], {**base, "kind": "revision", "rounds": len(record.get("rounds", [])),
                                                   "truncated": is_truncated(record)}),
        )


def file_pairs(
    path: Path | str, limit: int | None = None, *, column: str | None = None, format: str = "auto",
    split: str | None = None, streaming: bool = False, skip_bad_rows: bool = False,
    on_bad_row: Callable[[BadRow], None] | None = None,
) -> Iterator[PairSpec]:
    """User pairs from any prompt source; ``chosen``/``rejected`` rows also carry the human label (a = chosen).

    ``column`` names the prompt column (default ``prompt``); a bad row raises one-line
    :class:`~cai_engine.sources.BadRow` unless ``skip_bad_rows``.
    """
    where = str(path)
    prompt_column = column or "prompt"
    produced = 0
    for n, row in iter_rows(path, split=split, streaming=streaming):
        if limit is not None and produced >= limit:
            return
        try:
            if isinstance(row, ValueError):
                raise row
            keys = next((k for k in _FILE_KEYS if k[0] in row and k[1] in row), None)
            if keys is None or (prompt_column not in row and keys != ("chosen", "rejected")):
                raise ValueError(f"a pair needs {prompt_column!r} and 'response_a'/'response_b' (or 'a'/'b', or "
                                 "'chosen'/'rejected'; without a prompt, chosen/rejected as whole conversations)")
            if prompt_column in row:
                prompt = finish(to_turns(row[prompt_column], format))
                a, b = _answer_text(row[keys[0]], keys[0]), _answer_text(row[keys[1]], keys[1])
            else:
                prompt, a, b = _transcript_pair(row, keys, format)
        except ValueError as exc:
            bad = BadRow(where, n, str(exc))
            if not skip_bad_rows:
                raise bad from None
            if on_bad_row is not None:
                on_bad_row(bad)
            continue
        labelled = keys == ("chosen", "rejected")
        src = {"kind": "file", "file": where, "line": n}
        produced += 1
        yield conversation_spec(
            prompt,
            origin={**src, "row_id": row.get("id")},
            a=Candidate(a, {**src, "field": keys[0]}),
            b=Candidate(b, {**src, "field": keys[1]}),
            label="a" if labelled else None,
            meta={k: row[k] for k in ("id", "category", "note") if k in row},
        )


def prompt_pairs(kind: SourceKind, path: Path | str, recipe: dict[str, Any], column: str | None, limit: int | None,
                 **options: Any) -> Iterator[PairSpec]:
    """Prompts whose two candidates are still to be generated by :class:`CandidateGenerator`.

    ``options``: ``format``, ``split``, ``streaming``, ``skip_bad_rows`` of :func:`~cai_engine.sources.iter_prompts`
    (bad rows are skipped silently here: the caller's pre-pass reported them).
    """
    for item in iter_prompts(path, column, limit, **options):
        yield conversation_spec(item.messages, origin={"kind": kind, "file": str(path), "row": item.row, **recipe})


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

    async def _answer(self, engine: Engine, spec: PairSpec, seed: int) -> tuple[str, Usage, str | None]:
        own_system, turns = split_system(spec.conversation)
        system = combined_system(self.system_prompt, own_system)
        messages = [Message(role="system", content=system)] if system else []
        messages += [Message(role=t["role"], content=t["content"]) for t in turns]  # type: ignore[arg-type]
        response = await engine.generate(ChatRequest(messages=messages, params=self.params.model_copy(update={"seed": seed, "n": 1})))
        text = response.text.strip()
        if not text:
            raise CaiError(f"empty answer from {engine.spec} for a pair candidate")
        return text, response.usage, response.choices[0].finish_reason if response.choices else None

    async def fill(self, spec: PairSpec) -> tuple[PairSpec, Usage]:
        import asyncio

        seeds = [int(stable_hash({"seed": self.seed, "prompt": spec.prompt_key(), "slot": slot}, length=8), 16) for slot in ("a", "b")]
        second = self.model_b if self.kind == "models" and self.model_b is not None else self.policy
        (text_a, usage_a, finish_a), (text_b, usage_b, finish_b) = await asyncio.gather(
            self._answer(self.policy, spec, seeds[0]), self._answer(second, spec, seeds[1])
        )
        params = self.params.model_dump(exclude={"seed"})
        a = Candidate(text_a, {"kind": self.kind, "model": self.policy.spec, "seed": seeds[0], "params": params,
                               "finish_reason": finish_a, "truncated": finish_a == LENGTH})
        b = Candidate(text_b, {"kind": self.kind, "model": second.spec, "seed": seeds[1], "params": params,
                               "finish_reason": finish_b, "truncated": finish_b == LENGTH})
        return replace(spec, a=a, b=b), usage_a + usage_b
