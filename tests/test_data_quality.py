"""Data you can trust: truncated rows, other settings' rows and coin-flip pairs are dropped and
counted; every export writes ``quality.json``; ``cai view`` shows the same report and the chain of
pairs judged into their own folder."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from cai_engine.cli import main
from cai_engine.constitution import Constitution
from cai_engine.engine.engine import Engine
from cai_engine.engine.records import latest_records
from cai_engine.exports.preference import export_preference
from cai_engine.pipelines.quality import DEFAULT_MIN_CONFIDENCE, DuplicateCounter
from cai_engine.exports.sft import export_sft
from cai_engine.models.base import ChatRequest, ChatResponse, Choice, ModelConfig, SamplingParams
from cai_engine.models.mock import MockModel
from cai_engine.pipelines.candidates import CandidateGenerator, PairSpec, revision_pairs
from cai_engine.pipelines.judge import JudgeSettings, run_judge
from cai_engine.pipelines.revise import ReviseSettings, run_revise
from cai_engine.sources import PromptItem, Turn
from cai_engine.workbench.preview import PreviewItem, judge_line, summary_line
from cai_engine.workbench.viewer import build_items, find_files, write_viewer

CONSTITUTION = Constitution(
    name="t", system_prompt="Be helpful.",
    principles=[{"id": "honest", "critique": "Find false claims.", "revision": "Fix them.", "judge": "Which is more accurate?"}],
)
MAX_TOKENS = 12


class TruncatingMock(MockModel):
    """The mock provider with a token limit: a reply longer than ``max_tokens`` words is cut there
    and comes back with ``finish_reason: length``, as a real server does."""

    async def generate(self, request: ChatRequest) -> ChatResponse:
        response = await super().generate(request)
        limit = request.params.max_tokens
        choices = [Choice(text=" ".join(c.text.split()[:limit]), finish_reason="length") if limit and len(c.text.split()) > limit else c
                   for c in response.choices]
        return response.model_copy(update={"choices": choices})


def policy_reply(request: ChatRequest) -> str:
    """A long initial answer for prompts that ask for an essay; short critiques and revisions."""
    last = request.messages[-1].content
    if "Find false claims" in last:
        return "The answer could be clearer."
    if "Fix them" in last:
        return "A clear revised answer."
    return ("word " * 40).strip() if "essay" in last else f"Short answer to {last[:20]}"


def _engine(name: str, responder: Any) -> Engine:
    config = ModelConfig(spec=f"mock/{name}")
    return Engine(TruncatingMock(name, config, responder=responder), config)


PROMPTS = ["Write an essay on rivers", "What is 2+2?", "Write an essay on lakes", "Name a colour"]


def judge_prefers_b(request: ChatRequest) -> str:
    """Prefers the revision (it says 'revised') whichever side shows it."""
    user = request.messages[-1].content
    block_a = user.split("<response_A>\n", 1)[1].split("\n</response_A>", 1)[0]
    return "A" if "revised" in block_a else "B"


@pytest.fixture(scope="module")
def revised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dq") / "rev"
    settings = ReviseSettings(constitution=CONSTITUTION, params=SamplingParams(max_tokens=MAX_TOKENS), rounds=1,
                              principles_per_round=1, few_shot=0, seed=0)
    items = [PromptItem(messages=(Turn("user", p),), row=i) for i, p in enumerate(PROMPTS)]
    asyncio.run(run_revise(items, engine=_engine("policy", policy_reply), settings=settings,
                           out_path=out / "revisions.jsonl", concurrency=1))
    return out


@pytest.fixture(scope="module")
def judged(revised: Path) -> Path:
    """Pairs from the revise run, judged into their own folder (as the README shows)."""
    out = revised.parent / "pairs"
    asyncio.run(run_judge(revision_pairs(revised), engine=_engine("judge", judge_prefers_b),
                          settings=JudgeSettings(constitution=CONSTITUTION), out_path=out / "pairs.jsonl", concurrency=1))
    return out


def test_revise_records_say_which_steps_were_truncated(revised: Path) -> None:
    records = {r["prompt"]: r for r in latest_records(revised / "revisions.jsonl")}
    essay = records["Write an essay on rivers"]
    assert essay["finish_reasons"] == ["length", "stop", "stop"]
    assert essay["truncated"] is True and essay["truncated_steps"] == ["initial"]
    assert records["What is 2+2?"]["truncated"] is False and records["What is 2+2?"]["truncated_steps"] == []


def test_sft_export_drops_truncated_rows_and_counts_them(revised: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import datasets

    main(["export", "sft", str(revised), "--out", str(tmp_path / "sft")])
    out = " ".join(capsys.readouterr().err.split())
    assert "kept 2 of 4 records, dropped 2 (truncated 2)" in out and "truncation rate 0.5" in out
    ds = datasets.load_from_disk(str(tmp_path / "sft" / "dataset"))
    assert sorted(m[0]["content"] for m in ds["messages"]) == ["Name a colour", "What is 2+2?"]
    quality = json.loads((tmp_path / "sft" / "quality.json").read_text())
    assert quality["rows"]["dropped"]["truncated"] == 2 and quality["truncation_rate"] == 0.5
    assert json.loads((tmp_path / "sft" / "card.json").read_text())["quality"] == quality
    card = (tmp_path / "sft" / "README.md").read_text()
    assert "## Data quality" in card and "| dropped: truncated | 2 |" in card and "| truncation rate | 0.5 |" in card

    figures = export_sft(revised, tmp_path / "all", keep_truncated=True)
    assert figures["rows_exported"] == 4 and figures["quality"]["rows"]["dropped"]["truncated"] == 0


def test_pairs_from_truncated_revisions_are_truncated_and_dropped(judged: Path, tmp_path: Path) -> None:
    records = {r["prompt"]: r for r in latest_records(judged / "pairs.jsonl")}
    essay = records["Write an essay on rivers"]
    assert essay["truncated"] is True and essay["candidates"][0]["source"]["truncated"] is True
    assert records["Name a colour"]["truncated"] is False
    figures = export_preference(judged, tmp_path / "dpo", kind="dpo")
    quality = figures["quality"]
    assert figures["rows_exported"] == 2 and quality["rows"]["dropped"]["truncated"] == 2
    assert quality["truncation_rate"] == 0.5 and quality["position_consistency_rate"] == 1.0
    kept = export_preference(judged, tmp_path / "dpo-all", kind="dpo", keep_truncated=True)
    assert kept["rows_exported"] == 4


def test_generated_candidates_keep_their_finish_reason(tmp_path: Path) -> None:
    policy = _engine("policy", policy_reply)
    generator = CandidateGenerator("samples", policy, SamplingParams(max_tokens=MAX_TOKENS, temperature=1.0))
    spec = PairSpec(prompt="Write an essay on seas", origin={"kind": "samples"})
    filled, _ = asyncio.run(generator.fill(spec))
    assert filled.a is not None and filled.a.source["finish_reason"] == "length" and filled.a.source["truncated"] is True
    asyncio.run(run_judge([spec], engine=_engine("judge", judge_prefers_b), settings=JudgeSettings(constitution=CONSTITUTION),
                          out_path=tmp_path / "pairs.jsonl", concurrency=1, generator=generator))
    (record,) = latest_records(tmp_path / "pairs.jsonl")
    assert record["truncated"] is True


# --- a known small set: the report's figures -------------------------------------------------


def _revision(rid: str, prompt: str, initial: str, final: str, critique: str = "Needs work.", *,
              finish: list[str] | None = None, status: str = "ok", settings_id: str = "new") -> dict[str, Any]:
    record: dict[str, Any] = {"id": rid, "status": status, "prompt": prompt, "messages": [{"role": "user", "content": prompt}],
                              "constitution": {"name": "t", "hash": "h"}, "model": "mock/p", "settings_id": settings_id}
    if status == "ok":
        record.update(initial_response=initial, final_response=final, finish_reasons=finish or ["stop", "stop", "stop"],
                      rounds=[{"round": 0, "principle_id": "honest" if int(rid[1:]) % 2 else "kind", "critique": critique, "revision": final}])
    return record


def _settings(folder: Path, kind: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps({"kind": kind, "current": "new", "settings": {
        "old": {"settings": {"rounds": 1}, "first_used": "x"}, "new": {"settings": {"rounds": 2}, "first_used": "y"}}}))


KNOWN_REVISIONS = [
    _revision("r1", "What is 2+2?", "4", "The answer is 4."),
    _revision("r2", "what is 2 + 2", "four", "Four, since two and two make four."),  # exact duplicate prompt of r1
    _revision("r3", "Explain photosynthesis to a ten year old in simple words please", "Plants eat light.",
              "This answer is too vague and should mention sunlight and water.",
              critique="This answer is too vague and should mention sunlight and water."),  # revision == critique
    _revision("r4", "Explain photosynthesis to a ten year old child in simple words please", "No.",
              "I'm sorry, but I can't help with that."),  # near-duplicate prompt of r3; a refusal
    _revision("r5", "Capital of France?", "The answer is 4.", "The answer is 4."),  # final == initial; target = r1's
    _revision("r6", "A long one", "cut", "cut off mid", finish=["stop", "stop", "length"]),  # truncated
    _revision("r7", "Broken", "", "", status="failed"),
    _revision("r8", "Old settings", "a", "b", settings_id="old"),
]


def test_sft_quality_figures_on_a_known_set(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _settings(run, "revise")
    (run / "revisions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in KNOWN_REVISIONS))
    figures = export_sft(run, tmp_path / "sft")
    q = json.loads((tmp_path / "sft" / "quality.json").read_text())
    assert q == figures["quality"]
    assert q["rows"] == {"records": 8, "ok": 6, "failed": 1, "kept": 5, "dropped_total": 3,
                         "dropped": {"other_settings": 1, "failed": 1, "truncated": 1, "unchanged": 0}}
    assert q["truncation_rate"] == round(1 / 6, 4) and q["truncated_records"] == 1
    assert q["duplicates"]["prompts"] == {"exact": 1, "near": 1, "near_checked": 5}
    assert q["duplicates"]["targets"] == {"exact": 1, "near": 0, "near_checked": 5}
    assert q["degenerate_revisions"] == {"revision_equals_critique": 1, "final_equals_initial": 1}
    assert q["refusal_rate"] == {"targets": 0.2}
    assert q["principle_draws"] == {"honest": 3, "kind": 3}  # r1..r6, over the ok records of these settings
    assert figures["rows_exported"] == 5 and figures["records_failed"] == 1

    every = export_sft(run, tmp_path / "every", all_settings=True)
    assert every["rows_exported"] == 6 and every["quality"]["rows"]["dropped"]["other_settings"] == 0


def _pair(rid: str, chosen: str, confidence: float, consistent: bool, *, truncated: bool = False, status: str = "ok",
          lengths: tuple[int, int] = (5, 5), settings_id: str = "new") -> dict[str, Any]:
    a, b = "a" * lengths[0], "b" * lengths[1]
    record: dict[str, Any] = {
        "id": rid, "status": status, "prompt": f"prompt {rid}", "messages": [{"role": "user", "content": f"prompt {rid}"}],
        "origin": {"kind": "test"}, "candidates": [{"id": "a", "text": a, "source": {"truncated": truncated}}, {"id": "b", "text": b, "source": {}}],
        "judge_model": "mock/j", "constitution": {"name": "t", "hash": "h"}, "truncated": truncated, "settings_id": settings_id,
        "principles": ["honest"], "judgments": [],
    }
    if status == "ok":
        record.update(chosen=chosen, confidence=confidence, consistent=consistent,
                      p_a_better=confidence if chosen == "a" else 1 - confidence, per_principle={})
    return record


KNOWN_PAIRS = [
    _pair("p1", "a", 0.9, True, lengths=(9, 3)),  # kept, longer chosen
    _pair("p2", "b", 0.55, True),  # below the floor
    _pair("p3", "a", 0.8, False),  # position-inconsistent
    _pair("p4", "tie", 0.5, True),
    _pair("p5", "a", 0.9, True, truncated=True),
    _pair("p6", "a", 0.9, True, status="failed"),
    _pair("p7", "b", 0.7, True, lengths=(9, 3)),  # kept, shorter chosen
    _pair("p8", "a", 0.9, True, settings_id="old"),
]


@pytest.fixture()
def known_pairs(tmp_path: Path) -> Path:
    run = tmp_path / "pairs"
    _settings(run, "judge")
    (run / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in KNOWN_PAIRS))
    return run


def test_preference_defaults_keep_only_real_preferences(known_pairs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import datasets

    assert DEFAULT_MIN_CONFIDENCE == 0.6
    main(["export", "dpo", str(known_pairs), "--out", str(tmp_path / "dpo")])
    out = " ".join(capsys.readouterr().err.split())
    assert ("kept 2 of 8 records, dropped 6 (other_settings 1, failed 1, truncated 1, tie 1, inconsistent 1, "
            "low_confidence 1)") in out
    assert sorted(datasets.load_from_disk(str(tmp_path / "dpo" / "dataset"))["id"]) == ["p1", "p7"]
    q = json.loads((tmp_path / "dpo" / "quality.json").read_text())
    assert q["rows"]["kept"] == 2 and q["rows"]["records"] == 8 and q["rows"]["ok"] == 6
    assert q["truncation_rate"] == round(1 / 6, 4)
    assert q["position_consistency_rate"] == round(5 / 6, 4) and q["tie_rate"] == round(1 / 6, 4)
    assert q["longer_wins_rate"] == {"all": 0.5, "kept": 0.5}
    assert q["filters"]["min_confidence"] == 0.6 and q["filters"]["drop_inconsistent"] is True
    assert q["principle_draws"] == {"honest": 6}

    # Each default is overridable.
    main(["export", "dpo", str(known_pairs), "--out", str(tmp_path / "keep"), "--keep-inconsistent"])
    assert sorted(datasets.load_from_disk(str(tmp_path / "keep" / "dataset"))["id"]) == ["p1", "p3", "p7"]
    main(["export", "reward", str(known_pairs), "--out", str(tmp_path / "loose"), "--keep-inconsistent", "--min-confidence", "0.5",
          "--keep-truncated", "--all-settings"])
    assert sorted(datasets.load_from_disk(str(tmp_path / "loose" / "dataset"))["id"]) == ["p1", "p2", "p3", "p5", "p7", "p8"]
    strict = export_preference(known_pairs, tmp_path / "strict", kind="dpo", min_confidence=0.8)
    assert strict["rows_exported"] == 1 and strict["dropped"]["low_confidence"] == 2


def test_near_duplicates_stay_bounded() -> None:
    counter = DuplicateCounter(sample=3)
    for text in ["one two three four five", "one two three four five!", "one two three four fives", "zzz", "zzz"]:
        counter.add(text)
    assert counter.figures() == {"exact": 2, "near": 1, "near_checked": 3}


# --- viewer and preview --------------------------------------------------------------------


def _embedded(html: str) -> dict[str, Any]:
    blob = re.search(r'<script id="cai-data" type="application/json">(.*?)</script>', html, re.S)
    assert blob is not None
    return json.loads(blob.group(1))


def test_view_of_pairs_in_their_own_folder_shows_chain_report_and_truncation(judged: Path, revised: Path, tmp_path: Path) -> None:
    assert set(find_files(judged)) == {"pairs"}  # no revisions.jsonl beside the pairs
    items = {i["prompt"]: i for i in build_items(find_files(judged))}
    essay = items["Write an essay on rivers"]
    assert essay["revision"] is not None and essay["revision"]["rounds"][0]["critique"] == "The answer could be clearer."
    assert essay["revision"]["source"] == str(revised / "revisions.jsonl")
    assert essay["revision"]["truncated_steps"] == ["initial"] and essay["pair"]["a_truncated"] and essay["pair"]["b_truncated"]

    page, _ = write_viewer(judged, tmp_path / "view.html")
    html = page.read_text()
    data = _embedded(html)
    pairs = data["quality"]["pairs"]
    assert pairs["rows"]["kept"] == 2 and pairs["rows"]["dropped"]["truncated"] == 2 and pairs["truncation_rate"] == 0.5
    assert "2 truncated" in data["summary"]
    assert 'data-testid="legend"' in html and "green outline: the judge's pick" in html and 'data-testid="quality"' in html

    rev_page, _ = write_viewer(revised, tmp_path / "rev.html")
    assert _embedded(rev_page.read_text())["quality"]["sft"]["rows"]["dropped"]["truncated"] == 2


def test_view_and_preview_call_a_pick_within_the_floor_a_tie(known_pairs: Path, tmp_path: Path) -> None:
    items = {i["id"]: i["pair"] for i in build_items(find_files(known_pairs))}
    assert items["p2"]["chosen"] == "b" and items["p2"]["pick"] == "tie" and items["p7"]["pick"] == "b"
    data = _embedded(write_viewer(known_pairs, tmp_path / "v.html")[0].read_text())
    assert "1 within the 0.6 floor" in data["summary"]
    assert data["quality"]["pairs"]["rows"]["kept"] == 2  # other settings' pair p8 counted as dropped

    revision = {"status": "ok", "initial_response": "a", "final_response": "b", "rounds": []}
    weak = {"status": "ok", "chosen": "b", "confidence": 0.55, "p_a_better": 0.45, "consistent": True, "per_principle": {}}
    strong = {**weak, "confidence": 0.9, "p_a_better": 0.1}
    line = judge_line(weak).plain
    assert "tie (within the 0.6 confidence floor; leaned revised)" in line and "prefers revised" not in line
    assert "prefers revised" in judge_line(strong).plain
    summary = summary_line([PreviewItem("p", revision, weak), PreviewItem("q", revision, strong)])
    assert "judge prefers the revision in 1/2 (1 ties or within the 0.6 floor)" in summary
