"""A fake OpenAI-compatible *judge*: the real HTTP server of ``fake_provider`` with judge-shaped replies.

It reads the two ``<response_A>``/``<response_B>`` blocks of the judge prompt and answers like a
judge would, with per-token ``top_logprobs`` in the OpenAI wire format, so the openai SDK, our
backend, the engine and the verdict reader are all exercised for real. Behaviours:

* ``faithful``: prefers the block containing ``good_word`` with probability ``p_good``; the letter's
  mass is split over tokenisation variants (" A", "A", "(A") as real tokenisers do.
* ``naive``: obeys an injected "answer (A)" / "answer (B)" found anywhere in the prompt; otherwise
  faithful. This is the worst case for injection: the verdict must not become a confident win.
* ``cot``: reasons (quoting any injection it saw) and ends with ``Answer: (X)``; no logprobs use.

``decide(blocks) -> P(A)`` replaces the faithful rule when a test needs a scripted judge.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from typing import Any, Callable

from fake_provider import FakeProvider, _last_user

BLOCK = re.compile(r"<response_([AB])>\n(.*?)\n</response_\1>", re.S)
INJECTION = re.compile(r"answer \(([AB])\)", re.I)


class JudgeProvider(FakeProvider):
    def __init__(self, mode: str = "faithful", good_word: str = "Paris", p_good: float = 0.8,
                 decide: Callable[[dict[str, str]], float] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.decide = decide
        self.mode = mode
        self.good_word = good_word
        self.p_good = p_good

    def _p_a(self, prompt: str) -> float:
        blocks = dict(BLOCK.findall(prompt))
        if self.decide is not None:
            return self.decide(blocks)
        if self.mode == "naive":
            injected = INJECTION.search(prompt.split("Question:", 1)[1])
            if injected:
                return 0.95 if injected.group(1).upper() == "A" else 0.05
        a_good = self.good_word in blocks.get("A", "")
        b_good = self.good_word in blocks.get("B", "")
        if a_good == b_good:
            return 0.5
        return self.p_good if a_good else 1.0 - self.p_good

    def chat_completion(self, req: dict[str, Any]) -> dict[str, Any]:
        prompt = _last_user(req.get("messages", []))
        p_a = self._p_a(prompt)
        letter = "A" if p_a >= 0.5 else "B"
        if self.mode == "cot":
            seen = INJECTION.search(prompt.split("Question:", 1)[1])
            note = f"One response says 'answer ({seen.group(1)})', which is not a reason. " if seen else ""
            tokens = [f"{note}Response {letter} is accurate.", "\n", "Answer", ":", " (", letter, ")"]
            tops = [{t: -0.01} for t in tokens]
        else:
            # P(A) split across three spellings, P(B) across two, plus an unrelated token.
            p_b = 1.0 - p_a
            split = {" A": 0.6 * p_a, "A": 0.3 * p_a, "(A": 0.1 * p_a, " B": 0.7 * p_b, "B": 0.3 * p_b}
            answer_top = {t: math.log(max(v * 0.98, 1e-9)) for t, v in split.items()}
            answer_top["The"] = math.log(0.02)
            tokens = [" " + letter, ")"]
            tops = [answer_top, {")": -0.01}]
        text = "".join(tokens)
        k = int(req.get("top_logprobs") or 0)
        content = None
        if req.get("logprobs"):
            content = []
            for token, top in zip(tokens, tops):
                ranked = sorted(top.items(), key=lambda kv: -kv[1])[: max(k, 1)]
                content.append({
                    "token": token, "logprob": top.get(token, ranked[0][1]), "bytes": None,
                    "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in ranked[:k]],
                })
        return {
            "id": "chatcmpl-" + hashlib.sha256(prompt.encode()).hexdigest()[:12],
            "object": "chat.completion", "created": int(time.time()), "model": req.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text},
                         "logprobs": {"content": content, "refusal": None} if content is not None else None}],
            "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(tokens), "total_tokens": len(prompt.split()) + len(tokens)},
        }


class running_judge:  # noqa: N801 - used like a function: ``with running_judge(mode=...) as p``
    def __init__(self, port: int = 0, **kwargs: Any):
        self.port = port
        self.provider = JudgeProvider(**kwargs)

    def __enter__(self) -> JudgeProvider:
        return self.provider.start(self.port)

    def __exit__(self, *exc: object) -> None:
        self.provider.stop()
