"""Command-line options derived from a pydantic config model, so each setting is written once.

:func:`options_from_model` turns the fields of a model (``EvalConfig``) into typer options: the
option's name is the field's (``max_tokens`` -> ``--max-tokens``) unless the command keeps an older
spelling, its help is the field's description and its shown default the field's default. Every
derived option defaults to None on the command line, so :func:`given_fields` can tell what the user
typed from what they left alone; the model's own defaults and validation then apply once, in
pydantic, for the CLI, a YAML file and the Python API alike.
"""

from __future__ import annotations

import inspect
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional, Union

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined


def _inner(annotation: Any) -> Any:
    """``X | None`` -> ``X``."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def flag_of(name: str, names: Mapping[str, tuple[str, ...]]) -> str:
    """The long option of field ``name`` (``--max-cost`` for ``max_cost_usd`` when ``names`` says so)."""
    decls = names.get(name)
    if decls:
        return decls[0].split("/")[0]
    return "--" + name.replace("_", "-")


def _cli_type(field: FieldInfo) -> tuple[Any, bool]:
    """The option's Python type and whether it is a list written comma-separated."""
    inner = _inner(field.annotation)
    if typing.get_origin(inner) is list:
        return str, True
    if typing.get_origin(inner) is typing.Literal:
        return str, False
    if inner in (str, int, float, bool, Path):
        return inner, False
    return str, False


def _shown_default(field: FieldInfo) -> str | bool:
    if field.is_required():
        return False
    default = field.get_default(call_default_factory=True)
    if default is None or default is PydanticUndefined:
        return False
    if isinstance(default, list):
        return ",".join(str(v) for v in default)
    return str(default)


def options_from_model(model: type[BaseModel], *, names: Mapping[str, tuple[str, ...]] | None = None,
                       skip: frozenset[str] = frozenset()) -> list[inspect.Parameter]:
    """One keyword parameter per field of ``model`` (except ``skip``), typed for typer.

    ``names``: option declarations for fields whose spelling differs from ``--field-name`` (short
    flags, older names; a bool as ``--cache/--no-cache``). Bools are ``--x/--no-x`` flags."""
    names = names or {}
    params = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        kind, _ = _cli_type(field)
        decls = names.get(name) or ("--" + name.replace("_", "-"),)
        if kind is bool and "/" not in decls[0]:
            decls = (f"{decls[0]}/--no-{decls[0][2:]}", *decls[1:])
        help_text = (field.description or "").strip()
        help_text += "" if help_text.endswith(".") else "."
        shown = _shown_default(field)
        if field.is_required():
            help_text += " Required (here or in --config)."
        elif shown is not False:
            help_text += f" Default: {shown}."
        option = typer.Option(*decls, help=help_text, show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[Optional[kind], option]))
    return params


def given_fields(model: type[BaseModel], values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the user set on the command line (None = left alone), lists split on commas."""
    given: dict[str, Any] = {}
    for name, value in values.items():
        field = model.model_fields.get(name)
        if field is None or value is None:
            continue
        if _cli_type(field)[1]:
            value = [part.strip() for part in str(value).split(",") if part.strip()]
        given[name] = value
    return given
