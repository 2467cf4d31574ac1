"""The Python API of cai-engine; the CLI calls the same functions (one code path).

Import from the package root: ``import cai_engine; cai_engine.revise([...], model="local/smollm2")``.
Each name loads its module on first use, so ``cai revise`` does not import the evaluation or
induction code (a measurable share of a short command's start-up).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it
_WHERE = {
    "load_constitution": "constitution",
    "evaluate": "evaluate", "aevaluate": "evaluate",
    "export_sft": "exports", "export_dpo": "exports", "export_reward": "exports", "run": "exports", "train": "exports",
    "induce": "induce", "ainduce": "induce", "audit": "induce",
    "judge": "judge", "ajudge": "judge", "judge_eval": "judge",
    "Result": "result",
    "revise": "revise", "arevise": "revise",
}

__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from cai_engine.api.constitution import load_constitution  # noqa: F401
    from cai_engine.api.evaluate import aevaluate, evaluate  # noqa: F401
    from cai_engine.api.exports import export_dpo, export_reward, export_sft, run, train  # noqa: F401
    from cai_engine.api.induce import ainduce, audit, induce  # noqa: F401
    from cai_engine.api.judge import ajudge, judge, judge_eval  # noqa: F401
    from cai_engine.api.result import Result  # noqa: F401
    from cai_engine.api.revise import arevise, revise  # noqa: F401


def resolve(name: str) -> Any:
    """The public object ``name``, from its submodule (never the submodule itself: ``revise`` is both
    a module and the function it defines, and importing the module binds the module's name here)."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'cai_engine.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"cai_engine.api.{module}"), name)
    globals()[name] = value  # from now on the function, not the module of the same name
    return value


def __getattr__(name: str) -> Any:
    return resolve(name)
