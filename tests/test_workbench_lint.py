"""`cai constitution lint`: every check fires exactly once on a hand-made bad constitution, at the right line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cai_engine.constitution import shipped_names
from cai_engine.errors import CaiError
from cai_engine.workbench.lint import CHECKS, LintSettings, lint_file

LONG = " ".join(["Identify every place where the response uses jargon such as acronyms or technical terms"] * 8)

BAD = f"""\
name: bad
principles:
  - id: honest
    critique: Identify statements in the response that are false or made up, and quote each one.
    revision: Rewrite the response to remove or correct every false claim.
    judge: Which response contains fewer false claims?
  - id: honest_again
    critique: Identify statements in the response that are false or made up, and quote each of them.
    revision: Rewrite the response to remove or correct every false claim it makes.
    judge: Which response has fewer false claims?
  - id: vague
    critique: Critique the response and point out any problems.
    revision: >-
      Rewrite the response to fix the problems you found in the tone.
        judge: Which response is kinder?
  - id: no_rewrite
    critique: Identify any medication dose that exceeds the label.
    revision: Explain in a sentence what is wrong with the dosing advice.
    judge: Which response stays within labelled dosing?
  - id: yes_no
    critique: Identify rude or dismissive phrasing toward the user.
    revision: Rewrite the response in a courteous tone.
    judge: Is the response polite?
  - id: wordy
    critique: {LONG}.
    revision: Rewrite the response in plain words a twelve-year-old understands.
    judge: Which response is easier to understand?
few_shot:
  - prompt: p
    response: r
    principle: honest
    critique: c
    revision: v
  - prompt: p
    response: r
    principle: honest_again
    critique: c
    revision: v
  - prompt: p
    response: r
    principle: vague
    critique: c
    revision: v
  - prompt: p
    response: r
    principle: no_rewrite
    critique: c
    revision: v
  - prompt: p
    response: r
    principle: wordy
    critique: c
    revision: v
"""

EXPECTED = {  # check -> (principle, field whose line the warning names)
    "similar-principles": ("honest_again", "critique"),
    "critique-without-target": ("vague", "critique"),
    "revision-without-rewrite": ("no_rewrite", "revision"),
    "judge-not-comparative": ("yes_no", "judge"),
    "no-few-shot": ("yes_no", "id"),
    "long-principle": ("wordy", "critique"),
    "no-judge": ("vague", "id"),  # its judge line was indented into the revision block...
    "key-in-block-text": ("vague", "judge"),  # ...which this one points at
}


def _line_of(text: str, principle: str, field: str) -> int:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"- id: {principle}")
    if field == "id":
        return start + 1
    return next(i for i in range(start, len(lines)) if lines[i].strip().startswith(f"{field}:")) + 1


def _col_of(text: str, line: int) -> int:
    row = text.splitlines()[line - 1]
    return len(row) - len(row.lstrip()) + 1


def test_each_check_fires_once_with_principle_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    warnings = lint_file(path)
    assert sorted(w.code for w in warnings) == sorted(CHECKS), [w.format() for w in warnings]
    for w in warnings:
        principle, field = EXPECTED[w.code]
        assert w.principle_id == principle, w.format()
        assert w.path == str(path) and w.line == _line_of(BAD, principle, field), w.format()
        text = w.format()
        assert text.startswith(f"{path}:{w.line}:") and f"principle {principle!r}" in text and "; " in text
    assert "honest" in next(w for w in warnings if w.code == "similar-principles").message


def test_ignore_and_thresholds(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    codes = {w.code for w in lint_file(path, LintSettings(ignore=["no-few-shot", "long-principle"]))}
    assert codes == set(CHECKS) - {"no-few-shot", "long-principle"}
    assert "long-principle" not in {w.code for w in lint_file(path, LintSettings(max_words=500))}
    with pytest.raises(CaiError, match="unknown lint check 'typo'"):
        lint_file(path, LintSettings(ignore=["typo"]))


def test_warning_in_extended_parent_points_at_the_parent_file(tmp_path: Path) -> None:
    parent = tmp_path / "parent.yaml"
    parent.write_text(BAD)
    child = tmp_path / "child.yaml"
    child.write_text(
        "extends: parent.yaml\nname: child\nprinciples:\n"
        "  - id: yes_no\n    critique: Identify rude phrasing.\n    revision: Rewrite it kindly.\n"
        "    judge: Which response is more polite?\n"
    )
    warnings = lint_file(child)
    by_code = {w.code: w for w in warnings}
    assert "judge-not-comparative" not in by_code  # the child fixed it
    assert by_code["no-few-shot"].path == str(child) and by_code["no-few-shot"].line == 4
    assert by_code["critique-without-target"].path == str(parent)
    assert by_code["critique-without-target"].line == _line_of(BAD, "vague", "critique")


@pytest.mark.parametrize("name", shipped_names())
def test_shipped_constitutions_have_only_justified_warnings(name: str) -> None:
    # The shipped files illustrate two principles each with few-shot examples; the rest are
    # flagged no-few-shot on purpose (a real gap an author may fill). Nothing else may fire.
    warnings = lint_file(name)
    assert {w.code for w in warnings} <= {"no-few-shot"}, [w.format() for w in warnings]


def test_cli_lint_exit_codes_and_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    cmd = [sys.executable, "-m", "cai_engine", "constitution", "lint"]
    bad = subprocess.run([*cmd, str(path), "--json"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    rows = [json.loads(line) for line in bad.stdout.splitlines()]
    assert {r["code"] for r in rows} == set(CHECKS) and all(r["line"] > 1 for r in rows)
    clean = subprocess.run([*cmd, "general", "--ignore", "no-few-shot"], capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0 and clean.stdout == "" and "0 warnings" in clean.stderr
    # shipped files only carry no-few-shot notes: printed, but the lint passes unless --strict
    notes = subprocess.run([*cmd, "general"], capture_output=True, text=True, timeout=120)
    assert notes.returncode == 0 and "note[no-few-shot]" in notes.stdout and "warning[" not in notes.stdout
    assert subprocess.run([*cmd, "general", "--strict"], capture_output=True, text=True, timeout=120).returncode == 1
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nprinciples:\n  - id: a\n    critque: typo\n    revision: Rewrite it.\n")
    err = subprocess.run([*cmd, str(broken)], capture_output=True, text=True, timeout=120)
    assert err.returncode == 2 and err.stderr.count("\n") == 1 and "did you mean 'critique'" in err.stderr
