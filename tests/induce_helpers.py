"""A labelled set decided by one hidden property, and a fake model that proposes, merges and judges.

The hidden property: **the preferred answer ends with a question to the user**. Two decoys are
balanced so they explain nothing: the preferred answer is the longer one in half the pairs, and
the word "please" appears on either side at random.

:class:`InduceProvider` is the fake OpenAI-compatible judge server (real HTTP, real logprobs) that
also answers the other two prompts of ``cai constitution induce``:

* a **proposal** (``<preferred_response>`` in the prompt): three principles as JSON: one about the
  question at the end (in one of three wordings, two near-identical and one reworded), one about
  length (whichever way this pair goes) and one about politeness;
* a **merge** request: groups every numbered question that mentions "question";
* a **judgment**: decided by the principle in the prompt's ``Question:`` line: ends-with-a-question
  prefers the answer ending in "?" (0.9), longer/shorter prefer that length (0.8), politeness and
  anything else (the shipped constitutions' questions: the baseline) prefer the longer answer
  slightly (0.6), a length-biased judge that the decoy makes useless.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from fake_provider import _last_user
from judge_fake_server import BLOCK, JudgeProvider

TOPICS = [
    "plan a weekend in Lisbon", "fix a leaking tap", "learn basic Spanish", "choose a first guitar",
    "start running again", "write a cover letter", "grow tomatoes on a balcony", "back up my laptop",
    "cook rice without a cooker", "prepare for a job interview", "pick a laptop for students",
    "train a puppy to sit", "reduce my electricity bill", "organise a small wedding", "study for a maths exam",
    "repaint a bedroom", "make sourdough bread", "set up a home network", "read more books",
    "negotiate a salary", "clean a cast iron pan", "start a vegetable compost", "sleep better", "learn to swim",
]

Q_WORDINGS = [
    {"judge": "Which response ends with a question to the user?",
     "critique": "Identify whether the response fails to end with a question that invites the user to continue.",
     "revision": "Rewrite the response so that it ends with a question to the user."},
    {"judge": "Which response ends with a question for the user?",
     "critique": "Identify whether the response does not end with a question for the user.",
     "revision": "Rewrite the response so that it ends with a question for the user."},
    {"judge": "Which response closes by asking the user something back?",
     "critique": "Identify whether the response closes without asking the user anything back.",
     "revision": "Rewrite the response so that it closes by asking the user a question."},
]
LONGER = {"judge": "Which response is longer and more detailed?",
          "critique": "Identify places where the response is too short or leaves out detail.",
          "revision": "Rewrite the response to add useful detail."}
SHORTER = {"judge": "Which response is shorter and more concise?",
           "critique": "Identify padding or repetition in the response.",
           "revision": "Rewrite the response to remove padding and be concise."}
POLITE = {"judge": "Which response is more polite?",
          "critique": "Identify any rude or curt wording in the response.",
          "revision": "Rewrite the response to be more polite."}


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def labelled_pairs(n: int = 24) -> list[dict[str, Any]]:
    rows = []
    for i, topic in enumerate(TOPICS[:n]):
        base = f"Here is how to {topic}: start small, keep notes and check your progress each week"
        detail = ". Most people find the second week the hardest, so plan a reward for it"
        please = " Please take it slowly." if _h(topic) % 2 else ""
        ask = " Would you like a step-by-step plan for the first week?"
        long_chosen = i % 2 == 0
        chosen = base + (detail if long_chosen else "") + "." + ask
        rejected = base + ("" if long_chosen else detail) + "." + (please if _h(topic + "r") % 2 else "")
        if not long_chosen:  # make sure the rejected answer is the longer one here
            rejected += " Good luck with it."
        rows.append({"id": f"q-{i:02d}", "prompt": f"How do I {topic}?", "chosen": chosen, "rejected": rejected.strip()})
    return rows


class InduceProvider(JudgeProvider):
    """The fake judge server that also proposes and merges principles (see the module docstring)."""

    def __init__(self, proposals: list[dict[str, str]] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.proposals = proposals  # when set: propose exactly these for every pair
        self.kinds: dict[str, int] = {"propose": 0, "merge": 0, "judge": 0}

    def _p_a(self, prompt: str) -> float:
        blocks = dict(BLOCK.findall(prompt))
        a, b = blocks.get("A", ""), blocks.get("B", "")
        question = re.search(r"^Question: (.*)$", prompt, re.M)
        q = question.group(1).lower() if question else ""
        if "question" in q or "asking the user" in q:
            qa, qb = a.rstrip().endswith("?"), b.rstrip().endswith("?")
            return 0.5 if qa == qb else 0.9 if qa else 0.1
        if len(a) == len(b):
            return 0.5
        if "shorter" in q:
            return 0.8 if len(a) < len(b) else 0.2
        if "longer" in q:
            return 0.8 if len(a) > len(b) else 0.2
        return 0.6 if len(a) > len(b) else 0.4  # a mildly length-biased judge for every other question

    def chat_completion(self, req: dict[str, Any]) -> dict[str, Any]:
        prompt = _last_user(req.get("messages", []))
        if "<preferred_response>" in prompt:
            with self.lock:
                self.kinds["propose"] += 1
            return self._text_reply(req, self._proposal(prompt))
        if "test the same property" in prompt:
            with self.lock:
                self.kinds["merge"] += 1
            numbered = re.findall(r"^(\d+)\. (.*)$", prompt, re.M)
            group = [int(n) for n, q in numbered if "question" in q.lower() or "asking the user" in q.lower()]
            return self._text_reply(req, json.dumps([group] if len(group) > 1 else []))
        with self.lock:
            self.kinds["judge"] += 1
        return super().chat_completion(req)

    def _proposal(self, prompt: str) -> str:
        chosen = re.search(r"<preferred_response>\n(.*?)\n</preferred_response>", prompt, re.S).group(1)  # type: ignore[union-attr]
        other = re.search(r"<other_response>\n(.*?)\n</other_response>", prompt, re.S).group(1)  # type: ignore[union-attr]
        if self.proposals is not None:
            return json.dumps({"principles": self.proposals})
        q = Q_WORDINGS[_h(chosen) % len(Q_WORDINGS)]
        length = LONGER if len(chosen) > len(other) else SHORTER
        return json.dumps({"principles": [q, length, POLITE]})

    @staticmethod
    def _text_reply(req: dict[str, Any], text: str) -> dict[str, Any]:
        words = text.split()
        return {
            "id": "chatcmpl-" + hashlib.sha256(text.encode()).hexdigest()[:12], "object": "chat.completion",
            "created": int(time.time()), "model": req.get("model", "fake"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text},
                         "logprobs": None}],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(words), "total_tokens": 10 + len(words)},
        }


class running_induce:  # noqa: N801 - used like a function: ``with running_induce() as p``
    def __init__(self, **kwargs: Any):
        self.provider = InduceProvider(**kwargs)

    def __enter__(self) -> InduceProvider:
        return self.provider.start(0)

    def __exit__(self, *exc: object) -> None:
        self.provider.stop()
