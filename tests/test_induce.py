"""`cai constitution induce`: propose -> merge -> test -> keep, proven on labels one hidden property decides.

The fake model (:mod:`induce_helpers`) proposes a principle about the hidden property (the preferred
answer ends with a question), a length principle that fits whichever way each pair goes and a
politeness principle; its judge follows whatever principle it is given. Induction must keep the
question principle with agreement above the others', and the induced constitution must beat the
baseline on the held-out pairs. This checks the algorithm, not a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from induce_helpers import POLITE, Q_WORDINGS, labelled_pairs, running_induce

import cai_engine
from cai_engine.cli import main
from cai_engine.constitution import load_constitution
from cai_engine.errors import CaiError
from cai_engine.induction.merge import Candidate, apply_groups, assign_ids, cluster, parse_groups
from cai_engine.induction.propose import parse_principles
from cai_engine.induction.score import select, vote


def _labels(tmp_path: Path, n: int = 24) -> Path:
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in labelled_pairs(n)))
    return path


def _config(tmp_path: Path, provider: Any) -> Path:
    config = tmp_path / "model.yaml"
    config.write_text(f"base_urls: ['{provider.openai_base}']\nmax_concurrency: 16\n")
    return config


def _is_question_principle(judge: str) -> bool:
    return judge in {w["judge"] for w in Q_WORDINGS}


def test_induce_keeps_the_hidden_property_and_beats_the_baseline(tmp_path: Path) -> None:
    labels, out = _labels(tmp_path), tmp_path / "induced.yaml"
    with running_induce() as provider:
        args = ["constitution", "induce", "--pairs", str(labels), "--model", "openai/fake", "--model-config",
                str(_config(tmp_path, provider)), "-o", str(out), "--no-cache", "--min-agreement", "0.75"]
        main(args)
        calls = dict(provider.kinds)
        main(args)  # a rerun resumes every step: no new request
        assert provider.kinds == calls
        # Only the selection changed: the tests are reused, only the new constitution is judged.
        main([*args[:-2], "--min-agreement", "0.9", "--max-principles", "1"])
        assert provider.kinds["propose"] == calls["propose"] == 12  # half of the 24 pairs propose
        judged = provider.kinds["judge"] - calls["judge"]
        assert 0 < judged <= 12 * 2 * 1  # one new one-principle constitution on 12 held-out pairs, both orders
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["split"] == {"pairs": 24, "proposal": 12, "held_out": 12}
    kept, rejected = report["kept"], report["rejected"]
    assert len(kept) == 1 and _is_question_principle(kept[0]["judge"])
    best = kept[0]["figures"]
    assert best["agreement"] == 1.0 and best["votes"]["for"] == 12 and best["position_consistency"] == 1.0
    others = [c for c in rejected if not _is_question_principle(c["judge"])]
    assert others and all(c["figures"]["agreement"] < best["agreement"] for c in others)
    assert {c["judge"] for c in others} >= {"Which response is more polite?"}
    # The whole constitution against the baseline on the same held-out pairs, with intervals.
    cmp = report["comparison"]
    assert cmp["induced"]["n"] == cmp["baseline"]["n"] == 12
    assert cmp["induced"]["agreement"] > cmp["baseline"]["agreement"]
    assert cmp["difference"]["ci95"][0] > 0.0
    # The YAML validates, and each principle's metadata carry its measured figures.
    main(["constitution", "validate", str(out)])
    induced = load_constitution(out)
    (principle,) = induced.principles
    assert principle.metadata["agreement"] == 1.0 and principle.metadata["support"] == kept[0]["support"] >= 3
    assert principle.metadata["held_out_pairs"] == 12 and principle.tags == ["induced"]
    markdown = out.with_suffix(".md").read_text()
    assert "## Kept" in markdown and "## Rejected" in markdown and "Which response is more polite?" in markdown
    assert "baseline (general@" in markdown


def test_near_duplicates_merge_and_the_model_merges_rewordings(tmp_path: Path) -> None:
    labels = _labels(tmp_path)
    with running_induce() as provider:
        config = _config(tmp_path, provider)
        textsim = cai_engine.induce(labels, model="openai/fake", model_config=config, out=tmp_path / "a.yaml",
                                    no_cache=True, progress=False, baseline="none", min_agreement=0.75)
        by_model = cai_engine.induce(labels, model="openai/fake", model_config=config, out=tmp_path / "b.yaml",
                                     no_cache=True, progress=False, baseline="none", merge="model", min_agreement=0.75)
        assert provider.kinds["merge"] == 1
    question = [c for c in textsim["kept"] + textsim["rejected"] if _is_question_principle(c["judge"])]
    # "... a question to the user?" and "... a question for the user?" are one candidate by text similarity;
    # the reworded "closes by asking the user something back?" only merges when the model merges.
    assert len(question) == 2
    merged = [c for c in by_model["kept"] + by_model["rejected"] if _is_question_principle(c["judge"])]
    assert len(merged) == 1 and merged[0]["support"] == 12 and len(merged[0]["variants"]) == 2
    assert by_model["candidates"]["merged"] == textsim["candidates"]["merged"] - 1
    assert textsim["comparison"] == {"induced": textsim["comparison"]["induced"]}  # --baseline none: no baseline


def test_extends_makes_a_child_with_unique_ids(tmp_path: Path) -> None:
    labels = _labels(tmp_path)
    out = tmp_path / "sub" / "child.yaml"
    parent = load_constitution("general")
    with running_induce() as provider:
        report = cai_engine.induce(str(labels), model="openai/fake", model_config=_config(tmp_path, provider), out=out,
                                   extends="general", no_cache=True, progress=False, min_agreement=0.75, max_principles=2)
    text = out.read_text()
    assert "extends: general" in text
    child = load_constitution(out)
    assert child.principle_ids[: len(parent.principles)] == parent.principle_ids
    induced = [p for p in child.principles if "induced" in p.tags]
    assert induced and len(child.principles) == len(parent.principles) + len(induced)
    assert child.sampling.principles_per_judgment == parent.sampling.principles_per_judgment + len(induced)
    assert report["baseline"].startswith("general@") and report["extends"] == "general"


def test_nothing_kept_is_an_error_with_a_report_and_no_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels, out = _labels(tmp_path, 8), tmp_path / "none.yaml"
    with running_induce(proposals=[POLITE]) as provider, pytest.raises(SystemExit) as exc:
        main(["constitution", "induce", "--pairs", str(labels), "--model", "openai/fake", "--model-config",
              str(_config(tmp_path, provider)), "-o", str(out), "--no-cache", "--per-pair", "1", "--limit", "8"])
    assert exc.value.code == 2
    assert "no candidate reached --min-agreement 0.6" in capsys.readouterr().err
    assert not out.exists()
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["kept"] == [] and [c["id"] for c in report["rejected"]] == ["polite"]
    assert "polite" in out.with_suffix(".md").read_text()


def test_labels_are_required_and_options_checked(tmp_path: Path) -> None:
    unlabelled = tmp_path / "pairs.jsonl"
    unlabelled.write_text("".join(json.dumps({"prompt": f"q{i}", "a": "x", "b": f"y{i}"}) + "\n" for i in range(6)))
    with pytest.raises(CaiError, match="chosen"):
        cai_engine.induce(unlabelled, model="mock/echo", out=tmp_path / "x.yaml", progress=False)
    with pytest.raises(CaiError, match="at least 4"):
        cai_engine.induce(labelled_pairs(3), model="mock/echo", out=tmp_path / "x.yaml", progress=False)
    with pytest.raises(CaiError, match=".yaml"):
        cai_engine.induce(labelled_pairs(6), model="mock/echo", out=tmp_path / "x.txt", progress=False)


# -- the steps on their own ----------------------------------------------------------------------------

def test_proposals_are_read_from_json_lists_and_free_text() -> None:
    full = {"judge": "Which response cites a source?", "critique": "Identify claims without a source.",
            "revision": "Rewrite the response to cite a source."}
    found, how = parse_principles("Sure! " + json.dumps({"principles": [full, {"judge": "Which response is kinder?"}]}), 3)
    assert how == "json" and found[0] == full
    assert found[1]["judge"] == "Which response is kinder?" and found[1]["critique"].startswith("Identify")
    found, how = parse_principles('["Select the response that ends with a question."]', 3)
    assert how == "json" and found[0]["judge"] == "Which response ends with a question?"
    found, how = parse_principles("Here are the rules:\n1. Select the response that gives a date.\n"
                                  "2. Select the response that is shorter.\n3. Select the response that is polite.", 2)
    assert how == "lines" and [p["judge"] for p in found] == ["Which response gives a date?", "Which response is shorter?"]
    found, how = parse_principles("The preferred answer gives the exact boiling point. The other is vague.", 3)
    assert how == "free" and len(found) == 1 and "boiling point" in found[0]["judge"]
    assert parse_principles("ok", 3) == ([], "none")


def test_cluster_keeps_the_commonest_wording_and_counts_support() -> None:
    def rec(rid: str, *judges: str) -> dict[str, Any]:
        return {"id": rid, "principles": [{"judge": j, "critique": "Identify x.", "revision": "Rewrite x."} for j in judges]}

    records = [rec("1", "Which response ends with a question?", "Which response is polite?"),
               rec("2", "Which response ends with a question."),
               rec("3", "Which response ends with a question?", "Which response is shorter?")]
    candidates = cluster(records, 0.6)
    assert [len(c.support) for c in candidates] == [3, 1, 1]
    assert candidates[0].judge == "Which response ends with a question?" and candidates[0].proposals == 3
    merged = apply_groups(candidates, [[1, 2]])
    assert [len(c.support) for c in merged] == [3, 2]
    assert parse_groups("Groups: [[1, 3], [2]]", 3) == [[0, 2]] and parse_groups("no idea", 3) is None
    c = [Candidate("Which response is polite?", "c", "r"), Candidate("Which response is polite?", "c", "r")]
    assign_ids(c, taken={"polite"})
    assert [x.id for x in c] == ["polite_2", "polite_3"]


def _record(label: str, ab: float, ba: float) -> dict[str, Any]:
    return {"status": "ok", "label": label, "per_principle": {"p": {"p_a_ab": ab, "p_a_ba": ba}}}


def test_votes_need_both_orders_to_agree() -> None:
    assert vote(_record("a", 0.9, 0.8), "p") == "for"
    assert vote(_record("b", 0.9, 0.8), "p") == "against"
    assert vote(_record("a", 0.9, 0.2), "p") == "abstain"  # the verdict follows the position
    assert vote(_record("a", 0.5, 0.5), "p") == "tie"


def test_select_orders_by_net_votes_and_applies_the_thresholds() -> None:
    def cand(pid: str, f: int, a: int, agreement: float) -> dict[str, Any]:
        return {"id": pid, "support": 1, "figures": {"n": f + a, "votes": {"for": f, "against": a}, "net_votes": f - a,
                                                     "agreement": agreement}}

    kept, rejected = select([cand("x", 6, 4, 0.6), cand("y", 9, 1, 0.9), cand("z", 8, 2, 0.8), cand("w", 1, 9, 0.1)],
                            min_agreement=0.7, max_principles=1)
    assert [c["id"] for c in kept] == ["y"]
    assert {c["id"]: c["reason"] for c in rejected} == {
        "z": "beyond --max-principles 1", "x": "agreement 0.6 < --min-agreement 0.7", "w": "no more votes for than against"}


def test_max_cost_stops_cleanly_and_a_rerun_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels, out = _labels(tmp_path), tmp_path / "budget.yaml"
    with running_induce() as provider:
        config = tmp_path / "priced.yaml"
        # 1 USD a token: every proposal reply costs ~100 USD, so 250 USD stops after a few.
        config.write_text(f"base_urls: ['{provider.openai_base}']\nmax_concurrency: 1\n"
                          "prices: {input_per_mtok: 1000000, output_per_mtok: 1000000}\n")
        args = ["constitution", "induce", "--pairs", str(labels), "--model", "openai/fake", "--model-config", str(config),
                "-o", str(out), "--no-cache", "--concurrency", "1", "--baseline", "none"]
        with pytest.raises(SystemExit) as exc:
            main([*args, "--max-cost", "250"])
        assert exc.value.code == 2 and "--max-cost 250" in capsys.readouterr().err
        paid = provider.kinds["propose"]
        assert 1 <= paid < 12 and not out.exists()
        main(args)  # no budget this time: continues where it stopped
        assert provider.kinds["propose"] == 12  # nothing proposed twice
    assert load_constitution(out).principles


async def test_ainduce_runs_inside_an_event_loop_on_conversation_prompts(tmp_path: Path) -> None:
    assert {"induce", "ainduce", "audit"} <= set(cai_engine.__all__)
    rows = [{**r, "prompt": [{"role": "user", "content": "Hi, I need some help."},
                             {"role": "assistant", "content": "Sure, with what?"}, {"role": "user", "content": r["prompt"]}]}
            for r in labelled_pairs(12)]
    with running_induce() as provider:
        report = await cai_engine.ainduce(rows, model="openai/fake", model_config=_config(tmp_path, provider),
                                          out=tmp_path / "nb.yaml", baseline="none", no_cache=True, progress=False,
                                          min_agreement=0.75)
    assert report["kept"] and _is_question_principle(report["kept"][0]["judge"])
    assert report["labels"] == "python list" and (tmp_path / "nb.induce" / "input_pairs.jsonl").exists()
    tested = [json.loads(line) for line in (tmp_path / "nb.induce" / "tests.jsonl").read_text().splitlines()]
    assert all(len(r["messages"]) == 3 for r in tested)  # the judge saw the whole conversation


def test_induce_reads_an_hf_datasets_folder(tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "ds"
    datasets.Dataset.from_list(labelled_pairs(12)).save_to_disk(str(folder))
    with running_induce() as provider:
        report = cai_engine.induce(f"hf:{folder}", model="openai/fake", model_config=_config(tmp_path, provider),
                                   out=tmp_path / "hf.yaml", baseline="none", no_cache=True, progress=False,
                                   min_agreement=0.75, limit=10)
    assert report["split"]["pairs"] == 10 and report["kept"]


def test_principle_metadata_loads_and_stays_out_of_the_hash(tmp_path: Path) -> None:
    plain = "name: m\nprinciples:\n  - id: p\n    critique: Identify x.\n    revision: Rewrite x.\n"
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(plain)
    b.write_text(plain + "    metadata: {agreement: 0.9, votes: {for: 9}}\n")
    with_meta = load_constitution(b)
    assert with_meta.principles[0].metadata == {"agreement": 0.9, "votes": {"for": 9}}
    assert with_meta.hash == load_constitution(a).hash  # figures do not change how a principle judges
