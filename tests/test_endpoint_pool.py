"""The endpoint pool's half-open trial (issue 15): a trial request that is cancelled (the engine's guard
timeout, a stop) must not leave the endpoint "probing" for good."""

from __future__ import annotations

import asyncio

from cai_engine.models.endpoints import Endpoint, EndpointPool


async def test_cancelled_trial_does_not_keep_the_endpoint_probing() -> None:
    pool: EndpointPool[None] = EndpointPool([Endpoint("http://a", None), Endpoint("http://b", None)],
                                            failures_to_open=1, cooldown_s=0.05)
    a, b = pool.endpoints
    pool.record(a, ok=False)  # a opens for 50 ms
    await asyncio.sleep(0.06)  # cooled down: the next request to a is its trial

    async def trial() -> None:
        with pool.use() as ep:
            assert ep is a and ep.probing
            await asyncio.sleep(10)  # hangs until the engine's guard timeout cancels it

    task = asyncio.ensure_future(trial())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not a.probing and a.failed == 2  # the trial counted as a failure: a rests again
    b.outstanding = 5  # b is busy: a healthy a would be picked
    assert pool.pick() is b  # still resting
    await asyncio.sleep(0.06)
    assert pool.pick() is a  # tried again after the cooldown (before the fix: never again)
    with pool.use() as ep:  # and a successful trial closes the breaker
        assert ep is a
        pool.record(ep, ok=True)
    assert a.consecutive_failures == 0 and not a.probing


async def test_answered_trial_is_recorded_once() -> None:
    pool: EndpointPool[None] = EndpointPool([Endpoint("http://a", None)], failures_to_open=1, cooldown_s=0.0)
    (a,) = pool.endpoints
    pool.record(a, ok=False)
    with pool.use() as ep:
        pool.record(ep, ok=False)  # the trial failed and said so
    assert a.failed == 2 and a.opened == 2 and not a.probing
