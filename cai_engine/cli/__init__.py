"""The ``cai`` command line. Each area lives in its own module under ``cai_engine.cli``.

Sub-modules keep heavy imports (torch, SDKs, TRL) inside their command functions so that
``cai --help`` stays instant. :func:`main` turns every :class:`CaiError` into one line on stderr
and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import sys

from cai_engine.cli.app import app, register_commands


def main(argv: list[str] | None = None) -> None:
    from cai_engine.engine.stopping import Stopped
    from cai_engine.errors import CaiError

    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    if verbose:
        args.remove("--verbose")
    else:
        from cai_engine.logs import quiet_third_party
        from cai_engine.paths import cai_home

        quiet_third_party(cai_home() / "logs" / "cai.log")
    register_commands()
    try:
        # In non-standalone mode click *returns* the code of typer.Exit instead of exiting.
        code = app(args=args, standalone_mode=False)
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except Stopped as exc:  # a graceful stop: what finished is saved, say how to resume
        sys.stderr.write(f"{exc}\n")
        raise SystemExit(exc.exit_code) from None
    except CaiError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished records are saved; rerun the same command to resume\n")
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors and the like
        kind = click_error_kind(exc)
        if kind == "abort":
            sys.stderr.write("aborted\n")
            raise SystemExit(1) from None
        if kind == "click":
            exc.show()  # type: ignore[attr-defined]  # usage line, "Try ... --help", "Error: ..."
            raise SystemExit(getattr(exc, "exit_code", 2)) from None
        raise


def click_error_kind(exc: BaseException) -> str | None:
    """``"click"`` for a click-style error that shows itself (usage errors, bad parameters, missing
    arguments), ``"abort"`` for an abort, else ``None``.

    Read from the exception's class names, not by ``isinstance``: typer >= 0.2x vendors click as
    ``typer._click`` (its exceptions are not ``click.ClickException``), older typer uses ``click``;
    either may be the one installed.
    """
    for cls in type(exc).__mro__:
        if cls.__name__ == "Abort":
            return "abort"
        if cls.__name__ in ("ClickException", "UsageError") and callable(getattr(exc, "show", None)):
            return "click"
    return None
