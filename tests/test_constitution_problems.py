"""`cai constitution validate` lists every problem of a file; lint catches keys indented into text blocks."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cai_engine.cli import main
from cai_engine.constitution import ConstitutionError, load_constitution
from cai_engine.workbench.lint import lint_file

# The slip: `judge:` indented two spaces too far, into the `revision: >-` block above it.
MISINDENTED_JUDGE = """\
name: tutor
principles:
  - id: no_answers
    critique: Identify any place where the response gives away the final answer to a homework problem.
    revision: >-
      Rewrite the response to guide the student with hints instead of the final answer.
        judge: Which response better helps the student find the answer alone?
  - id: encouraging
    critique: Identify discouraging or condescending phrasing toward the student.
    revision: Rewrite the response in an encouraging tone.
    judge: Which response is more encouraging?
few_shot:
  - prompt: p
    response: r
    principle: no_answers
    critique: c
    revision: v
  - prompt: p
    response: r
    principle: encouraging
    critique: c
    revision: v
"""

THREE_PROBLEMS = """\
name: three
principles:
  - id: honesty
    critique: Identify ways the response is dishonest.
    revison: Rewrite the response to be honest.
  - id: harm
    critique: Identify ways the response is harmful.
    revision: Rewrite the response to be harmless.
    weight: -1
few_shot:
  - prompt: p
    response: r
    principle: harmm
    critique: c
    revision: v
"""


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _cai(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_lists_all_three_problems_with_their_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, THREE_PROBLEMS)
    expected = [
        f"{path}:5:5: unknown key 'revison' in principle 'honesty'; did you mean 'revision'?",
        f"{path}:9:13: 'weight' in principle 'harm' must be > 0.0, got -1; use a number > 0.0",
        f"{path}:13:16: few_shot example names unknown principle 'harmm'; did you mean 'harm'?",
    ]
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    assert [str(p) for p in info.value.problems] == expected
    assert [(p.line, p.col) for p in info.value.problems] == [(5, 5), (9, 13), (13, 16)]
    # Other commands show the first problem in one line, and how to see the rest.
    assert str(info.value) == (
        f"{expected[0]} (2 more problems after this one; `cai constitution validate {path}` lists every one)"
    )
    code, out, err = _cai(capsys, "constitution", "validate", str(path))
    assert code == 2 and out == ""
    assert err.splitlines() == [f"error: {line}" for line in expected] + [f"{path}: 3 problems; fix them and validate again"]
    code, out, err = _cai(capsys, "constitution", "show", str(path))
    assert code == 2 and err.count("\n") == 1 and "2 more problems after this one" in err


def test_validate_with_other_files_still_lists_each_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, THREE_PROBLEMS)
    code, out, err = _cai(capsys, "constitution", "validate", "general", str(path))
    assert code == 2 and out.startswith("ok general")
    lines = err.splitlines()
    assert [line.split(":")[2] for line in lines[:3]] == ["5", "9", "13"]
    assert lines[-1] == "error: 1 of 2 constitution files failed validation; fix the errors above"


def test_misindented_judge_validates_but_lint_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, MISINDENTED_JUDGE)
    # Valid YAML and a valid constitution (`judge` is optional), so validate passes: the slip changes
    # meaning, not validity. The principle lost its judge question and its revision gained a line.
    code, out, err = _cai(capsys, "constitution", "validate", str(path))
    assert code == 0 and out.startswith("ok tutor (2 principles"), err
    principle = load_constitution(path).principle("no_answers")
    assert principle.judge is None and principle.revision.endswith("judge: Which response better helps the student find the answer alone?")
    # Lint names the line, says what happened and how to fix it.
    warnings = {w.code: w for w in lint_file(path)}
    assert set(warnings) == {"key-in-block-text", "no-judge"}, [w.format() for w in warnings.values()]
    block = warnings["key-in-block-text"]
    assert (block.principle_id, block.line, block.col) == ("no_answers", 7, 9)
    assert "inside the `revision: >-` block looks like the key `judge:`" in block.message and "`judge` is not set" in block.message
    assert "start it in column 5 like `revision:`" in block.fix
    assert (warnings["no-judge"].principle_id, warnings["no-judge"].line) == ("no_answers", 3)
    code, out, _ = _cai(capsys, "constitution", "lint", str(path))
    assert code == 1 and f"{path}:7:9: warning[key-in-block-text] principle 'no_answers': line 7 inside" in out
    # Fixed indentation: nothing to warn about.
    fixed = _write(tmp_path, MISINDENTED_JUDGE.replace("        judge: Which response better", "    judge: Which response better"), "fixed.yaml")
    assert lint_file(fixed) == []
    assert load_constitution(fixed).principle("no_answers").judge == "Which response better helps the student find the answer alone?"


def test_principle_without_judge_question_warns(tmp_path: Path) -> None:
    text = MISINDENTED_JUDGE.replace("    judge: Which response is more encouraging?\n", "")
    text = text.replace("        judge: Which response better", "    judge: Which response better")
    path = _write(tmp_path, text)
    warnings = lint_file(path)
    assert [(w.code, w.principle_id, w.line) for w in warnings] == [("no-judge", "encouraging", 8)]
    assert "derived from its critique" in warnings[0].message and "add `judge: Which response" in warnings[0].fix


def test_misindented_required_key_fails_validation_and_says_why(tmp_path: Path) -> None:
    # `revision` is required, so this slip fails validation; the message names the swallowing block.
    path = _write(tmp_path, """\
        name: t
        principles:
          - id: a
            critique: >-
              Identify ways the response is dishonest.
              revision: Rewrite the response to be honest.
        """)
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:3:5: principle 'a' is missing required key 'revision'; line 6 inside the `critique: >-` block "
        "looks like the key `revision:` but is part of the critique text, so `revision` is not set; "
        "if `revision:` is meant as a key, start it in column 5 like `critique:`; "
        "if it is text, reword the line so it does not start with `revision:`"
    ]


def test_swallowed_top_level_key_and_list_item(tmp_path: Path) -> None:
    top = _write(tmp_path, """\
        name: t
        description: |
          A tutor.
          principles:
            - id: a
              critique: Identify x.
              revision: Rewrite it.
        """, "top.yaml")
    with pytest.raises(ConstitutionError, match=r"top\.yaml:1:1: the constitution has no principles; line 4 inside "
                                                 r"the `description: \|` block looks like the key `principles:`"):
        load_constitution(top)
    item = _write(tmp_path, """\
        name: t
        principles:
          - id: a
            critique: Identify false claims and quote each one.
            judge: Which response has fewer false claims?
            revision: |
              Rewrite the response to correct every false claim.
              - id: b
        """, "item.yaml")
    found = [w for w in lint_file(item) if w.code == "key-in-block-text"]
    assert [(w.principle_id, w.line, w.col) for w in found] == [("a", 8, 9)]
    assert "looks like a new item `- id:`" in found[0].message and "the item it starts is lost" in found[0].message


def test_duplicate_keys_are_all_listed_and_the_rest_still_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        name: t
        principles:
          - id: a
            critique: Identify ways the response is dishonest.
            critique: Identify ways the response is wrong.
            revision: Rewrite the response to be honest.
            weight: heavy
        name: t2
        """)
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    assert [(p.line, p.col) for p in info.value.problems] == [(5, 5), (7, 13), (8, 1)]
    texts = [p.text for p in info.value.problems]
    assert texts[0].startswith("duplicate key 'critique' (first at line 4)")
    assert texts[1].startswith("'weight' in principle 'a' must be a number")
    assert texts[2].startswith("duplicate key 'name' (first at line 1)")


