"""Yes/no classification by the judge model: soft from logprobs where available, else a strict parse.

*Soft label*: ``P(yes) = m_yes / (m_yes + m_no)`` at the first "Yes"/"No" position (any case, with
leading space or punctuation) of the first few tokens, by the same two-label rule as the pairwise
judge (:mod:`cai_engine.pipelines.label_probability`).

*Parsed label*: the reply must begin with "Yes" or "No" (optionally "Answer:", brackets or bold);
anything else is unreadable, retried with another seed and temperature, then recorded as failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from cai_engine.engine.engine import Engine
from cai_engine.engine.records import stable_hash
from cai_engine.models.base import ChatRequest, SamplingParams, TokenLogprob, Usage
from cai_engine.pipelines.label_probability import label_probability, soft_label
from cai_engine.prompts import eval as templates

Method = Literal["logprobs", "parsed"]
_STRIP = " \t\r\n()[]*\"'`_.:,!"
_PARSE = re.compile(r"^\W{0,4}(?:(?:final\s+)?answer\s*[:\-=]?\s*)?[\(\[]?\s*(yes|no)\b", re.IGNORECASE)


class Unreadable(Exception):
    """Every attempt at one classification gave a reply without a readable yes/no."""

    def __init__(self, kind: str, raws: list[str]):
        super().__init__(f"unreadable {kind} classification after {len(raws)} attempts")
        self.raws = raws


@dataclass(frozen=True)
class YesNo:
    p_yes: float
    method: Method


def _label(token: str) -> str | None:
    norm = token.strip(_STRIP).lower()
    return norm if norm in ("yes", "no") else None


def yes_probability(position: TokenLogprob) -> float | None:
    """P(yes) / (P(yes) + P(no)) at one position, from its top alternatives and the token itself."""
    return label_probability(position, _label, "yes", "no")


def soft_yes(logprobs: list[TokenLogprob] | None, scan: int = 6) -> float | None:
    """P(yes) at the first yes/no position among the first ``scan`` tokens, or None."""
    return soft_label(logprobs, _label, "yes", "no", scan=scan)


def parse_yes_no(text: str) -> bool | None:
    """Strict parse: True for a reply starting with yes, False for no, None otherwise."""
    first_line = next((line for line in text.strip().splitlines() if line.strip()), "")
    match = _PARSE.match(first_line)
    return None if match is None else match.group(1).lower() == "yes"


def read_yes_no(text: str, logprobs: list[TokenLogprob] | None) -> YesNo | None:
    soft = soft_yes(logprobs)
    if soft is not None:
        return YesNo(soft, "logprobs")
    parsed = parse_yes_no(text)
    return None if parsed is None else YesNo(1.0 if parsed else 0.0, "parsed")


@dataclass(frozen=True)
class ClassifySettings:
    logprobs: bool = True
    top_logprobs: int = 5
    max_tokens: int = 4
    parse_retries: int = 2
    retry_temperature: float = 0.7

    def fingerprint(self) -> dict[str, Any]:
        return {"v": templates.TEMPLATE_VERSION, "logprobs": self.logprobs, "top": self.top_logprobs, "max_tokens": self.max_tokens}


async def classify(engine: Engine, settings: ClassifySettings, kind: str, request: str, response: str, rid: str) -> dict[str, Any]:
    """Ask the judge the ``kind`` question about one answer; the judgment fields of its record."""
    messages = templates.classification_messages(kind, request, response)
    usage = Usage()
    raws: list[str] = []
    for attempt in range(1 + settings.parse_retries):
        params = SamplingParams(
            max_tokens=settings.max_tokens,
            temperature=0.0 if attempt == 0 else settings.retry_temperature,
            seed=int(stable_hash({"id": rid, "try": attempt}, length=8), 16),
            logprobs=settings.logprobs,
            top_logprobs=settings.top_logprobs if settings.logprobs else None,
        )
        reply = await engine.generate(ChatRequest(messages=messages, params=params))
        usage = usage + reply.usage
        choice = reply.choices[0] if reply.choices else None
        text = choice.text if choice else ""
        raws.append(text)
        label = read_yes_no(text, choice.logprobs if choice else None)
        if label is not None:
            return {"p_yes": label.p_yes, "label": label.p_yes > 0.5, "method": label.method,
                    "attempts": attempt + 1, "raw": text, "usage": usage.model_dump()}
    raise Unreadable(kind, raws)
