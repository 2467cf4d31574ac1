"""`cai redteam`'s quality filter: the issue's junk prompts are dropped, real ones kept, and counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cai_engine.cli import main
from cai_engine.constitution import load_constitution
from cai_engine.engine.engine import Engine
from cai_engine.models.base import ChatRequest, ModelConfig
from cai_engine.models.mock import MockModel
from cai_engine.workbench.redteam import DROP_REASONS, PromptFilter, RedteamSettings, generate_redteam

CONSTITUTION = """\
name: rt
principles:
  - id: dosing
    critique: Identify any medication dose in the response above the labelled maximum.
    revision: Rewrite the response so every dose stays within the label.
    judge: Which response keeps doses within the label?
"""

BAD = [  # (prompt, reason)
    ("Subject: [Your Name] Message", "placeholder"),  # from the issue (placeholder is checked first)
    ("I'm here to help. 22:38, May 2020", "timestamp"),  # from the issue
    ("Subject: Refill of my prescription next week", "email"),
    ("Dear Sir/Madam, please send me the dosage chart for children.", "email"),
    ("Write to [Company] and ask them for a stronger painkiller", "placeholder"),
    ("What is the right {product} dose for an adult?", "placeholder"),
    ("Posted by nurse_amy 14:02, 3 June 2021 (UTC)", "timestamp"),
    ("I'm here to help with any question about your medication.", "assistant-voice"),
    ("As an AI language model I cannot give medical advice here.", "assistant-voice"),
    ("Hi there", "too-short"),
    (" ".join(["Please tell me the dose of ibuprofen for my son again"] * 15), "too-long"),
    ("1200 mg / 24 h = 50 mg/h ?? 3x400", "not-letters"),
    ("Itâ€™s fine, tell me the maximum dose", "symbols"),
    ("💊💊💊 dose now 💊💊💊 please", "symbols"),
]
GOOD = [
    "How much ibuprofen can a 30 kg child take in one day?",
    "My doctor said 800 mg, but the label says 400 mg. Which should I follow?",
    "My flight leaves at 10:30, can I take a sleeping pill on the plane?",
    "What changed in the paracetamol guidelines in May 2020?",
    "Is it safe to take 800 mg ibuprofen at 8:00 pm on May 5?",
    "I’m worried “extra strength” tablets are too strong — are they?",
    "¿Cuál es la dosis máxima de ibuprofeno para un niño de 6 años?",
    "这个药每天最多可以吃多少片？请告诉我。",
    "What does `dose = weight_kg * 10` mean in this dosing calculator?",
    "Can you help me plan a medicine schedule for my grandmother 🙂?",
]


@pytest.mark.parametrize(("prompt", "reason"), BAD, ids=[r for _, r in BAD])
def test_filter_drops_junk_with_its_reason(prompt: str, reason: str) -> None:
    assert reason in DROP_REASONS
    assert PromptFilter().reason(prompt) == reason


@pytest.mark.parametrize("prompt", GOOD)
def test_filter_keeps_real_prompts(prompt: str) -> None:
    assert PromptFilter().reason(prompt) is None


def test_filter_can_be_turned_off_and_tuned() -> None:
    assert PromptFilter(enabled=False).reason("Subject: [Your Name] Message") is None
    assert PromptFilter(min_words=20).reason(GOOD[0]) == "too-short"
    assert PromptFilter(max_chars=20).reason(GOOD[0]) == "too-long"


def _reply(request: ChatRequest) -> str:
    """A small model's typical list: two good prompts, the issue's junk, and duplicates of a good one."""
    return "\n".join(
        [
            "Here are some messages:",
            f"1. {GOOD[0]}",
            "2. Subject: [Your Name] Message",
            "3. I'm here to help. 22:38, May 2020",
            f"4. {GOOD[0].upper()}!",  # exact duplicate after normalisation
            f"5. {GOOD[0][:-1]} please?",  # near duplicate
            f"6. {GOOD[1]}",
            "7. Dear Sir/Madam, please send me the dosage chart for children.",
        ]
    )


def _engine(config: ModelConfig | None = None) -> Engine:
    config = config or ModelConfig(spec="mock/junk")
    return Engine(MockModel("junk", config, responder=_reply), config)


async def test_generation_drops_and_counts_by_reason(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONSTITUTION)
    constitution = load_constitution(path)
    result = await generate_redteam(constitution, _engine(), RedteamSettings(n=5, kinds=["benign"], max_attempts=1))
    assert [r["prompt"] for r in result.records] == [GOOD[0], GOOD[1]]
    assert result.parsed == 7
    assert result.dropped == {"placeholder": 1, "timestamp": 1, "email": 1, "exact-duplicate": 1, "near-duplicate": 1}
    assert result.filtered == 3 and result.duplicates == 2
    assert result.examples["placeholder"] == "Subject: [Your Name] Message"
    assert result.examples["timestamp"] == "I'm here to help. 22:38, May 2020"
    # --no-filter keeps the junk, still drops the duplicates
    loose = await generate_redteam(
        constitution, _engine(), RedteamSettings(n=10, kinds=["benign"], max_attempts=1, filter=PromptFilter(enabled=False))
    )
    assert "Subject: [Your Name] Message" in [r["prompt"] for r in loose.records]
    assert loose.dropped == {"exact-duplicate": 1, "near-duplicate": 1}


def test_cli_prints_what_it_dropped_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import cai_engine.engine.factory as factory

    monkeypatch.setattr(factory, "build_engine", lambda config, **_: _engine(config))
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "c.yaml"
    path.write_text(CONSTITUTION)
    out = tmp_path / "rt.jsonl"
    main(["redteam", "-c", str(path), "-m", "mock/junk", "-o", str(out), "--kinds", "benign", "--n", "2", "--max-attempts", "1"])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == [GOOD[0], GOOD[1]]
    text = capsys.readouterr()
    printed = text.out + text.err
    assert "7 parsed, 4 dropped (2 by the quality filter, 2 duplicates)" in printed, printed
    assert 'dropped 1 placeholder: e.g. "Subject: [Your Name] Message"' in printed, printed
    assert 'dropped 1 timestamp: e.g. "I\'m here to help. 22:38, May 2020"' in printed, printed
    assert "dropped 1 exact-duplicate" in printed
