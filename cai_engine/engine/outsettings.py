"""``OUT/settings.json``: the settings an output folder's records were made with.

Why: one OUT is one dataset. A rerun with other settings (``--rounds 2`` into a ``--rounds 1``
folder) used to append a second record per prompt, and the export mixed both. Now the first run
writes its settings (constitution hash, models, rounds, sampling, few-shot, prompt source) and a
rerun with different ones is refused in one line that names the differences. ``--new-settings``
accepts them: the new settings become current, every record is stamped with the ``settings_id``
it was made under, and exports keep only the current ones unless asked for all.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from cai_engine.atomic import write_json_atomic
from cai_engine.engine.records import stable_hash
from cai_engine.errors import ConfigError

SETTINGS_FILE = "settings.json"


def settings_id(settings: dict[str, Any]) -> str:
    return stable_hash(settings, length=12)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): data}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``["rounds: 1 -> 2", ...]`` for the leaves that differ."""
    a, b = _flat(old), _flat(new)
    return [f"{key}: {json.dumps(a.get(key))} -> {json.dumps(b.get(key))}"
            for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def _read(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / SETTINGS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _write(out_dir: Path, data: dict[str, Any]) -> None:
    write_json_atomic(out_dir / SETTINGS_FILE, data)


def claim(out_dir: Path, kind: str, settings: dict[str, Any], *, new_settings: bool = False) -> str:
    """Record ``settings`` as this OUT's, or check them against the ones it has; returns their id.

    Raises a one-line :class:`ConfigError` naming the differences when they differ and
    ``new_settings`` is off."""
    sid = settings_id(settings)
    known = _read(out_dir)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if known is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write(out_dir, {"kind": kind, "current": sid, "settings": {sid: {"settings": settings, "first_used": now}}})
        return sid
    if known.get("kind") != kind:
        raise ConfigError(f"{out_dir} holds {known.get('kind')} records, not {kind}; use another --out")
    if known["current"] == sid:
        return sid
    if sid in known["settings"] and new_settings:
        known["current"] = sid
        _write(out_dir, known)
        return sid
    if not new_settings:
        old = known["settings"][known["current"]]["settings"]
        changed = "; ".join(differences(old, settings)) or "settings changed"
        raise ConfigError(
            f"{out_dir} was made with other settings ({changed}); use a new --out for a new dataset, or pass "
            "--new-settings to keep both apart in this folder (exports then use only the new settings)"
        )
    known["settings"][sid] = {"settings": settings, "first_used": now}
    known["current"] = sid
    _write(out_dir, known)
    return sid


def current_settings(records_file: Path) -> str | None:
    """The current ``settings_id`` of the OUT that holds ``records_file`` (None: no settings file)."""
    known = _read(Path(records_file).parent)
    return None if known is None else known.get("current")


def record_filter(records_file: Path, all_settings: bool = False) -> Callable[[dict[str, Any]], bool]:
    """Keep the records of the folder's current settings (records from before settings were kept,
    with no ``settings_id``, count as current when the folder never changed settings)."""
    known = _read(Path(records_file).parent)
    if all_settings or known is None:
        return lambda record: True
    current = known["current"]
    single = len(known.get("settings", {})) == 1
    return lambda record: record.get("settings_id", current if single else None) == current