def test_problems_in_child_and_parent_are_all_listed(tmp_path: Path) -> None:
    base = _write(tmp_path, """\
        name: base
        principles:
          - id: honesty
            critique: Identify ways the response is dishonest.
            revision: Rewrite the response to be honest.
            weight: -2
        """, "base.yaml")
    child = _write(tmp_path, """\
        extends: base.yaml
        name: child
        principles:
          - id: harm
            critque: Identify ways the response is harmful.
            revision: Rewrite the response to be harmless.
        """, "child.yaml")
    with pytest.raises(ConstitutionError) as info:
        load_constitution(child)
    assert [(p.path, p.line) for p in info.value.problems] == [(str(child), 5), (str(base), 6)]


def test_no_follow_on_problems(tmp_path: Path) -> None:
    # A principle without an id is one problem: no "only 1 principle" for the k it makes look too large.
    path = _write(tmp_path, """\
        name: t
        principles:
          - id: a
            critique: Identify ways the response is dishonest.
            revision: Rewrite the response to be honest.
          - critique: Identify ways the response is harmful.
            revision: Rewrite the response to be harmless.
        sampling:
          principles_per_round: 2
        """)
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    assert [p.text.split(";")[0] for p in info.value.problems] == ["principles[1] is missing required key 'id'"]
    # A misspelt `principles:` is one problem, not also "no principles".
    typo = _write(tmp_path, "name: t\nprincipals: []\n", "typo.yaml")
    with pytest.raises(ConstitutionError) as info:
        load_constitution(typo)
    assert len(info.value.problems) == 1 and "did you mean 'principles'" in str(info.value)
