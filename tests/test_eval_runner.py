"""``evaluate`` end to end on scripted mock models: each metric against hand counts, resume, failures, CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

import pytest

from cai_engine.constitution import load_constitution
from cai_engine.engine.engine import Engine
from cai_engine.engine.records import read_jsonl
from cai_engine.evaluation.config import EvalConfig
from cai_engine.evaluation.runner import EvalEngines, evaluate_async
from cai_engine.evaluation.sets import load_set
from cai_engine.models.base import ChatRequest

HELDOUT = load_set("heldout")
REDTEAM = load_set("redteam")
BENIGN = load_set("benign_risky")
PROBES = load_set("sycophancy")
BLOCK = re.compile(r"<response_([AB])>\n(.*?)\n</response_\1>", re.S)


def mock(name: str, responder: Callable[[ChatRequest], str]) -> Engine:
    engine = Engine.from_config(f"mock/{name}")
    engine.model.responder = responder  # type: ignore[attr-defined]
    return engine


def calls(engine: Engine) -> int:
    return len(engine.model.calls)  # type: ignore[attr-defined]


def index_of(items, text: str) -> int | None:
    return next((i.index for i in items if i.prompt == text), None)


def trained_reply(request: ChatRequest) -> str:
    """Held-out: GOOD on 0-5, BAD on 6-7, ODD on 8 (the judge is position-biased on it), base's text on 9-11.
    Red-team: refuses 0-3, complies (Step 1) on 4-11. Benign: refuses 0-2. Sycophancy: always right first,
    gives in to pushback on probes 0, 1, 2 (3 flips of 10)."""
    first = request.messages[0].content
    if len(request.messages) == 3:  # a pushback turn
        i = index_of(PROBES, first)
        return "You're right, I apologize for the mistake." if i in (0, 1, 2) else f"I am sure: {PROBES[i].answer}."
    if (i := index_of(PROBES, first)) is not None:
        return f"The answer is {PROBES[i].answer}."
    if (i := index_of(HELDOUT, first)) is not None:
        return f"GOOD answer {i}" if i < 6 else f"BAD answer {i}" if i < 8 else "ODD answer" if i == 8 else f"plain answer {i}"
    if (i := index_of(REDTEAM, first)) is not None:
        return "I'm sorry, but I can't help with that." if i < 4 else f"Sure. Step 1: do harmful thing {i}."
    i = index_of(BENIGN, first)
    return "I cannot help with that." if i < 3 else f"Happy to help with question {i}."


def base_reply(request: ChatRequest) -> str:
    """Held-out: 'plain answer i'. Red-team: always refuses. Benign: refuses all. Sycophancy: wrong first on probes 8, 9."""
    first = request.messages[0].content
    if (i := index_of(PROBES, first)) is not None:
        wrong = i in (8, 9)
        if len(request.messages) == 3:
            return "Still the same." if wrong else f"I stand by {PROBES[i].answer}."
        return "I do not know." if wrong else f"It is {PROBES[i].answer}."
    if (i := index_of(HELDOUT, first)) is not None:
        return f"plain answer {i}"
    return "I'm sorry, but I cannot help with that."


def judge_reply(request: ChatRequest) -> str:
    content = request.messages[-1].content
    if "<request>" in content:  # harm / refusal classification
        response = content.split("<response>\n", 1)[1]
        if "Does the response refuse" in content:
            return "Yes" if "help with that" in response else "No"
        return "Yes" if "Step 1" in response else "No"
    shown = dict(BLOCK.findall(content))
    if "ODD" in shown["A"] or "ODD" in shown["B"]:
        return "A"  # pure position bias: inconsistent, a tie after both orders
    if "GOOD" in shown["A"] or "BAD" in shown["B"]:
        return "A"
    return "B"


def engines() -> EvalEngines:
    return EvalEngines(mock("trained", trained_reply), mock("base", base_reply), mock("judge", judge_reply))


def config(**kw) -> EvalConfig:
    return EvalConfig(model="mock/trained", base_model="mock/base", judge_model="mock/judge", n_boot=300, **kw)


async def test_every_metric_matches_hand_counts(tmp_path: Path) -> None:
    report = await evaluate_async(config(judge_refusals=True), tmp_path, engines=engines())
    w = report.winrate
    assert w is not None
    # wins 0-5, losses 6-7, ties: 8 (inconsistent judge) and 9-11 (identical answers)
    assert (w.wins, w.losses, w.ties, w.identical, w.judged, w.failed) == (6, 2, 4, 3, 12, 0)
    assert w.win_rate == round(8 / 12, 4) and w.decisive_win_rate == 0.75
    assert w.judged_by_judge == 9 and w.consistency_rate == round(8 / 9, 4)
    assert w.win_rate_ci95 is not None and w.win_rate_ci95[0] <= w.win_rate <= w.win_rate_ci95[1]
    k = load_constitution("general").sampling.principles_per_judgment
    assert w.verdict_methods == {"parsed": 9 * 2 * k}  # every compared pair: k principles x both orders

    s = report.safety
    assert s is not None and s.failed == 0
    assert (s.trained.harmful, s.trained.harm_judged, s.trained.harmful_rate) == (8, 12, round(8 / 12, 4))
    assert s.trained.refusal_rate_redteam == round(4 / 12, 4) and s.trained.over_refusal_rate == 0.25
    assert s.base.harmful_rate == 0.0 and s.base.refusal_rate_redteam == 1.0 and s.base.over_refusal_rate == 1.0
    assert s.trained.judge_over_refusal_rate == 0.25 and s.base.judge_over_refusal_rate == 1.0
    assert s.trained.detector_judge_disagreement == 0

    y = report.sycophancy
    assert y is not None
    assert (y.trained.probes, y.trained.first_correct, y.trained.flips, y.trained.flip_rate) == (10, 10, 3, 0.3)
    assert y.trained.conceded == 3
    assert (y.base.first_correct, y.base.first_accuracy, y.base.flips, y.base.flip_rate) == (8, 0.8, 0, 0.0)

    t = report.text
    assert t is not None
    expected = [f"GOOD answer {i}" for i in range(6)] + ["BAD answer 6", "BAD answer 7", "ODD answer"] + [f"plain answer {i}" for i in (9, 10, 11)]
    assert t.trained["heldout"].mean_chars == round(sum(map(len, expected)) / 12, 2)
    assert t.base["redteam"].distinct_2 == round(10 / (10 * 12), 4)  # one 11-token refusal repeated 12 times
    assert set(t.trained) == {"heldout", "redteam", "benign_risky", "sycophancy", "all"} and t.trained["all"].n == 46

    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["winrate"]["wins"] == 6 and saved["model"] == "mock/trained" and saved["constitution"]["name"] == "general"


async def test_records_are_written_and_a_rerun_resumes_without_duplicates(tmp_path: Path) -> None:
    first = engines()
    small = await evaluate_async(config(limit=3), tmp_path, engines=first)
    assert small.winrate is not None and small.winrate.prompts == 3
    n_first = calls(first.trained) + calls(first.judge)
    assert n_first > 0

    again = engines()
    rerun = await evaluate_async(config(limit=3), tmp_path, engines=again)
    assert calls(again.trained) == calls(again.base) == calls(again.judge) == 0  # everything resumed
    assert rerun.model_dump(exclude={"wall_s", "engines"}) == small.model_dump(exclude={"wall_s", "engines"})

    more = engines()
    full = await evaluate_async(config(), tmp_path, engines=more)
    # only the prompts beyond the first 3 of each set are new (sycophancy: two turns each)
    assert calls(more.trained) == (12 - 3) * 3 + (10 - 3) * 2
    for name in ("generations.jsonl", "winrate_pairs.jsonl", "classifications.jsonl"):
        ids = [r["id"] for r in read_jsonl(tmp_path / name)]
        assert len(ids) == len(set(ids)), name
    assert full.winrate is not None and full.winrate.wins == 6 and full.sycophancy.trained.flips == 3  # type: ignore[union-attr]


async def test_same_model_as_trained_and_base_answers_once_and_ties(tmp_path: Path) -> None:
    shared = mock("same", trained_reply)
    judge = mock("judge", judge_reply)
    report = await evaluate_async(config(metrics=["winrate", "sycophancy"], limit=4), tmp_path,
                                  engines=EvalEngines(shared, shared, judge))
    assert calls(shared) == 4 + 4 * 2  # one set of answers serves both roles
    assert report.winrate is not None and report.winrate.ties == 4 and report.winrate.win_rate == 0.5
    assert calls(judge) == 0 and report.winrate.identical == 4
    assert any("same model" in n for n in report.notes)
    assert report.sycophancy.trained == report.sycophancy.base  # type: ignore[union-attr]


async def test_failures_are_counted_not_scored_and_retry_failed_redoes_them(tmp_path: Path) -> None:
    def flaky_judge(request: ChatRequest) -> str:
        return "I am not sure." if "<request>" in request.messages[-1].content else judge_reply(request)

    broken = EvalEngines(mock("trained", trained_reply), Engine.from_config("mock/fail"), mock("judge", flaky_judge))
    report = await evaluate_async(config(metrics=["winrate", "safety"], limit=2), tmp_path, engines=broken)
    assert report.generation_failures == 2 * 3  # base failed on heldout, redteam, benign (2 each)
    assert report.winrate is not None and report.winrate.judged == 0 and report.winrate.failed == 2 and report.winrate.win_rate is None
    assert report.safety is not None and report.safety.failed == 2 and report.safety.trained.harm_judged == 0
    failed = [r for r in read_jsonl(tmp_path / "classifications.jsonl") if r["status"] == "failed"]
    assert len(failed) == 2 and all(len(r["raw"]) == 3 for r in failed)  # first try + 2 retries kept verbatim

    fixed = await evaluate_async(config(metrics=["winrate", "safety"], limit=2, retry_failed=True), tmp_path, engines=engines())
    assert fixed.generation_failures == 0 and fixed.winrate.judged == 2  # type: ignore[union-attr]
    assert fixed.safety.failed == 0 and fixed.safety.trained.harm_judged == 2  # type: ignore[union-attr]


@pytest.fixture()
def scripted_provider() -> None:
    """``evalscripted/trained|base|judge``: the scripted models above as a registered provider, for the CLI."""
    from cai_engine.models.mock import MockModel
    from cai_engine.models.registry import register

    replies = {"trained": trained_reply, "base": base_reply, "judge": judge_reply}

    @register("evalscripted")
    def create(name, config):  # type: ignore[no-untyped-def]
        model = MockModel(name, config, responder=replies[name])
        model.spec = f"evalscripted/{name}"
        return model


def test_cli_eval_prints_the_figures_and_writes_the_report(tmp_path: Path, scripted_provider: None, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from cai_engine.cli import main

    monkeypatch.setenv("COLUMNS", "200")

    out = tmp_path / "eval"
    argv = ["eval", "-m", "evalscripted/trained", "-b", "evalscripted/base", "-j", "evalscripted/judge", "-o", str(out), "--no-cache"]
    main(argv)
    flat = " ".join(capsys.readouterr().out.split())
    report = json.loads((out / "eval.json").read_text())
    assert report["winrate"]["wins"] == 6 and report["sycophancy"]["trained"]["flip_rate"] == 0.3
    assert "W/T/L 6/4/2" in flat and "0.300 (3/10)" in flat
    assert "eval" in json.loads((out / "manifest.json").read_text())["stages"]
    assert {p.name for p in out.iterdir()} >= {"eval.json", "generations.jsonl", "winrate_pairs.jsonl", "classifications.jsonl"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metrics", "winrate,speed"], "--metrics 'winrate,speed': use a comma-separated subset"),
        (["--heldout", "/nonexistent/h.jsonl"], "heldout prompt set /nonexistent/h.jsonl not found"),
        (["-c", "/nonexistent/c.yaml"], "c.yaml"),
    ],
)
def test_cli_eval_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    from cai_engine.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "-m", "mock/a", "-b", "mock/b", "-o", str(tmp_path / "o"), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
