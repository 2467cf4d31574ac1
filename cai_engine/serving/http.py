"""The reward service over HTTP (aiohttp): OpenRLHF's remote reward payload, plus a health check.

``POST`` (any path, so ``--reward.remote_url http://HOST:PORT/reward`` works as given) with
``{"query": [...], "prompts": [...], "labels": [...]}`` returns
``{"rewards": [...], "scores": [...], "extra_logs": {...}}``. ``GET /health`` returns the judge and
the counters. Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from cai_engine.serving.reward import RewardScorer


def build_app(scorer: RewardScorer, stats: Any = None) -> Any:
    from aiohttp import web

    async def reward(request: web.Request) -> web.Response:
        try:
            payload = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": "body must be JSON: {\"query\": [...], \"prompts\": [...]}"}, status=400)
        queries = payload.get("query") if isinstance(payload, dict) else None
        if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
            return web.json_response({"error": "\"query\" must be a list of strings (prompt + response)"}, status=400)
        try:
            body = await scorer.score_batch(queries, payload.get("prompts"), payload.get("labels"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(body)

    async def health(request: web.Request) -> web.Response:
        info: dict[str, Any] = {"status": "ok", "judge": scorer.judge.spec, "mode": scorer.mode,
                                "constitution": scorer.constitution.name}
        if stats is not None:
            info["stats"] = stats()
        return web.json_response(info)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/health", health)
    app.router.add_post("/{tail:.*}", reward)
    return app


async def serve(scorer: RewardScorer, host: str, port: int, *, stop: Any, stats: Any = None,
                on_ready: Any = None) -> None:
    """Serve until ``stop.requested`` (the session's graceful stop: Ctrl-C / SIGTERM)."""
    from aiohttp import web

    runner = web.AppRunner(build_app(scorer, stats), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1] if site._server and site._server.sockets else port  # type: ignore[union-attr]
    if on_ready is not None:
        on_ready(host, bound)
    try:
        while not stop.requested:
            await asyncio.sleep(0.2)
    finally:
        await runner.cleanup()
