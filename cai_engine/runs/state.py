"""Which stages of a run are done, for which inputs: ``runs/NAME/state.json``.

A stage is skipped when it finished with the same fingerprint (hash of its settings and of every
upstream fingerprint); a stage that was interrupted keeps its dir so record stores resume; a stage
whose inputs changed starts from an empty dir.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from cai_engine.atomic import write_text_atomic

Status = Literal["running", "done", "failed"]


class StageState(BaseModel):
    fingerprint: str
    status: Status
    outputs: dict[str, Any] = Field(default_factory=dict)
    wall_s: float | None = None
    error: str | None = None


class RunState(BaseModel):
    stages: dict[str, StageState] = Field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path) -> "RunState":
        path = run_dir / "state.json"
        return cls.model_validate_json(path.read_text()) if path.exists() else cls()

    def save(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "state.json", self.model_dump_json(indent=2))

    def is_done(self, stage: str, fingerprint: str) -> bool:
        entry = self.stages.get(stage)
        return entry is not None and entry.status == "done" and entry.fingerprint == fingerprint

    def begin(self, stage: str, fingerprint: str, stage_dir: Path, *, resumable: bool) -> bool:
        """Mark ``stage`` running; returns True when it resumes an interrupted attempt."""
        entry = self.stages.get(stage)
        resuming = resumable and entry is not None and entry.fingerprint == fingerprint and entry.status != "done"
        if not resuming and stage_dir.exists():
            shutil.rmtree(stage_dir)
        self.stages[stage] = StageState(fingerprint=fingerprint, status="running")
        return resuming


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}
