"""Constitution loading, `extends` merging, hashing and deterministic principle sampling."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from cai_engine.constitution import (
    Constitution,
    FewShotExample,
    Principle,
    SamplingConfig,
    constitution_to_yaml,
    load_constitution,
)
from cai_engine.errors import ConfigError

BASE = """\
name: base
version: 3
description: base rules
system_prompt: be good
principles:
  - id: a
    critique: critique a
    revision: revision a
    judge: judge a?
    tags: [x]
  - id: b
    critique: critique b
    revision: revision b
sampling:
  principles_per_round: 2
  rounds: 2
  seed: 7
few_shot:
  - principle: a
    prompt: p1
    response: r1
    critique: c1
    revision: v1
"""

CHILD = """\
extends: base.yaml
name: child
description: child rules
principles:
  - id: b
    critique: critique b (child)
    revision: revision b (child)
    weight: 2
  - id: c
    critique: critique c
    revision: revision c
sampling:
  rounds: 4
few_shot:
  - principle: c
    prompt: p2
    response: r2
    critique: c2
    revision: v2
"""


@pytest.fixture()
def family(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "child.yaml").write_text(CHILD.replace("extends: base.yaml", "extends: ../base.yaml"))
    return sub / "child.yaml"


def test_extends_merges_scalars_principles_few_shot_and_sampling(family: Path):
    c = load_constitution(family)
    assert c.name == "child"
    assert c.version == "3"  # inherited, and a YAML number becomes text
    assert c.description == "child rules"
    assert c.system_prompt == "be good"
    # b replaced in place, c appended
    assert c.principle_ids == ["a", "b", "c"]
    assert c.principle("b").critique == "critique b (child)" and c.principle("b").weight == 2.0
    assert c.principle("a").tags == ["x"]
    # sampling merged field by field
    assert c.sampling == SamplingConfig(principles_per_round=2, rounds=4, principles_per_judgment=1, seed=7)
    # few-shot concatenated, parent first
    assert [ex.prompt for ex in c.few_shot] == ["p1", "p2"]
    assert c.source_path == family


def test_extends_chain_of_three_and_shipped_name(tmp_path: Path, family: Path):
    grandchild = tmp_path / "gc.yaml"
    grandchild.write_text("extends: sub/child.yaml\nversion: '9'\nprinciples:\n  - id: a\n    critique: A\n    revision: A2\n")
    c = load_constitution(grandchild)
    assert (c.name, c.version) == ("child", "9")
    assert c.principle_ids == ["a", "b", "c"] and c.principle("a").critique == "A"
    assert c.principle("a").judge is None  # replaced as a whole, not patched
    shipped = tmp_path / "mine.yaml"
    shipped.write_text(
        "extends: general\nname: mine\nprinciples:\n  - id: extra_rule\n    critique: c\n    revision: r\n"
    )
    general = load_constitution("general")
    mine = load_constitution(shipped)
    assert mine.principle_ids == general.principle_ids + ["extra_rule"]
    assert mine.system_prompt == general.system_prompt
    assert len(mine.few_shot) == len(general.few_shot)


def test_child_may_reference_parent_principle_in_few_shot(tmp_path: Path, family: Path):
    (tmp_path / "fs.yaml").write_text(
        "extends: base.yaml\nfew_shot:\n  - principle: b\n    prompt: p\n    response: r\n    critique: c\n    revision: v\n"
    )
    assert [ex.principle for ex in load_constitution(tmp_path / "fs.yaml").few_shot] == ["a", "b"]


def test_hash_ignores_formatting_and_path(tmp_path: Path, family: Path):
    c = load_constitution(family)
    flat = tmp_path / "elsewhere" / "flat.yaml"
    flat.parent.mkdir()
    flat.write_text("# same rules, other layout\n" + constitution_to_yaml(c))
    again = load_constitution(flat)
    assert again.hash == c.hash and len(c.hash) == 16
    as_json = tmp_path / "j.yaml"  # JSON flow style is YAML too
    as_json.write_text(json.dumps(c.content()))
    assert load_constitution(as_json).hash == c.hash
    changed = c.model_copy(update={"description": "other"})
    assert changed.hash != c.hash
    assert "source_path" not in c.model_dump()


def test_code_built_constitution_is_validated():
    p = Principle(id="a", critique="c", revision="r")
    with pytest.raises(ValidationError, match="duplicate principle id"):
        Constitution(name="x", principles=[p, p])
    with pytest.raises(ValidationError, match="principles_per_judgment is 2"):
        Constitution(name="x", principles=[p], sampling=SamplingConfig(principles_per_judgment=2))
    with pytest.raises(ValidationError, match="unknown principle 'zz'"):
        Constitution(
            name="x", principles=[p],
            few_shot=[FewShotExample(prompt="p", response="r", principle="zz", critique="c", revision="v")],
        )
    with pytest.raises(ValidationError):
        Principle(id="a", critique="c", revision="r", colour="red")  # extra="forbid"


# -- sampling -----------------------------------------------------------------------------


def _many(n: int, weights: list[float] | None = None) -> Constitution:
    weights = weights or [1.0] * n
    return Constitution(
        name="s",
        principles=[Principle(id=f"p{i}", critique="c", revision="r", weight=w) for i, w in enumerate(weights)],
    )


def test_sampling_is_deterministic_and_without_replacement():
    c = _many(10)
    first = [p.id for p in c.sample_principles(4, key="rec-1", round=1)]
    # unrelated draws in between must not change it (no shared RNG state)
    c.sample_principles(3, key="other", round=0)
    assert [p.id for p in c.sample_principles(4, key="rec-1", round=1)] == first
    assert len(set(first)) == 4
    assert sorted(p.id for p in c.sample_principles(10, key="k")) == sorted(c.principle_ids)
    assert c.sample_principles(0, key="k") == []
    # key, round and seed each change the draw somewhere
    draws = {tuple(p.id for p in c.sample_principles(4, key=f"rec-{i}")) for i in range(20)}
    assert len(draws) > 10
    assert len({tuple(p.id for p in c.sample_principles(4, key="rec-1", round=r)) for r in range(10)}) > 5
    assert len({tuple(p.id for p in c.sample_principles(4, key="rec-1", seed=s)) for s in range(10)}) > 5
    # the seed defaults to sampling.seed
    seeded = c.model_copy(update={"sampling": SamplingConfig(seed=5)})
    assert seeded.sample_principles(4, key="z") == c.sample_principles(4, key="z", seed=5)


def test_sampling_is_stable_across_processes():
    script = (
        "from cai_engine.constitution import load_constitution\n"
        "c = load_constitution('general')\n"
        "print([p.id for r in range(3) for p in c.sample_principles(2, key='rec-42', round=r)])\n"
    )
    c = load_constitution("general")
    here = str([p.id for r in range(3) for p in c.sample_principles(2, key="rec-42", round=r)])
    for hashseed in ("1", "2"):  # a salted hash() would make these differ
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True,
            env={"PYTHONHASHSEED": hashseed, "PATH": "/usr/bin:/bin"},
        )
        assert out.stdout.strip() == here


def test_sampling_respects_weights():
    c = _many(4, [4.0, 2.0, 1.0, 1.0])
    counts = Counter(c.sample_principles(1, key=f"k{i}")[0].id for i in range(8000))
    share = {pid: counts[pid] / 8000 for pid in c.principle_ids}
    assert share["p0"] == pytest.approx(0.5, abs=0.03)
    assert share["p1"] == pytest.approx(0.25, abs=0.03)
    assert share["p2"] == pytest.approx(0.125, abs=0.02)
    # without replacement, a heavy principle is in almost every pair but never twice
    pairs = [c.sample_principles(2, key=f"k{i}") for i in range(2000)]
    assert all(a.id != b.id for a, b in pairs)
    assert sum("p0" in (a.id, b.id) for a, b in pairs) / 2000 > 0.75


def test_sampling_k_too_large_or_invalid():
    c = _many(3)
    with pytest.raises(ConfigError, match="cannot sample 4 principles .* it has only 3; lower"):
        c.sample_principles(4, key="k")
    with pytest.raises(ConfigError, match="whole number"):
        c.sample_principles(-1, key="k")


def test_yaml_details_version_text_anchors_and_locations(tmp_path: Path, family: Path):
    path = tmp_path / "v.yaml"
    path.write_text(
        "name: v\nversion: 1.10\nprinciples:\n"
        "  - id: a\n    critique: c\n    revision: r\n    tags: &shared [x, y]\n"
        "  - {id: b, critique: c, revision: r, tags: *shared}\n"
    )
    c = load_constitution(path)
    assert c.version == "1.10"  # the text as written, not the float 1.1
    assert c.principle("b").tags == ["x", "y"]
    from cai_engine.constitution import principle_locations

    assert principle_locations(path) == {"a": f"{path}:4:5", "b": f"{path}:8:5"}
    # through extends: replaced principles point at the child, inherited ones at the parent
    where = principle_locations(family)
    assert where["a"].startswith(str(tmp_path / "sub" / ".." / "base.yaml") + ":6:")
    assert where["b"] == f"{family}:5:5" and where["c"] == f"{family}:9:5"
