"""The ``cai`` command line. Each area lives in its own module under ``cai_engine.cli``.

Sub-modules keep heavy imports (torch, SDKs, TRL) inside their command functions so that
``cai --help`` stays instant. :func:`main` turns every :class:`CaiError` into one line on stderr
and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import sys

from cai_engine.cli.app import app, register_commands


def main(argv: list[str] | None = None) -> None:
    from cai_engine.errors import CaiError

    register_commands()
    try:
        # In non-standalone mode click *returns* the code of typer.Exit instead of exiting.
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except CaiError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished records are saved; rerun the same command to resume\n")
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.Abort):
            raise SystemExit(1) from None
        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise
