"""`cai constitution induce` end to end on the embedded model (SmolLM2-135M on CPU) and the shipped labels.

A 135M model neither proposes nor judges principles well; this checks that the whole path runs on a
real local model (free-text proposals read leniently, real logprobs in the tests) and ends in a
constitution that validates and a report with figures that says the quality is low. Kept tiny
(4 pairs, 1 proposal each, 1 candidate, no baseline) because the CPUs are shared; still slow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cai_engine.cli import main
from cai_engine.constitution import load_constitution
from cai_engine.evaluation.judge_eval import SHIPPED_LABELS

pytestmark = pytest.mark.slow
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_induce_with_the_embedded_model(tmp_path: Path, cai_test_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAI_HOME", str(cai_test_home))
    out = tmp_path / "induced.yaml"
    main(["constitution", "induce", "--pairs", str(SHIPPED_LABELS), "--model", "local/smollm2", "-o", str(out),
          "--limit", "4", "--per-pair", "1", "--max-tokens", "32", "--max-candidates", "1", "--min-agreement", "0",
          "--baseline", "none", "--concurrency", "4"])
    main(["constitution", "validate", str(out)])
    constitution = load_constitution(out)
    (principle,) = constitution.principles
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["split"] == {"pairs": 4, "proposal": 2, "held_out": 2}
    figures = report["kept"][0]["figures"]
    assert figures["n"] + figures["failed"] == 2 and sum(figures["votes"].values()) == figures["n"]
    assert principle.metadata["agreement"] == figures["agreement"] and principle.metadata["support"] >= 1
    markdown = out.with_suffix(".md").read_text()
    assert "tiny model" in markdown and "## Kept" in markdown
    print(f"embedded induce kept {principle.judge!r} with agreement {figures['agreement']}")
