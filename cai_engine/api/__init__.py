"""The Python API of cai-engine; the CLI calls the same functions (one code path).

Import from the package root: ``import cai_engine; cai_engine.revise([...], model="local/smollm2")``.
"""

from cai_engine.api.constitution import load_constitution
from cai_engine.api.evaluate import aevaluate, evaluate
from cai_engine.api.exports import export_dpo, export_reward, export_sft, run, train
from cai_engine.api.induce import ainduce, audit, induce
from cai_engine.api.judge import ajudge, judge, judge_eval
from cai_engine.api.result import Result
from cai_engine.api.revise import arevise, revise

__all__ = [
    "Result", "aevaluate", "ainduce", "ajudge", "arevise", "audit", "evaluate", "export_dpo", "export_reward",
    "export_sft", "induce", "judge", "judge_eval", "load_constitution", "revise", "run", "train",
]
