"""Messages for the critique->revise loop (Constitutional AI, Bai et al. 2022, SL-CAI stage).

The conversation continues as in the paper: the model answers, is asked for a critique under one
principle, then for a revision; later rounds critique the latest revision in the same
conversation. Few-shot examples of the whole procedure are prepended to critique/revision calls
(not to the initial answer, which should be the policy's own unguided response).
"""

from __future__ import annotations

import re
from typing import Any

from cai_engine.models.base import Message

GENERIC_CRITIQUE = "Identify specific ways the response falls short of being helpful, honest and harmless."
GENERIC_REVISION = "Rewrite the response to fix every problem identified in the critique."
CRITIQUE_SUFFIX = "Write a short critique of your previous response. Do not rewrite it yet."
REVISION_SUFFIX = "Reply with the rewritten response only, without any preamble or commentary."

_LEADING_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:revised response|revision|rewritten response|here is (?:the|my) (?:revised|rewritten) response)"
    r"(?:\*\*)?\s*[:\-]\s*",
    re.IGNORECASE,
)


def critique_request(principle_critique: str) -> str:
    return f"Critique request: {principle_critique.strip()}\n{CRITIQUE_SUFFIX}"


def revision_request(principle_revision: str) -> str:
    return f"Revision request: {principle_revision.strip()}\n{REVISION_SUFFIX}"


def few_shot_messages(examples: list[tuple[Any, Any]]) -> list[Message]:
    """Worked examples as alternating chat turns: prompt, response, critique request, critique, ...

    ``examples`` are ``(FewShotExample, Principle | None)``: the requests use the principle the
    example illustrates when it names one, else a generic request.
    """
    messages: list[Message] = []
    for example, principle in examples:
        critique_text = principle.critique if principle is not None else GENERIC_CRITIQUE
        revision_text = principle.revision if principle is not None else GENERIC_REVISION
        messages += [
            Message(role="user", content=example.prompt),
            Message(role="assistant", content=example.response),
            Message(role="user", content=critique_request(critique_text)),
            Message(role="assistant", content=example.critique),
            Message(role="user", content=revision_request(revision_text)),
            Message(role="assistant", content=example.revision),
        ]
    return messages


def clean_revision(text: str) -> str:
    """Strip labels small models put before a rewrite ("Revised response: ...")."""
    return _LEADING_LABEL.sub("", text.strip(), count=1).strip()
