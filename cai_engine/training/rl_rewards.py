"""Rewards for the RL stages: the reward-model checks and gate, a reward-model scorer, and the online AI judge.

- :func:`check_reward_model` reads only config.json: a causal LM passed as a reward model is refused
  before any weight is loaded.
- :func:`check_reward_gate` refuses a reward model whose held-out accuracy (``reward_eval.json``,
  written by ``train reward``) is below the threshold, unless forced.
- :func:`judge_reward_func` is d-RLAIF: the AI judge scores each sampled completion through the
  :class:`~cai_engine.engine.engine.Engine` (any backend, with its concurrency limits), as an async
  GRPO/RLOO reward function.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any, Callable

from cai_engine.errors import CaiError
from cai_engine.training.common import model_config_dict

log = logging.getLogger("cai_engine.training")

REWARD_EVAL_FILE = "reward_eval.json"


def check_reward_model(path: Path) -> dict[str, Any]:
    """The reward model's config, after checking it has a 1-output score head (no weights loaded)."""
    config = model_config_dict(path)
    archs = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise CaiError(
            f"reward model {path} has no score head (architectures: {', '.join(archs) or 'unknown'}); "
            "train one with `cai train reward` and pass its output dir"
        )
    labels = config.get("num_labels", len(config.get("id2label") or {}) or 1)
    if labels != 1:
        raise CaiError(f"reward model {path} has {labels} outputs; a reward model needs exactly 1 (train one with `cai train reward`)")
    return config


def find_reward_eval(path: Path) -> Path | None:
    """``reward_eval.json`` in the given dir (a reward stage folder) or its parent (when given OUT/model)."""
    for folder in (path, path.parent):
        if (folder / REWARD_EVAL_FILE).is_file():
            return folder / REWARD_EVAL_FILE
    return None


def reward_model_dir(path: Path) -> Path:
    """A reward stage folder means its ``model/`` subdir; a model dir is used as is."""
    return path / "model" if (path / "model" / "config.json").is_file() else path


def check_reward_gate(path: Path, *, min_accuracy: float, force: bool) -> float | None:
    """Held-out accuracy of the reward model at ``path``; CaiError when below ``min_accuracy`` and not forced."""
    found = find_reward_eval(path)
    if found is None:
        if force:
            log.warning("reward model %s has no %s; its accuracy is unknown (force: true)", path, REWARD_EVAL_FILE)
            return None
        raise CaiError(
            f"reward model {path} has no {REWARD_EVAL_FILE}, so its held-out accuracy is unknown; "
            "train it with `cai train reward` or set force: true"
        )
    accuracy = float(json.loads(found.read_text())["eval_accuracy"])
    if accuracy < min_accuracy and not force:
        raise CaiError(
            f"reward model {path} has held-out accuracy {accuracy:.3f} < min_reward_accuracy {min_accuracy:.2f}; "
            "improve the reward data/model, lower min_reward_accuracy, or set force: true"
        )
    if accuracy < min_accuracy:
        log.warning("reward model accuracy %.3f is below %.2f; continuing because force: true", accuracy, min_accuracy)
    return accuracy


def _completion_text(completion: Any) -> str:
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return "".join(m.get("content", "") for m in completion)
    return str(completion)


def reward_model_func(model: Any, tokenizer: Any, *, batch_size: int = 8) -> Callable[..., list[float]]:
    """A GRPO/RLOO reward function over a loaded reward model (same tokenization as ``train reward``)."""
    from cai_engine.training.reward import score_conversations

    def reward_model(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        conversations = [list(p) + [{"role": "assistant", "content": _completion_text(c)}] for p, c in zip(prompts, completions)]
        return score_conversations(model, tokenizer, conversations, batch_size=batch_size)

    return reward_model


# ---------------------------------------------------------------- online AI judge (d-RLAIF)

_NUMBER = re.compile(r"(?<![\d.])(10|[0-9])(?:\s*/\s*10)?(?![\d.])")


def parse_score(text: str) -> float | None:
    """First integer 0-10 in the judge's reply, scaled to [0, 1]; None when there is none."""
    match = _NUMBER.search(text)
    return int(match.group(1)) / 10.0 if match else None


def judge_reward_func(engine: Any, *, principles: list[str], max_tokens: int = 8) -> Callable[..., Any]:
    """An async reward function: the judge rates every (prompt, completion) 0-10 through ``engine``.

    Calls are gathered, so the engine's concurrency limit decides the parallelism. A reply without a
    number gives None (TRL treats it as a missing reward, NaN) and is counted in ``failures``.
    """
    from cai_engine.models.base import ChatRequest, Message, SamplingParams
    from cai_engine.prompts.reward import render_pointwise_judge

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    stats = {"calls": 0, "failures": 0}

    async def _one(prompt: Any, completion: Any) -> float | None:
        messages = render_pointwise_judge(prompt, _completion_text(completion), principles)
        request = ChatRequest(messages=[Message(**m) for m in messages], params=params)
        try:
            response = await engine.generate(request)
        except Exception as exc:  # a failed judgment is a missing reward, not a crashed run
            log.warning("judge call failed: %s", exc)
            stats["failures"] += 1
            return None
        stats["calls"] += 1
        score = parse_score(response.text)
        if score is None:
            stats["failures"] += 1
        return score

    async def ai_judge(prompts: list[Any], completions: list[Any], **_: Any) -> list[float | None]:
        return list(await asyncio.gather(*(_one(p, c) for p, c in zip(prompts, completions))))

    ai_judge.stats = stats  # type: ignore[attr-defined]
    return ai_judge


# ---------------------------------------------------------------- a remote reward service

def _prompt_text(prompt: Any) -> str:
    """A prompt as the one string a remote reward service takes: the user's message of a single-turn
    conversation, else the turns as ``role: content`` lines."""
    if not isinstance(prompt, list):
        return str(prompt)
    turns = [m for m in prompt if m.get("role") != "system"]
    if len(turns) == 1 and turns[0].get("role") == "user":
        return str(turns[0].get("content", ""))
    return "\n".join(f"{m.get('role')}: {m.get('content', '')}" for m in turns)


def remote_reward_func(url: str, *, timeout_s: float = 300.0) -> Callable[..., Any]:
    """An async reward function that posts each batch to a reward service in OpenRLHF's payload
    (``cai reward serve``, or any server that speaks it): ``{"query": [prompt + completion],
    "prompts": [prompt]}`` -> ``{"rewards": [...]}``. A batch the service cannot answer gives
    missing rewards (None; TRL treats them as NaN) and is counted in ``failures``, so one outage
    does not crash the run."""
    import httpx

    stats = {"calls": 0, "failures": 0}

    async def remote_reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[float | None]:
        texts = [_prompt_text(p) for p in prompts]
        payload = {"query": [t + _completion_text(c) for t, c in zip(texts, completions)], "prompts": texts}
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as client:
                response = await client.post(url, json=payload)
                response.raise_for_status()
                rewards = response.json()["rewards"]
            if len(rewards) != len(texts):
                raise ValueError(f"{len(rewards)} rewards for {len(texts)} samples")
        except Exception as exc:  # the service is down or answered badly: missing rewards, not a crash
            log.warning("reward service %s failed: %s", url, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            stats["failures"] += len(texts)
            return [None] * len(texts)
        stats["calls"] += len(texts)
        return [None if r is None else float(r) for r in rewards]

    remote_reward.stats = stats  # type: ignore[attr-defined]
    return remote_reward
