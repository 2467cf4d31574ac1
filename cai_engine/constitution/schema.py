"""The constitution schema: principles, few-shot examples, sampling settings.

These pydantic models are both the YAML schema (``extra="forbid"``, so a typo is an error, not a
silently ignored key) and the in-memory object the pipelines use. A :class:`Constitution` is
always *resolved*: ``extends`` has been applied by the loader, so it carries no include.

Principle sampling is deterministic in ``(seed, key, round)`` and nothing else: a record's
principles can be recomputed from its id on any machine, in any process, in any order, which is
what makes resume and sharding reproducible.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cai_engine.errors import ConfigError

ID_PATTERN = r"^[a-z0-9_-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Principle(_Strict):
    """One constitutional principle: how to critique, how to revise, how to judge."""

    id: str = Field(pattern=ID_PATTERN, description="Unique id, lowercase letters, digits, '_' and '-'.")
    critique: str = Field(min_length=1, description="Critique request, e.g. 'Identify specific ways the response ...'.")
    revision: str = Field(min_length=1, description="Revision request, e.g. 'Rewrite the response to ...'.")
    judge: str | None = Field(
        default=None, description="Comparative judge question, e.g. 'Which response is more honest?'."
    )
    weight: float = Field(default=1.0, gt=0, description="Relative sampling weight (> 0).")
    tags: list[str] = Field(default_factory=list, description="Free-form labels (e.g. harmless, honesty).")
    metadata: dict[str, Any] = Field(
        default_factory=dict, exclude=True,
        description="Free-form facts about the principle, e.g. the agreement and support that `cai constitution "
        "induce` measured. Not part of the content hash: figures do not change how a principle judges.",
    )

    @field_validator("critique", "revision", "judge")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("weight")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class FewShotExample(_Strict):
    """One worked critique -> revision example, shown to the model before the real task (CAI paper)."""

    prompt: str = Field(min_length=1, description="The user's request.")
    response: str = Field(min_length=1, description="A flawed first response.")
    principle: str | None = Field(default=None, description="Id of the principle this example illustrates.")
    critique: str = Field(min_length=1, description="The critique of the response under that principle.")
    revision: str = Field(min_length=1, description="The revised response.")


class SamplingConfig(_Strict):
    """How many principles each revision round and each judgment draws, and the base seed."""

    principles_per_round: int = Field(default=1, ge=1, description="Principles sampled per critique/revision round.")
    rounds: int = Field(default=1, ge=1, description="Critique -> revision rounds per prompt.")
    principles_per_judgment: int = Field(default=1, ge=1, description="Principles ensembled per pair judgment.")
    seed: int = Field(default=0, description="Base seed of principle sampling.")


def coerce_version(value: Any) -> Any:
    """`version: 1` and `version: 1.2` are natural YAML: keep them as text, not a type error."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


class Constitution(_Strict):
    """A resolved constitution (after ``extends``), ready for the pipelines."""

    name: str = Field(min_length=1, description="Short name, recorded with every record.")
    version: str = Field(default="1", description="Free-form version label.")
    description: str = Field(default="", description="What this constitution is for.")
    system_prompt: str | None = Field(default=None, description="System prompt for the policy model.")
    principles: list[Principle] = Field(min_length=1, description="The principles; ids are unique.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    few_shot: list[FewShotExample] = Field(default_factory=list, description="Worked critique/revision examples.")
    source_path: Path | None = Field(default=None, exclude=True, description="File it was loaded from, if any.")

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: Any) -> Any:
        return coerce_version(value)

    @model_validator(mode="after")
    def _consistent(self) -> Constitution:
        # The loader runs these same checks first with file:line:col; this guards code-built objects.
        seen: set[str] = set()
        for p in self.principles:
            if p.id in seen:
                raise ValueError(f"duplicate principle id {p.id!r}")
            seen.add(p.id)
        n = len(self.principles)
        for field in ("principles_per_round", "principles_per_judgment"):
            k = getattr(self.sampling, field)
            if k > n:
                raise ValueError(f"sampling.{field} is {k} but there are only {n} principles")
        for ex in self.few_shot:
            if ex.principle is not None and ex.principle not in seen:
                raise ValueError(f"few_shot example names unknown principle {ex.principle!r}")
        return self

    # -- identity -------------------------------------------------------------------------

    def content(self) -> dict[str, Any]:
        """The canonical content (no source path): what the hash covers and what export writes."""
        return self.model_dump(mode="json")

    @property
    def hash(self) -> str:
        """sha256 (16 hex chars) of the canonical JSON content: same for the same rules, whatever the file."""
        blob = json.dumps(self.content(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    @property
    def principle_ids(self) -> list[str]:
        return [p.id for p in self.principles]

    def principle(self, id: str) -> Principle:  # noqa: A002 - the public name is `id`
        """The principle with this id; a :class:`ConfigError` naming the valid ids otherwise."""
        for p in self.principles:
            if p.id == id:
                return p
        import difflib

        close = difflib.get_close_matches(id, self.principle_ids, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(self.principle_ids)}"
        raise ConfigError(f"constitution {self.name!r} has no principle {id!r}; {hint}")

    # -- sampling -------------------------------------------------------------------------

    def sample_principles(self, k: int, *, key: str, round: int = 0, seed: int | None = None) -> list[Principle]:  # noqa: A002
        """``k`` distinct principles drawn by weight, deterministic in ``(seed, key, round)``.

        Weighted sampling without replacement (Efraimidis-Spirakis: keep the ``k`` largest
        ``u ** (1 / w)``), driven by a ``random.Random`` seeded from a sha256 of the inputs, so the
        draw is the same across calls, processes and machines (``hash()`` is salted per process).
        """
        n = len(self.principles)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ConfigError(f"cannot sample {k!r} principles; ask for a whole number between 0 and {n}")
        if k > n:
            raise ConfigError(
                f"cannot sample {k} principles from constitution {self.name!r}, it has only {n}; "
                f"lower principles_per_round/principles_per_judgment to at most {n} or add principles"
            )
        base = self.sampling.seed if seed is None else seed
        material = json.dumps([base, str(key), int(round)], separators=(",", ":")).encode("utf-8")
        rng = random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))
        scored = []
        for index, p in enumerate(self.principles):
            u = rng.random()
            # log(u) / w is monotone in u ** (1/w) and does not underflow for small weights.
            score = math.log(u) / p.weight if u > 0 else -math.inf
            scored.append((score, -index, p))
        scored.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [p for _, _, p in scored[:k]]
