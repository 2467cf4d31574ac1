"""Which process of a distributed training run writes the outputs (Ray Train, torchrun, accelerate)."""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """True on the process that writes outputs: rank 0 of a distributed run, or the only process."""
    return int(os.environ.get("RANK", "0")) == 0
