"""RecordStore: durability, torn-tail repair, last-line-wins, failure retry semantics."""

from __future__ import annotations

import json

from cai_engine.engine.records import RecordStore, latest_records, stable_hash


def test_stable_hash_ignores_key_order() -> None:
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert len(stable_hash("x")) == 16


def test_append_is_durable_and_reloaded(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    with RecordStore(path) as store:
        store.append({"id": "a", "status": "ok", "v": 1})
        store.append({"id": "b", "status": "failed", "error": "boom"})
    reopened = RecordStore(path)
    assert "a" in reopened and "b" in reopened
    assert reopened.is_done("a") and reopened.is_done("b")
    assert not reopened.is_done("b", retry_failed=True)
    assert reopened.is_done("a", retry_failed=True)
    reopened.close()


def test_torn_tail_is_cut_before_appending(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": "a", "status": "ok"}) + "\n" + '{"id": "b", "sta')
    with RecordStore(path) as store:
        assert len(store) == 1 and "b" not in store
        store.append({"id": "b", "status": "ok"})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b"]


def test_latest_record_wins_after_retry(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    with RecordStore(path) as store:
        store.append({"id": "a", "status": "failed", "error": "empty"})
        store.append({"id": "c", "status": "ok"})
        store.append({"id": "a", "status": "ok", "text": "second try"})
    records = latest_records(path)
    # Streamed in file order of each id's latest line: the retried "a" now comes after "c".
    assert [r["id"] for r in records] == ["c", "a"]
    assert records[1]["text"] == "second try"
    assert latest_records(path, status="failed") == []


def test_compact_index_keeps_the_last_write_across_merges(monkeypatch) -> None:
    from cai_engine.engine import records

    monkeypatch.setattr(records._CompactMap, "MERGE_AT", 8)  # force many bulk merges
    m = records._CompactMap([5, 3, 5], [50, 30, 51])  # a rewritten id: the last line wins
    assert m.get(5) == 51 and m.get(3) == 30 and len(m) == 2
    for i in range(100):
        m.set(1000 + i, i)
        m.set(5, 500 + i)
    m.set("not-hex-id", 7)
    assert m.get(5) == 599 and all(m.get(1000 + i) == i for i in range(100))
    assert m.get("not-hex-id") == 7 and m.get(4) is None and len(m) == 103


def test_the_index_costs_a_few_dozen_bytes_a_record(tmp_path) -> None:
    import tracemalloc

    from cai_engine.engine.records import _CompactMap

    keys = [int(stable_hash({"i": i}), 16) for i in range(100_000)]
    tracemalloc.start()
    m = _CompactMap()
    for i, k in enumerate(keys):
        m.set(k, i * 4)
    m._merge()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(m) == 100_000 and m.get(keys[1234]) == 1234 * 4
    assert current / 100_000 < 40  # bytes a record (a dict of ints: ~140)
