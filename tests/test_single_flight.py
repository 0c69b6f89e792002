"""SingleFlight: callers of one key share one piece of work in flight, and only that."""

from __future__ import annotations

import asyncio

import pytest

from server.single_flight import SingleFlight


def test_waiting_callers_share_one_outcome_and_a_cancelled_one_leaves_it() -> None:
    async def scenario() -> None:
        flights: SingleFlight[int] = SingleFlight()
        started: list[str] = []
        release = asyncio.Event()

        async def work(key: str, value: int) -> int:
            started.append(key)
            await release.wait()
            if value < 0:
                raise ValueError(key)
            return value

        first = asyncio.ensure_future(flights.run("a", lambda: work("a", 1)))
        gone = asyncio.ensure_future(flights.run("a", lambda: work("a", 2)))
        later = asyncio.ensure_future(flights.run("a", lambda: work("a", 3)))
        other = asyncio.ensure_future(flights.run("b", lambda: work("b", 4)))
        failing = [asyncio.ensure_future(flights.run("c", lambda: work("c", -1))) for _ in "xy"]
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        release.set()
        assert await first == 1 and await later == 1 and await other == 4
        assert gone.cancelled()
        for caller in failing:
            with pytest.raises(ValueError):
                await caller
        assert started == ["a", "b", "c"]  # one piece of work per key
        assert await flights.run("a", lambda: work("a", 5)) == 5  # landed: asked anew

    asyncio.run(scenario())
