"""The CLI's console and progress bar (defined with the API's progress, shared by both)."""

from __future__ import annotations

from cai_engine.api.progress import RunProgress, console

__all__ = ["RunProgress", "console"]
