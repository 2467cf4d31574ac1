"""A small batch-mode job (run as a subprocess by the batch tests, so it can be killed with -9).

    python tests/batch_job.py SPEC BASE_URL BATCH_DIR OUT_JSONL N [CACHE_PATH]

BATCH_DIR "-" runs online (no Batch API). The key comes from $FAKE_PROVIDER_KEY. Like the CLI, a
CaiError is printed as one line on stderr with exit status 1; the stats are printed as a manifest.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from cai_engine.engine.batch_api import BatchSettings
from cai_engine.engine.engine import EngineOptions
from cai_engine.engine.factory import build_engine
from cai_engine.engine.records import RecordStore, stable_hash
from cai_engine.engine.runner import run_items
from cai_engine.errors import CaiError
from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams


def prompts(n: int) -> list[str]:
    return [f"batch prompt {i}" for i in range(n)]


async def main(spec: str, base_url: str, batch_dir: Path, out: Path, n: int, cache_path: Path | None) -> None:
    config = ModelConfig(spec=spec, base_urls=[base_url], api_key_env="FAKE_PROVIDER_KEY", timeout_s=5.0)
    options = EngineOptions(retry_base_s=0.01, batch=BatchSettings(max_items=10, idle_s=0.2, poll_s=0.05,
                                                                   poll_max_s=0.1))
    engine = build_engine(config, batch_dir=None if str(batch_dir) == "-" else batch_dir, use_cache=cache_path is not None, cache_path=cache_path,
                          options=options)
    store = RecordStore(out)

    async def worker(prompt: str, rid: str) -> dict[str, object]:
        r = await engine.generate(ChatRequest(messages=[Message(role="user", content=prompt)],
                                              params=SamplingParams(max_tokens=32)))
        return {"prompt": prompt, "answer": r.text, "status": "ok"}

    summary = await run_items(prompts(n), record_id=stable_hash, worker=worker, store=store,
                              concurrency=engine.suggested_concurrency)
    store.close()
    await engine.aclose()
    print(f"done {summary.done} failed {summary.failed} skipped {summary.skipped} {engine.stats.progress_text()} "
          f"batched {engine.stats.batched} submitted {engine.stats.batches_submitted} "
          f"resumed {engine.stats.batches_resumed}", flush=True)
    print("manifest:", json.dumps(engine.stats.model_dump()), flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    try:
        asyncio.run(main(a[0], a[1], Path(a[2]), Path(a[3]), int(a[4]), Path(a[5]) if len(a) > 5 else None))
    except CaiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
