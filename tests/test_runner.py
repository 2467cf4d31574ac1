"""run_items: bounded concurrency, failures as records, duplicate ids once, fatal errors stop cleanly."""

from __future__ import annotations

import asyncio

import pytest

from cai_engine.engine.records import RecordStore
from cai_engine.engine.runner import run_items
from cai_engine.errors import FatalBackendError


async def test_failures_become_records_and_duplicates_run_once(tmp_path) -> None:
    in_flight = 0
    peak = 0

    async def worker(item: int, rid: str) -> dict:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        if item % 5 == 0:
            raise ValueError(f"bad item {item}")
        return {"status": "ok", "item": item}

    items = list(range(1, 31)) + [3, 4]  # two duplicates
    with RecordStore(tmp_path / "r.jsonl") as store:
        summary = await run_items(items, record_id=str, worker=worker, store=store, concurrency=4)
        records = store.records()
    assert peak <= 4
    assert summary.done == 24 and summary.failed == 6 and summary.skipped == 2
    assert len(records) == 30
    failed = [r for r in records if r["status"] == "failed"]
    assert all("ValueError: bad item" in r["error"] for r in failed)


async def test_fatal_error_stops_and_keeps_finished(tmp_path) -> None:
    async def worker(item: int, rid: str) -> dict:
        await asyncio.sleep(0.001 * item)
        if item == 10:
            raise FatalBackendError("401 unauthorized: check OPENAI_API_KEY")
        return {"status": "ok"}

    with RecordStore(tmp_path / "r.jsonl") as store:
        with pytest.raises(FatalBackendError):
            await run_items(range(100), record_id=str, worker=worker, store=store, concurrency=2)
        finished = len(store)
    assert 0 < finished < 100
    # Resume skips what is done.
    with RecordStore(tmp_path / "r.jsonl") as store:
        seen = []

        async def ok_worker(item: int, rid: str) -> dict:
            seen.append(item)
            return {"status": "ok"}

        summary = await run_items(range(100), record_id=str, worker=ok_worker, store=store, concurrency=8)
    assert summary.skipped == finished and len(seen) == 100 - finished
