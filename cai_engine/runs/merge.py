"""Join shard outputs (``--shard i/N``) into one record file, one record per id."""

from __future__ import annotations

from pathlib import Path

from cai_engine.engine.records import RecordStore, latest_records
from cai_engine.errors import CaiError

RECORD_FILES = ("revisions.jsonl", "pairs.jsonl")


def _record_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = [path / name for name in RECORD_FILES if (path / name).exists()]
    if not found:
        raise CaiError(f"{path}: no {' or '.join(RECORD_FILES)} in it; pass shard output dirs or record files")
    return found[0]


def merge_shards(shards: list[Path], out_dir: Path) -> tuple[Path, dict[str, int]]:
    """Merge; an ``ok`` record beats a ``failed`` one for the same id, else the later shard wins."""
    files = [_record_file(p) for p in shards]
    names = {f.name for f in files}
    if len(names) != 1:
        raise CaiError(f"shards hold different record kinds ({', '.join(sorted(names))}); merge revisions and pairs separately")
    merged: dict[str, dict] = {}
    duplicates = 0
    for path in files:
        for record in latest_records(path):
            previous = merged.get(record["id"])
            if previous is not None:
                duplicates += 1
                if previous.get("status") == "ok" and record.get("status") != "ok":
                    continue
            merged[record["id"]] = record
    target = out_dir / names.pop()
    if target.exists():
        raise CaiError(f"{target} exists; merge into an empty --out dir")
    with RecordStore(target) as store:
        for record in merged.values():
            store.append(record)
    return target, {"records": len(merged), "duplicates": duplicates}
