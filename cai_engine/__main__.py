"""``python -m cai_engine`` is the ``cai`` command."""

from cai_engine.cli import main

main()
