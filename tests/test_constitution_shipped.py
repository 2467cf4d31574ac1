"""Shipped constitutions, CAI recipe JSON import, and the `cai constitution` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from cai_engine.cli import main
from cai_engine.constitution import (
    CaiImportWarning,
    constitution_from_cai_json,
    load_constitution,
    shipped_dir,
    shipped_names,
)
from cai_engine.errors import ConfigError

SHIPPED = ["general", "medical", "tutoring", "customer_service", "coding"]
RECIPE = shipped_dir() / "examples" / "cai_recipe.json"


def test_all_five_are_shipped():
    assert set(SHIPPED) <= set(shipped_names())
    # inside the package (so a wheel carries them), not beside it in the checkout
    assert shipped_dir().is_relative_to(Path(__import__("cai_engine").__file__).parent)


def test_cli_list_shows_the_shipped_names(capsys):
    code, out, err = _cai(capsys, "constitution", "list")
    assert code == 0, err
    listed = [line.split()[0] for line in out.splitlines()]
    assert listed == sorted(shipped_names()) and set(SHIPPED) <= set(listed)
    assert all("principles" in line for line in out.splitlines())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_constitution_is_complete(name: str):
    c = load_constitution(name)
    assert c.name == name and c.source_path == shipped_dir() / f"{name}.yaml"
    assert len(c.principles) >= 8
    assert c.system_prompt and len(c.system_prompt) > 100
    assert c.description
    for p in c.principles:
        assert p.judge and p.judge.endswith("?"), p.id
        assert p.tags, p.id
        assert p.critique.startswith("Identify "), p.id
        assert p.revision.startswith("Rewrite the "), p.id
    assert len(c.few_shot) == 2
    for ex in c.few_shot:
        assert ex.principle in c.principle_ids
        assert len(ex.revision) > 150 and len(ex.critique) > 100
    assert c.sampling.rounds == 2 and c.sampling.principles_per_round == 1
    # sampling works for every shipped setting
    assert len(c.sample_principles(c.sampling.principles_per_judgment, key="x")) == c.sampling.principles_per_judgment
    # by path as well as by name, same content hash
    assert load_constitution(shipped_dir() / f"{name}.yaml").hash == c.hash


def test_domain_substance():
    text = {n: (shipped_dir() / f"{n}.yaml").read_text().lower() for n in SHIPPED}
    assert "emergency" in text["medical"] and "label" in text["medical"] and "pharmacist" in text["medical"]
    assert "hint" in text["tutoring"] and "understand" in text["tutoring"] and "age" in text["tutoring"]
    assert "escalat" in text["customer_service"] and "verif" in text["customer_service"]
    assert "injection" in text["coding"] and "destructive" in text["coding"] and "test" in text["coding"]


def test_recipe_import_maps_principles_and_few_shot():
    data = json.loads(RECIPE.read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the shipped example imports without a single warning
        c = constitution_from_cai_json(data, name="recipe")
    assert c.principle_ids == ["p01", "p02", "p03", "p04"]
    assert c.principle("p01").critique == data["constitutions"][0]["critic"]
    assert len(c.few_shot) == len(data["system_chat"]) == 2
    first = data["system_chat"][0]
    assert c.few_shot[0].prompt == first[0]["content"] and c.few_shot[0].revision == first[5]["content"]
    assert [ex.principle for ex in c.few_shot] == ["p01", "p02"]
    # the loader imports recipe JSON on the fly too
    assert load_constitution(RECIPE).hash == constitution_from_cai_json(data, name="cai_recipe").hash


def test_recipe_import_skips_what_does_not_fit():
    msgs = [{"role": r, "content": f"m{i}"} for i, r in enumerate(["user", "assistant"] * 3)]
    data = {
        "constitutions": [{"critic": "c1", "revision": "r1"}, {"critic": ""}, {"critic": "c3", "revision": "r3"}],
        "system_chat": [msgs, msgs[:4], [dict(m, role="user") for m in msgs], "nonsense"],
        "extra": 1,
    }
    with pytest.warns(CaiImportWarning) as caught:
        c = constitution_from_cai_json(data, name="x")
    messages = [str(w.message) for w in caught]
    assert c.principle_ids == ["p01", "p03"]  # ids keep the file position
    assert len(c.few_shot) == 1 and c.few_shot[0].principle is None
    assert any("constitutions[1]" in m for m in messages)
    assert any("system_chat[1] has 4 messages" in m for m in messages)
    assert any("system_chat[2] roles" in m for m in messages)
    assert any("system_chat[3] is not a list" in m for m in messages)
    assert any("'extra'" in m for m in messages)
    # a flat list of messages is split into examples of six
    flat = constitution_from_cai_json({"constitutions": [{"critic": "m2", "revision": "r"}], "system_chat": msgs * 2},
                                      name="f", warn=lambda m: None)
    assert len(flat.few_shot) == 2 and flat.few_shot[0].principle == "p01"
    with pytest.raises(ConfigError, match="not a CAI recipe"):
        constitution_from_cai_json({"principles": []}, name="x")
    with pytest.raises(ConfigError, match="no usable"):
        constitution_from_cai_json({"constitutions": [{"critic": 1}]}, name="x", warn=lambda m: None)


# -- CLI ----------------------------------------------------------------------------------


def _cai(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_validate_ok(capsys):
    code, out, err = _cai(capsys, "constitution", "validate", *SHIPPED)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 5
    general = load_constitution("general")
    assert lines[0] == f"ok general ({len(general.principles)} principles, hash {general.hash})"


def test_cli_validate_bad_single_file_is_one_line(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nprinciples:\n  - id: a\n    critque: c\n    revision: r\n")
    code, out, err = _cai(capsys, "constitution", "validate", str(bad))
    assert code == 2
    assert err == f"error: {bad}:4:5: unknown key 'critque' in principle 'a'; did you mean 'critique'?\n"
    assert out == ""


def test_cli_validate_mixed_files_reports_each(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nprinciples: []\n")
    code, out, err = _cai(capsys, "constitution", "validate", "general", str(bad), "tutoring")
    assert code == 2
    assert [line.split()[1] for line in out.splitlines()] == ["general", "tutoring"]
    assert err.splitlines()[0].startswith(f"error: {bad}:2:1: the constitution has no principles;")
    assert err.splitlines()[1] == "error: 1 of 3 constitution files failed validation; fix the errors above"


def test_cli_show(capsys):
    code, out, err = _cai(capsys, "constitution", "show", "medical")
    assert code == 0, err
    c = load_constitution("medical")
    for needle in ("medical", c.hash, "system prompt", "red_flags", "label_dosing", "few-shot", "sampling: 1"):
        assert needle in out, needle


def test_cli_import_round_trips(tmp_path: Path, capsys):
    out_file = tmp_path / "recipe.yaml"
    code, out, err = _cai(capsys, "constitution", "import", str(RECIPE), "--name", "recipe", "--out", str(out_file))
    assert code == 0, err
    expected = constitution_from_cai_json(json.loads(RECIPE.read_text()), name="recipe")
    assert f"hash {expected.hash}" in out
    text = out_file.read_text()
    assert "  - id: p01\n" in text and "critique: >-\n" in text  # readable block style
    assert load_constitution(out_file).hash == expected.hash
    # refuses to overwrite without --force
    code, _, err = _cai(capsys, "constitution", "import", str(RECIPE), "--out", str(out_file))
    assert code == 2 and "already exists; pass --force" in err
    code, _, _ = _cai(capsys, "constitution", "import", str(RECIPE), "--out", str(out_file), "--force")
    assert code == 0


def test_cli_import_bad_json(tmp_path: Path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"constitutions": [\n  {"critic": "x",}\n]}')
    code, _, err = _cai(capsys, "constitution", "import", str(bad))
    assert code == 2 and err.startswith(f"error: {bad}:2:18: invalid JSON")


def test_cli_help_has_examples(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")  # keep the example lines unwrapped
    for command, example in (
        ("list", "cai constitution list"),
        ("validate", "cai constitution validate medical my_rules.yaml"),
        ("show", "cai constitution show tutoring"),
        ("import", "cai constitution import recipe.json"),
    ):
        code, out, err = _cai(capsys, "constitution", command, "--help")
        assert code == 0, err
        assert example in out


def test_cli_subprocess_bad_file_has_no_traceback(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nprinciples:\n  - id: a\n    critique: c\n    revision: r\n    weight: heavy\n")
    result = subprocess.run(
        [sys.executable, "-c", "from cai_engine.cli import main; main()", "constitution", "validate", str(bad)],
        capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1"), timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {bad}:6:13: 'weight' in principle 'a' must be a number")
