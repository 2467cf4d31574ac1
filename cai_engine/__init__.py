"""cai-engine: Constitutional AI and RLAIF data generation and training.

The Python API (the CLI calls the same functions)::

    import cai_engine
    c = cai_engine.load_constitution("medical")
    sft = cai_engine.revise(["How do I treat a burn?"], constitution=c, model="local/smollm2", out="out/med")
    cai_engine.export_sft("out/med", out="out/med/sft")

Names load on first use, so ``import cai_engine`` (and ``cai --help``) stays instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Result", "aevaluate", "ainduce", "ajudge", "arevise", "audit", "evaluate", "export_dpo", "export_reward",
    "export_sft", "induce", "judge", "judge_eval", "load_constitution", "revise", "run", "train",
]

if TYPE_CHECKING:
    from cai_engine.api import (  # noqa: F401
        Result, aevaluate, ainduce, ajudge, arevise, audit, evaluate, export_dpo, export_reward, export_sft, induce,
        judge, judge_eval, load_constitution, revise, run, train,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cai_engine.api import resolve

        value = resolve(name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cai_engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
