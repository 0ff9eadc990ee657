"""Usage rows are written in batches, and kept while the database is down."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.database import create_engine, upgrade
from bot.ledger import Ledger
from bot.tasks import TaskTracker
from bot.usage import UsageRecord
from bot.usage_writer import UsageWriter
from tests.support.fixtures_db import recorded


def record(n: int) -> UsageRecord:
    return UsageRecord(
        platform="slack",
        workspace="T1",
        user=f"U{n}",
        conversation="slack:T1:C1:1",
        route="local",
        model="codellama:7b",
        prompt_tokens=10,
        completion_tokens=5,
        latency_ms=100,
        first_token_ms=20,
        outcome="ok",
        created_at=datetime.now(UTC),
    )


async def test_records_are_written_in_one_batch(ledger: Ledger, ledger_engine: AsyncEngine) -> None:
    tracker = TaskTracker()
    writer = UsageWriter(ledger=ledger, tracker=tracker, delay=0.05)
    for n in range(25):
        writer.add(record(n))
    assert writer.pending == 25
    assert await tracker.wait_idle(5)
    assert writer.pending == 0
    assert len(await recorded(ledger_engine, 100)) == 25


async def test_records_wait_for_the_database_to_come_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/later/ledger.db"  # the directory does not exist yet
    engine = create_engine(url)
    tracker = TaskTracker()
    writer = UsageWriter(ledger=Ledger(engine=engine), tracker=tracker, delay=0.01)
    writer.add(record(1))
    writer.add(record(2))
    assert await tracker.wait_idle(5)
    assert writer.pending == 2  # kept, not lost
    (tmp_path / "later").mkdir()
    await asyncio.to_thread(upgrade, url)
    writer.add(record(3))  # the next answer's flush writes the backlog too
    assert await tracker.wait_idle(5)
    assert writer.pending == 0
    assert sorted(r.user for r in await recorded(engine)) == ["U1", "U2", "U3"]
    await engine.dispose()
