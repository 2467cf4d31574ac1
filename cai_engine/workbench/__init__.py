"""The constitution workbench: tools for the author's loop (draft, lint, preview, red-team, inspect).

* :mod:`.redteam` - generate adversarial, borderline and benign look-alike prompts per principle.
* :mod:`.textsim` - n-gram Jaccard and MinHash-LSH near-duplicate detection (over
  :mod:`cai_engine.text_measures`' normalisation and shingles).
* :mod:`.lint` - actionable warnings about a constitution, with principle id and line.
* :mod:`.preview` / :mod:`.diff` - run a few prompts through critique->revise (+ judge) and show them.
* :mod:`.viewer` - one self-contained offline HTML page to browse and spot-check a dataset.
"""
