"""Constitutions: the principles that drive critique, revision and judging.

``from cai_engine.constitution import load_constitution, Constitution, Principle`` is the whole
public surface; the submodules split it by responsibility (schema, YAML positions, error
messages, loading with ``extends``, CAI recipe JSON interop).
"""

from cai_engine.constitution.cai_json import (
    CaiImportWarning,
    constitution_from_cai_json,
    constitution_to_dict,
    constitution_to_yaml,
)
from cai_engine.constitution.diagnostics import ConstitutionError, Problem
from cai_engine.constitution.loader import (
    ConstitutionFile,
    load_constitution,
    principle_locations,
    resolve_path,
    shipped_dir,
    shipped_names,
)
from cai_engine.constitution.schema import Constitution, FewShotExample, Principle, SamplingConfig

__all__ = [
    "CaiImportWarning",
    "Constitution",
    "ConstitutionError",
    "ConstitutionFile",
    "FewShotExample",
    "Principle",
    "Problem",
    "SamplingConfig",
    "constitution_from_cai_json",
    "constitution_to_dict",
    "constitution_to_yaml",
    "load_constitution",
    "principle_locations",
    "resolve_path",
    "shipped_dir",
    "shipped_names",
]
