"""Every malformed constitution gives one `file:line:col: what; how to fix` line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cai_engine.constitution import load_constitution
from cai_engine.errors import ConfigError

P1 = """\
  - id: honesty
    critique: Identify ways the response is dishonest.
    revision: Rewrite the response to be honest.
"""
P2 = """\
  - id: harm
    critique: Identify ways the response is harmful.
    revision: Rewrite the response to be harmless.
"""
HEAD = "name: t\nprinciples:\n"

# (case id, file text, expected line, expected col, fragments the message must contain)
CASES = [
    (
        "yaml_syntax_unclosed_quote",
        HEAD + P1 + '  - id: x\n    critique: "never closed\n    revision: y\n',
        7, 15, ["invalid YAML", "close the quote that starts here"],
    ),
    (
        "yaml_syntax_bad_indent",
        "name: t\nprinciples:\n  - id: a\n    critique: c\n   revision: r\n",
        5, 4, ["invalid YAML", "indentation"],
    ),
    (
        "yaml_tab_indent",
        "name: t\nprinciples:\n\t- id: a\n",
        3, 1, ["invalid YAML", "spaces"],
    ),
    (
        "yaml_unquoted_colon",
        "name: t\ndescription: note: this breaks\nprinciples:\n" + P1,
        2, 18, ["invalid YAML", "quote text that contains ': '"],
    ),
    (
        "wrong_type_weight",
        HEAD + P1 + "    weight: heavy\n",
        6, 13, ["'weight' in principle 'honesty' must be a number", "got str 'heavy'"],
    ),
    (
        "wrong_type_tags",
        HEAD + P1 + "    tags: safety\n",
        6, 11, ["'tags' in principle 'honesty' must be a list"],
    ),
    (
        "wrong_type_name_list",
        "name: [a, b]\nprinciples:\n" + P1,
        1, 7, ["'name' must be text, got a list"],
    ),
    (
        "wrong_type_judge_bool",
        HEAD + P1 + "    judge: no\n",
        6, 12, ["'judge' in principle 'honesty' must be text", "boolean false", "quote it"],
    ),
    (
        "wrong_type_principles_mapping",
        "name: t\nprinciples:\n  honesty: be honest\n",
        3, 3, ["'principles' must be a list"],
    ),
    (
        "wrong_type_rounds",
        HEAD + P1 + "sampling:\n  rounds: two\n",
        7, 11, ["'rounds' in sampling must be a whole number"],
    ),
    (
        "wrong_type_list_item",
        "name: t\nprinciples: [1]\n",
        2, 14, ["principles[0] must be a mapping"],
    ),
    (
        "wrong_type_tag_item",
        HEAD + P1 + "    tags: [safety, 3]\n",
        6, 20, ["principle 'honesty' tags[1] must be text, got int 3"],
    ),
    (
        "infinite_weight",
        HEAD + P1 + "    weight: 1e400\n",
        6, 13, ["'weight' in principle 'honesty' must be a finite number", "such as 1.0"],
    ),
    (
        "blank_revision",
        HEAD + "  - id: a\n    critique: c\n    revision: '   '\n",
        5, 15, ["'revision' in principle 'a' must not be blank", "write the revision request text"],
    ),
    (
        "non_text_key",
        "name: t\nyes: 1\nprinciples:\n" + P1,
        2, 1, ["key 'yes' is read as a boolean, not text", "quote it"],
    ),
    (
        "unknown_top_key",
        "name: t\nprincipals:\n" + P1,
        2, 1, ["unknown key 'principals' in the top level", "did you mean 'principles'?"],
    ),
    (
        "unknown_principle_key",
        HEAD + P1 + "  - id: harm\n    critque: Identify harm.\n    revision: Remove it.\n",
        7, 5, ["unknown key 'critque' in principle 'harm'", "did you mean 'critique'?"],
    ),
    (
        "unknown_sampling_key",
        HEAD + P1 + "sampling:\n  round: 2\n",
        7, 3, ["unknown key 'round' in sampling", "did you mean 'rounds'?"],
    ),
    (
        "unknown_key_no_close_match",
        HEAD + P1 + "    zzzz: 1\n",
        6, 5, ["unknown key 'zzzz'", "valid keys are: id, critique, revision, judge, weight, tags"],
    ),
    (
        "duplicate_principle_id",
        HEAD + P1 + P2 + P1,
        9, 9, ["duplicate principle id 'honesty' (first at line 3)", "unique id"],
    ),
    (
        "duplicate_yaml_key",
        "name: t\nname: u\nprinciples:\n" + P1,
        2, 1, ["duplicate key 'name' (first at line 1)", "keep only one"],
    ),
    (
        "missing_critique",
        HEAD + P1 + "  - id: harm\n    revision: Remove it.\n",
        6, 5, ["principle 'harm' is missing required key 'critique'", "add `critique:"],
    ),
    (
        "missing_revision",
        HEAD + P1 + "  - id: harm\n    critique: Identify harm.\n",
        6, 5, ["principle 'harm' is missing required key 'revision'", "add `revision:"],
    ),
    (
        "missing_id",
        HEAD + "  - critique: c\n    revision: r\n",
        3, 5, ["principles[0] is missing required key 'id'"],
    ),
    (
        "blank_critique",
        HEAD + "  - id: a\n    critique: ''\n    revision: r\n",
        4, 15, ["'critique' in principle 'a' is empty"],
    ),
    (
        "bad_principle_id",
        HEAD + "  - id: Be Honest\n    critique: c\n    revision: r\n",
        3, 9, ["principle id 'Be Honest' is not valid", "'be_honest'"],
    ),
    (
        "nonpositive_weight",
        HEAD + P1 + "    weight: 0\n",
        6, 13, ["'weight' in principle 'honesty' must be > 0", "got 0"],
    ),
    (
        "empty_principles",
        "name: t\nprinciples: []\n",
        2, 1, ["no principles", "add a `principles:` list"],
    ),
    (
        "null_principles",
        "name: t\nprinciples:\n",
        2, 12, ["'principles' in the top level is empty", "give it a value"],
    ),
    (
        "no_principles_key",
        "name: t\ndescription: nothing here\n",
        1, 1, ["no principles"],
    ),
    (
        "missing_name",
        "principles:\n" + P1,
        1, 1, ["missing required key 'name'", "add `name:"],
    ),
    (
        "top_level_list",
        "- name: t\n",
        1, 1, ["top level must be a mapping"],
    ),
    (
        "empty_file",
        "# only a comment\n",
        1, 1, ["the file is empty"],
    ),
    (
        "k_round_too_large",
        HEAD + P1 + P2 + "sampling:\n  principles_per_round: 3\n",
        10, 25, ["sampling.principles_per_round is 3 but the constitution has only 2 principles", "at most 2"],
    ),
    (
        "k_judgment_too_large",
        HEAD + P1 + "sampling:\n  principles_per_judgment: 5\n",
        7, 28, ["sampling.principles_per_judgment is 5", "only 1 principle;"],
    ),
    (
        "sampling_zero",
        HEAD + P1 + "sampling:\n  principles_per_round: 0\n",
        7, 25, ["'principles_per_round' in sampling must be >= 1"],
    ),
    (
        "few_shot_unknown_principle",
        HEAD + P1 + "few_shot:\n  - principle: honsty\n    prompt: p\n    response: r\n"
        "    critique: c\n    revision: v\n",
        7, 16, ["few_shot example names unknown principle 'honsty'", "did you mean 'honesty'?"],
    ),
    (
        "few_shot_missing_revision",
        HEAD + P1 + "few_shot:\n  - prompt: p\n    response: r\n    critique: c\n",
        7, 5, ["few_shot[0] is missing required key 'revision'"],
    ),
]


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("text", "line", "col", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_file_reports_location_and_fix(tmp_path: Path, text: str, line: int, col: int, fragments: list[str]):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_constitution(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:{col}: "), message
    assert "\n" not in message
    assert "; " in message.split(": ", 1)[1], f"no fix hint: {message}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_misspelt_key_is_one_problem_not_two(tmp_path: Path):
    path = _write(tmp_path, HEAD + "  - id: a\n    critque: c\n    revison: r\n")
    with pytest.raises(ConfigError) as info:
        load_constitution(path)
    # both misspellings are reported (first one, plus a count), the implied "missing" ones are not
    assert str(info.value).endswith(
        f"did you mean 'critique'? (1 more problem after this one; `cai constitution validate {path}` lists every one)"
    )
    assert [str(p) for p in info.value.problems] == [
        f"{path}:4:5: unknown key 'critque' in principle 'a'; did you mean 'critique'?",
        f"{path}:5:5: unknown key 'revison' in principle 'a'; did you mean 'revision'?",
    ]


def test_error_in_parent_points_at_parent(tmp_path: Path):
    _write(tmp_path, HEAD + P1 + "    weight: -2\n", "base.yaml")
    child = _write(tmp_path, "extends: base.yaml\nname: child\n", "child.yaml")
    with pytest.raises(ConfigError, match=r"base\.yaml:6:13: 'weight' in principle 'honesty' must be > 0"):
        load_constitution(child)


def test_extends_missing_file(tmp_path: Path):
    child = _write(tmp_path, "extends: nowhere.yaml\nname: c\nprinciples:\n" + P1)
    with pytest.raises(ConfigError) as info:
        load_constitution(child)
    message = str(info.value)
    assert message.startswith(f"{child}:1:10: extends target 'nowhere.yaml' not found")
    assert "use a shipped name (coding, customer_service, general, medical, tutoring)" in message


def test_extends_cycle(tmp_path: Path):
    _write(tmp_path, "extends: b.yaml\nname: a\nprinciples:\n" + P1, "a.yaml")
    _write(tmp_path, "name: b\nextends: c.yaml\n", "b.yaml")
    _write(tmp_path, "name: c\nextends: a.yaml\n", "c.yaml")
    with pytest.raises(ConfigError) as info:
        load_constitution(tmp_path / "a.yaml")
    assert str(info.value) == (
        f"{tmp_path / 'c.yaml'}:2:10: extends cycle a.yaml -> b.yaml -> c.yaml -> a.yaml; "
        "remove the `extends` that closes the loop"
    )


def test_extends_self_cycle(tmp_path: Path):
    path = _write(tmp_path, "name: a\nextends: c.yaml\nprinciples:\n" + P1)
    with pytest.raises(ConfigError, match=r"c\.yaml:2:10: extends cycle c\.yaml -> c\.yaml"):
        load_constitution(path)


def test_k_is_checked_on_the_resolved_constitution(tmp_path: Path):
    P3 = P2.replace("harm", "privacy")
    base = _write(tmp_path, HEAD + P1 + P2 + "sampling:\n  principles_per_round: 3\n", "base.yaml")
    # alone, the base asks for 3 of 2 principles: reported where it is set
    with pytest.raises(ConfigError) as info:
        load_constitution(base)
    assert str(info.value).startswith(f"{base}:10:25: sampling.principles_per_round is 3 but the constitution has only 2")
    # a child adding a third principle makes the same setting valid
    ok = _write(tmp_path, "extends: base.yaml\nname: ok\nprinciples:\n" + P3, "ok.yaml")
    assert load_constitution(ok).sampling.principles_per_round == 3
    # a child that only replaces one keeps 2 principles: the error still points at the parent's line
    same = _write(tmp_path, "extends: base.yaml\nname: same\nprinciples:\n" + P2, "same.yaml")
    with pytest.raises(ConfigError) as info:
        load_constitution(same)
    assert str(info.value).startswith(f"{base}:10:25: sampling.principles_per_round is 3")


def test_unknown_name_or_missing_path():
    with pytest.raises(ConfigError, match="not a shipped name; pass a .yaml path or one of: coding, customer_service"):
        load_constitution("no_such_constitution")
    with pytest.raises(ConfigError, match="not found"):
        load_constitution("some/dir/missing.yaml")


def test_not_utf8(tmp_path: Path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml:1:1: not UTF-8 text .*; save the file as UTF-8"):
        load_constitution(path)


def test_principle_lookup_error_suggests():
    c = load_constitution("general")
    with pytest.raises(ConfigError, match="did you mean 'privacy'"):
        c.principle("privacy_")
    assert c.principle("privacy").id == "privacy"


def test_doc_example_block_scalars_keep_positions(tmp_path: Path):
    text = textwrap.dedent(
        """\
        name: t
        principles:
          - id: a
            critique: >-
              long folded
              text
            revision: |
              literal
            weight: []
        """
    )
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=r"c\.yaml:9:13: 'weight' in principle 'a' must be a number, got a list"):
        load_constitution(path)
