"""One leader among workers runs background work, and leadership moves when the leader goes."""

from __future__ import annotations

import asyncio

from app.config import Settings
from app.db import Database
from app.leader import Leadership


def _leader(db: Database, events: list[str], name: str) -> Leadership:
    async def elected() -> None:
        events.append(f"{name} elected")

    async def deposed() -> None:
        events.append(f"{name} deposed")

    return Leadership(db, on_elected=elected, on_deposed=deposed, retry_s=0.05)


async def test_exactly_one_leader_and_a_follower_takes_over(settings: Settings) -> None:
    # Two Database objects: two independent processes' worth of connections/file handles.
    first_db, second_db = Database(settings), Database(settings)
    events: list[str] = []
    first, second = _leader(first_db, events, "first"), _leader(second_db, events, "second")
    try:
        await first.start()
        await second.start()
        await asyncio.sleep(0.3)  # several retry rounds: the follower must stay a follower
        assert (first.is_leader, second.is_leader) == (True, False)
        assert events == ["first elected"]

        await first.stop()  # the leader shuts down (or dies): its lock goes with it
        for _ in range(100):
            if second.is_leader:
                break
            await asyncio.sleep(0.05)
        assert second.is_leader
        assert events == ["first elected", "first deposed", "second elected"]
    finally:
        await first.stop()
        await second.stop()
        await first_db.dispose()
        await second_db.dispose()


async def test_a_leader_that_stops_can_lead_again(settings: Settings) -> None:
    db = Database(settings)
    events: list[str] = []
    try:
        for _ in range(2):
            leader = _leader(db, events, "x")
            await leader.start()
            assert leader.is_leader
            await leader.stop()
        assert events == ["x elected", "x deposed"] * 2
    finally:
        await db.dispose()
