"""Constitutions from data: induce principles from labelled preferences, test each, audit judged pairs.

One module per step of ``cai constitution induce`` (after Inverse Constitutional AI, Findeis et
al., ICLR 2025; reference code ``rdnfn/icai``): :mod:`.propose` (the model proposes principles that
explain each preference), :mod:`.merge` (near-duplicates merged into candidates with their
support), :mod:`.score` (each candidate tested as the judge's only principle on held-out pairs),
:mod:`.report` (the constitution YAML and its report); and :mod:`.audit` for
``cai constitution audit``. The command itself is :func:`cai_engine.api.induce.induce`.
"""
