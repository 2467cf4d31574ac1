"""The constitution judge as a reward function for RL trainers (OpenRLHF, verl, TRL's GRPO).

Two modes:

* **pairwise** (default): the policy's response against a reference answer, judged in both orders
  under the constitution's principles exactly as ``cai judge`` judges a pair; the reward is
  ``2 * P(response better) - 1`` in [-1, 1]. The reference is the row's label when the trainer
  sends one (OpenRLHF ``labels``, verl ``ground_truth``), else the answer of ``--reference-model``
  to the prompt (cached, so each prompt costs one reference call).
* **pointwise**: the judge rates the response 0-10 on the constitution's judge questions (the same
  prompt and parser as the built-in GRPO/RLOO online judge); the reward is ``2 * score/10 - 1``.
  No reference needed; noisier.

Every call goes through the command's :class:`~cai_engine.engine.session.Session` engines: limits,
retries, the response cache and the ``--max-cost`` budget hold for the service as for a batch job.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from cai_engine.constitution import Constitution
from cai_engine.engine.engine import Engine
from cai_engine.engine.records import stable_hash
from cai_engine.models.base import ChatRequest, Message, SamplingParams
from cai_engine.pipelines.candidates import Candidate, PairSpec
from cai_engine.pipelines.judge import JudgeSettings, judge_pair
from cai_engine.prompts.reward import render_pointwise_judge

Mode = Literal["pairwise", "pointwise"]


@dataclass
class Scored:
    reward: float
    p_better: float | None
    failed: bool = False
    error: str | None = None


def split_query(query: str, prompt: str) -> str:
    """OpenRLHF sends ``query`` = prompt + response as one string: the response is what follows the prompt."""
    return query[len(prompt):] if prompt and query.startswith(prompt) else query


class RewardScorer:
    """Scores (prompt, response[, reference]) triples under a constitution with one judge engine."""

    def __init__(self, judge: Engine, constitution: Constitution, *, mode: Mode = "pairwise",
                 reference: Engine | None = None, reference_params: SamplingParams | None = None,
                 settings: JudgeSettings | None = None, concurrency: int = 16):
        self.judge = judge
        self.constitution = constitution
        self.mode = mode
        self.reference = reference
        self.reference_params = reference_params or SamplingParams(max_tokens=256, temperature=0.0)
        self.settings = settings or JudgeSettings(constitution=constitution,
                                                  principles_per_judgment=constitution.sampling.principles_per_judgment)
        self.questions = [p for p in constitution.principles if p.judge]
        if mode == "pointwise" and not self.questions:
            from cai_engine.errors import ConfigError

            raise ConfigError(f"constitution {constitution.name} has no principle with a judge question; "
                              "pointwise rewards need `judge:` questions (or use --mode pairwise)")
        self._slots = asyncio.Semaphore(concurrency)

    async def reference_answer(self, prompt: str) -> str:
        if self.reference is None:
            from cai_engine.errors import CaiError

            raise CaiError("pairwise rewards need a reference: send labels (the reference answers) or start the "
                           "service with --reference-model SPEC")
        reply = await self.reference.generate(ChatRequest(messages=[Message(role="user", content=prompt)],
                                                          params=self.reference_params))
        return reply.text

    async def score_one(self, prompt: str, response: str, label: str | None = None) -> Scored:
        async with self._slots:
            try:
                if self.mode == "pointwise":
                    return await self._pointwise(prompt, response)
                reference = label if label else await self.reference_answer(prompt)
                spec = PairSpec(prompt=prompt, origin={"kind": "reward"},
                                a=Candidate(response, {"kind": "policy"}), b=Candidate(reference, {"kind": "reference"}))
                rid = stable_hash({"reward": [prompt, response, reference], **self.settings.fingerprint(self.judge.spec)})
                record = await judge_pair(spec, rid, self.judge, self.settings)
                if record.get("status") != "ok":
                    return Scored(0.0, None, failed=True, error=str(record.get("error", "judge failed"))[:300])
                p = float(record["p_a_better"])
                return Scored(2 * p - 1, p)
            except Exception as exc:  # one bad sample must not fail the trainer's whole batch
                from cai_engine.errors import BudgetExceeded, FatalBackendError

                if isinstance(exc, (BudgetExceeded, FatalBackendError)):
                    raise
                return Scored(0.0, None, failed=True, error=f"{type(exc).__name__}: {exc}"[:300])

    async def _pointwise(self, prompt: str, response: str) -> Scored:
        from cai_engine.errors import CaiError
        from cai_engine.training.rl_rewards import parse_score

        messages = render_pointwise_judge(prompt, response, [p.judge or "" for p in self.questions])
        reply = await self.judge.generate(ChatRequest(messages=[Message(**m) for m in messages],
                                                      params=SamplingParams(max_tokens=8, temperature=0.0)))
        score = parse_score(reply.text)
        if score is None:
            raise CaiError(f"the judge gave no 0-10 score: {reply.text[:80]!r}")
        return Scored(2 * score - 1, score)

    async def score_batch(self, queries: list[str], prompts: list[str] | None = None,
                          labels: list[Any] | None = None) -> dict[str, Any]:
        """OpenRLHF's payload in, its reply out: ``{"rewards", "scores", "extra_logs"}``."""
        prompts = prompts or [""] * len(queries)
        if len(prompts) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(prompts)} prompts")
        labels = list(labels) if labels else [None] * len(queries)
        if len(labels) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(labels)} labels")
        results = await asyncio.gather(*(
            self.score_one(prompt, split_query(query, prompt), label if isinstance(label, str) else None)
            for query, prompt, label in zip(queries, prompts, labels)))
        rewards = [r.reward for r in results]
        return {
            "rewards": rewards,
            "scores": rewards,
            "extra_logs": {
                "p_better": [r.p_better for r in results],
                "judge_failed": [int(r.failed) for r in results],
            },
        }
