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
