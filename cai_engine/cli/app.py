"""The root typer app and the list of command modules mounted on it."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="cai",
    help="Constitutional AI / RLAIF engine: critique->revise SFT data, AI-judged preference pairs, training.\n\n"
    "Library warnings, logs and progress bars go to OUT/log.txt (or $CAI_HOME/logs/cai.log); add --verbose "
    "anywhere on the command line to see them on the terminal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Each module defines `register(app)`; order is the order of `cai --help`.
COMMAND_MODULES = [
    "cai_engine.cli.constitution",
    "cai_engine.cli.revise",
    "cai_engine.cli.export",
    "cai_engine.cli.run",
    "cai_engine.cli.demo",
    "cai_engine.cli.judge",
    "cai_engine.cli.train",
    "cai_engine.cli.eval",
    "cai_engine.cli.reward",
    "cai_engine.cli.workbench",  # after cai_engine.cli.constitution: adds lint/preview/diff to its group
    "cai_engine.cli.induce",  # after cai_engine.cli.constitution: adds induce/audit to its group
]

_registered = False


def register_commands() -> None:
    global _registered
    if _registered:
        return
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    _registered = True
