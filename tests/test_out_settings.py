"""OUT remembers its settings: a rerun with others is refused in one line that names them;
``--new-settings`` keeps both apart (records stamped with their settings_id)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cai_engine
from cai_engine.engine.outsettings import claim, differences, record_filter
from cai_engine.engine.records import read_jsonl
from cai_engine.errors import ConfigError

PROMPTS = ["one?", "two?", "three?", "four?"]


def test_a_rerun_with_other_rounds_is_refused_and_names_the_difference(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cai_engine.revise(PROMPTS, model="mock/echo", out=out, rounds=1, progress=False)
    with pytest.raises(ConfigError) as err:
        cai_engine.revise(PROMPTS, model="mock/echo", out=out, rounds=2, progress=False)
    message = str(err.value)
    assert "rounds: 1 -> 2" in message and "--new-settings" in message and "\n" not in message
    assert len(list(read_jsonl(out / "revisions.jsonl"))) == 4  # nothing was added

    again = cai_engine.revise(PROMPTS, model="mock/echo", out=out, rounds=2, new_settings=True, progress=False)
    assert again.summary.done == 4
    records = list(read_jsonl(out / "revisions.jsonl"))
    assert len(records) == 8 and len({r["settings_id"] for r in records}) == 2
    keep = record_filter(out / "revisions.jsonl")
    current = [r for r in records if keep(r)]
    assert len(current) == 4 and all(len(r["rounds"]) == 2 for r in current)
    settings = json.loads((out / "settings.json").read_text())
    assert len(settings["settings"]) == 2 and settings["current"] == current[0]["settings_id"]


def test_the_same_settings_resume_and_the_cli_refuses_in_one_line(tmp_path: Path) -> None:
    from cai_engine.cli import main

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    args = ["revise", "-c", "general", "-p", str(prompts), "-o", str(tmp_path / "o"), "-m", "mock/echo"]
    main([*args, "--rounds", "1"])
    main([*args, "--rounds", "1"])  # same settings: resumes
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--rounds", "1", "--seed", "7"])
    assert exit_info.value.code == 2


def test_claim_and_differences(tmp_path: Path) -> None:
    a = {"rounds": 1, "params": {"temperature": 0.0, "max_tokens": 64}, "model": "m"}
    b = {"rounds": 1, "params": {"temperature": 0.7, "max_tokens": 64}, "model": "n"}
    assert differences(a, b) == ['model: "m" -> "n"', "params.temperature: 0.0 -> 0.7"]
    sid = claim(tmp_path, "revise", a)
    assert claim(tmp_path, "revise", a) == sid
    with pytest.raises(ConfigError, match="holds revise records"):
        claim(tmp_path, "judge", a)
