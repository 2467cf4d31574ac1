"""Join shard outputs (``--shard i/N``) into one record file, one record per id.

Streamed: each shard is indexed (id -> offset and status, never the records) and the records are
copied one at a time, the winner of an id read from its shard by offset.
"""

from __future__ import annotations

from pathlib import Path

from cai_engine.engine.records import RecordIndex, RecordStore, iter_latest, read_line_at
from cai_engine.errors import CaiError

RECORD_FILES = ("revisions.jsonl", "pairs.jsonl")


def _record_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = [path / name for name in RECORD_FILES if (path / name).exists()]
    if not found:
        raise CaiError(f"{path}: no {' or '.join(RECORD_FILES)} in it; pass shard output dirs or record files")
    return found[0]


def _winner(indexes: list[RecordIndex], record_id: str, first: int) -> int:
    """The shard whose record of ``record_id`` is kept: the last ``ok`` one, else the last one."""
    holders = [i for i in range(first, len(indexes)) if record_id in indexes[i]]
    ok = [i for i in holders if indexes[i].status(record_id) == "ok"]
    return (ok or holders)[-1]


def merge_shards(shards: list[Path], out_dir: Path) -> tuple[Path, dict[str, int]]:
    """Merge; an ``ok`` record beats a ``failed`` one for the same id, else the later shard wins.

    Records come out in the order their id first appears (shard by shard, in file order).
    """
    files = [_record_file(p) for p in shards]
    names = {f.name for f in files}
    if len(names) != 1:
        raise CaiError(f"shards hold different record kinds ({', '.join(sorted(names))}); merge revisions and pairs separately")
    target = out_dir / names.pop()
    if target.exists():
        raise CaiError(f"{target} exists; merge into an empty --out dir")
    indexes = [RecordIndex(f) for f in files]
    written = 0
    with RecordStore(target) as store:
        for n, path in enumerate(files):
            for record in iter_latest(path):
                rid = record["id"]
                if any(rid in indexes[i] for i in range(n)):
                    continue  # written with the shard where it first appeared
                winner = _winner(indexes, rid, n)
                store.append(record if winner == n else read_line_at(files[winner], indexes[winner].offset(rid)))  # type: ignore[arg-type]
                written += 1
    duplicates = sum(len(index) for index in indexes) - written
    return target, {"records": written, "duplicates": duplicates}
