"""A small, realistic dataset for the workbench tests: real revise + judge pipelines, scripted models.

The policy is the ``mock`` provider with a responder (deterministic answers per prompt); the judge
is the fake OpenAI-compatible judge server (real HTTP, real logprobs), which prefers whichever
answer mentions ``Paris`` and always picks the first-shown answer when one says ``biased``
(a position-inconsistent pair).
"""

from __future__ import annotations

import json
from pathlib import Path

from cai_engine.constitution import load_constitution
from cai_engine.engine.engine import Engine
from cai_engine.models.base import ChatRequest, ModelConfig, SamplingParams
from cai_engine.models.mock import MockModel
from cai_engine.pipelines.candidates import revision_pairs
from cai_engine.pipelines.judge import JudgeSettings, run_judge
from cai_engine.pipelines.revise import ReviseSettings, run_revise
from cai_engine.sources import iter_prompts

LONG = "Paris has many districts. " * 70
XSS = "Say </script><script>window.__pwned=1</script> please"
# prompt -> (initial answer, revised answer)
TABLE: dict[str, tuple[str, str]] = {
    "What is the capital of France?": ("It is Lyon, I think.", "The capital of France is Paris."),
    "Name a big city in France.": ("Marseille is big.", "Paris is the biggest city in France."),
    "Where is the Eiffel Tower?": ("It is in Paris.", "It is in a European capital."),
    "Tell me a joke about cats.": ("Cats are liquid.", "Why did the cat sit on the laptop? To keep an eye on the mouse."),
    "Write a slanted summary of the news.": ("Here is a summary.", "Here is a biased summary of the news."),
    "Describe the districts of Paris in detail.": ("There are twenty.", LONG.strip()),
    XSS: ("<b>bold</b> text", "I will not run scripts, but Paris is lovely."),
}


def _prompt_of(request: ChatRequest) -> str:
    return next(m.content for m in request.messages if m.role == "user" and m.content in TABLE)


def scripted_policy(request: ChatRequest) -> str:
    initial, revised = TABLE[_prompt_of(request)]
    last = request.messages[-1].content
    if last.startswith("Critique request:"):
        return "The response could be more accurate; it should name the right place."
    if last.startswith("Revision request:"):
        return revised
    return initial


def scripted_engine() -> Engine:
    config = ModelConfig(spec="mock/scripted")
    return Engine(MockModel("scripted", config, responder=scripted_policy), config)


def judge_decide(blocks: dict[str, str]) -> float:
    a, b = blocks.get("A", ""), blocks.get("B", "")
    if "biased" in a or "biased" in b:
        return 0.9  # always the first shown: inconsistent across orders
    if ("Paris" in a) == ("Paris" in b):
        return 0.5
    return 0.85 if "Paris" in a else 0.15


def write_prompts(path: Path) -> Path:
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in TABLE))
    return path


async def build_dataset(out: Path, judge_base_url: str) -> Path:
    """revisions.jsonl + pairs.jsonl in ``out`` (general constitution, 1 round, 2 principles per judgment).

    One item at a time, so records are written (and the viewer lists them) in TABLE order: the
    browser test relies on which record comes first and second on screen.
    """
    constitution = load_constitution("general")
    prompts = write_prompts(out.parent / "prompts.jsonl")
    settings = ReviseSettings(constitution=constitution, params=SamplingParams(max_tokens=64), rounds=1,
                              principles_per_round=1, few_shot=len(constitution.few_shot), seed=0)
    policy = scripted_engine()
    await run_revise(iter_prompts(prompts), engine=policy, settings=settings, out_path=out / "revisions.jsonl", concurrency=1)
    judge = Engine.from_config(ModelConfig(spec="openai/scripted", base_urls=[judge_base_url], max_concurrency=16))
    try:
        await run_judge(revision_pairs(out), engine=judge, settings=JudgeSettings(constitution=constitution, principles_per_judgment=2),
                        out_path=out / "pairs.jsonl", concurrency=1)
    finally:
        await judge.aclose()
    return out
