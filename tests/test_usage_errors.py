"""Usage errors of the installed ``cai`` script: click's usage line and message on stderr, exit 2,
never a traceback, whichever click is installed (``click`` or typer's vendored ``typer._click``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cai_engine.cli import click_error_kind


def cai_script() -> str:
    beside = Path(sys.executable).parent / "cai"
    found = str(beside) if beside.exists() else shutil.which("cai")
    if found is None:
        pytest.skip("the cai console script is not installed (pip install -e .)")
    return found


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cai_script(), *args], capture_output=True, text=True, timeout=60)


ARGS = "-c general -p prompts.jsonl -o out".split()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["revise", "--bogus-option"], "No such option: --bogus-option"),
        (["judge", "--bogus-option"], "No such option: --bogus-option"),
        (["export", "sft", "--bogus-option"], "No such option: --bogus-option"),
        (["train", "sft", "--bogus-option"], "No such option: --bogus-option"),
        (["eval", "--bogus-option"], "No such option: --bogus-option"),
        (["run", "--bogus-option"], "No such option: --bogus-option"),
        (["constitution", "show", "--bogus-option"], "No such option: --bogus-option"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["export", "sft"], "Missing argument"),  # a required argument
        (["revise", "-p", "prompts.jsonl", "-o", "out"], "Missing option '--constitution'"),  # a required option
        (["revise", *ARGS, "--rounds", "-1"], "Invalid value for '--rounds'"),
        (["revise", *ARGS, "--concurrency", "abc"], "Invalid value for '--concurrency'"),
        (["judge", "-c", "general", "--pairs-from", "x", "-o", "out", "--concurrency", "0"], "Invalid value for '--concurrency'"),
    ],
)
def test_usage_error_is_usage_and_message_not_traceback(args: list[str], expected: str) -> None:
    result = run_script(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert "Usage: cai" in result.stderr and "Error:" in result.stderr and expected in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: ")


@pytest.mark.parametrize("group", [[], ["train"], ["export"], ["constitution"]])
def test_bare_group_shows_its_help_not_a_traceback(group: list[str]) -> None:
    result = run_script(*group)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout and "Usage" in result.stderr + result.stdout


def test_click_errors_are_recognised_from_either_click() -> None:
    """By class name along the MRO: typer's vendored click and a standalone click both count."""
    candidates = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            candidates.append(__import__(name, fromlist=["UsageError"]))
        except ImportError:
            continue
    assert candidates
    for module in candidates:
        assert click_error_kind(module.NoSuchOption("--x")) == "click"
        assert click_error_kind(module.BadParameter("bad")) == "click"
        assert click_error_kind(module.ClickException("x")) == "click"
    import typer

    assert click_error_kind(typer.Abort()) == "abort"  # typer >= 0.2x keeps Abort outside typer._click
    for module in candidates:
        if hasattr(module, "Abort"):
            assert click_error_kind(module.Abort()) == "abort"
    assert click_error_kind(ValueError("x")) is None
