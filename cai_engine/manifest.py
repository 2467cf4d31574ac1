"""``manifest.json`` of an output dir: what produced it (versions, hashes, settings) and what it cost."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from cai_engine.atomic import write_json_atomic

TRACKED_PACKAGES = ("cai-engine", "torch", "transformers", "datasets", "trl", "peft", "openai", "anthropic", "vllm")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_manifest(out_dir: Path, stage: str, data: dict[str, Any]) -> Path:
    """Merge ``data`` under ``stages[stage]`` of ``out_dir/manifest.json`` (atomic replace).

    Every string of the manifest passes through :func:`~cai_engine.models.keys.redact`: URLs lose
    their credentials (``user:pass@``, ``?api_key=``) and known API keys are scrubbed.
    """
    from cai_engine.models.keys import redact

    path = out_dir / "manifest.json"
    manifest: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    manifest["python"] = platform.python_version()
    manifest["packages"] = package_versions()
    manifest.setdefault("stages", {})[stage] = {**data, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    manifest = redact(json.loads(json.dumps(manifest, ensure_ascii=False, default=str)))
    return write_json_atomic(path, manifest)
