"""The usage ledger and its migrations, on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.admin
import bot.tokens  # noqa: F401  (the api_tokens table is part of the schema)
from bot.database import (
    Base,
    DatabaseError,
    create_engine,
    current_revision,
    downgrade,
    head_revision,
    to_async_url,
    to_sync_url,
    upgrade,
)
from bot.ledger import Ledger
from bot.usage import UsageRecord
from tests.support import REPO
from tests.support.fixtures_db import recorded, votes_on

REPO_ROOT = REPO

# A Teams channel thread: long ids, a ";messageid=" suffix, non-ASCII model tag.
RECORD = UsageRecord(
    platform="teams",
    workspace="72f988bf-86f1-41af-91ab-2d7cd011db47",
    user="29:1GcS4EyB_oSI8A88XmWBN7NJFyMqe3QGnJdgLfFGkJnVelzRGos0bPbpsfJjcbAD22bmKc4GMbrY2g4JDrrA8vM06X1-cHHle4zOE6U4ttcc",
    conversation="teams:72f988bf-86f1-41af-91ab-2d7cd011db47:19:9b3c81a7cf8a4a3b9f6f9c9a1c1f0a1e@thread.tacv2;messageid=1700000000000:"
    + "x" * 160,
    route="premium",
    model="gpt-4.1-é",
    prompt_tokens=1234,
    completion_tokens=567,
    latency_ms=8901,
    first_token_ms=345,
    outcome="ok",
    # Not UTC, with microseconds: stored as an instant and read back as UTC.
    created_at=datetime(2025, 3, 30, 1, 59, 59, 123456, tzinfo=timezone(timedelta(hours=2))),
)


@contextmanager
def sync_connection(url: str) -> Iterator[Connection]:
    """A blocking connection, for inspecting the schema from a test."""
    engine = sqlalchemy.create_engine(to_sync_url(url))
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def sqlite_worker_threads() -> int:
    """How many aiosqlite connection threads are alive."""
    return sum(
        thread.name.endswith("(_connection_worker_thread)") for thread in threading.enumerate()
    )


def table_names(url: str) -> set[str]:
    with sync_connection(url) as connection:
        return set(inspect(connection).get_table_names())


# --- migrations ---------------------------------------------------------------


def test_upgrade_creates_the_table_and_a_second_upgrade_changes_nothing(
    database_url: str,
) -> None:
    assert current_revision(database_url) is None
    assert "requests" not in table_names(database_url)

    upgrade(database_url)

    assert {"requests", "alembic_version"} <= table_names(database_url)
    assert current_revision(database_url) == head_revision() == "0006"

    with sync_connection(database_url) as connection:
        connection.execute(
            sqlalchemy.text(
                "INSERT INTO requests (platform, workspace, user_id, conversation, route,"
                " model, prompt_tokens, completion_tokens, latency_ms, outcome, created_at)"
                " VALUES ('slack', 'T1', 'U1', 'c', 'local', 'm', 1, 2, 3, 'ok',"
                " '2025-01-01 00:00:00')"
            )
        )
        connection.commit()

    upgrade(database_url)

    assert current_revision(database_url) == head_revision()
    with sync_connection(database_url) as connection:
        count = connection.execute(sqlalchemy.text("SELECT count(*) FROM requests")).scalar()
    assert count == 1


def test_the_migration_creates_exactly_the_mapped_schema(database_url: str) -> None:
    upgrade(database_url)

    with sync_connection(database_url) as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)

    assert differences == []


def test_downgrade_to_base_removes_the_table(database_url: str) -> None:
    upgrade(database_url)

    downgrade(database_url, "base")

    assert "requests" not in table_names(database_url)
    assert current_revision(database_url) is None


async def test_concurrent_upgrades_from_several_processes_all_succeed(database_url: str) -> None:
    # Replicas starting together each run `upgrade`; neither may fail.
    # Each process imports everything first, then all start upgrading at the same moment.
    script = (
        "import sys, time\n"
        "from bot.database import upgrade\n"
        "time.sleep(max(0.0, float(sys.argv[2]) - time.time()))\n"
        "upgrade(sys.argv[1])\n"
    )
    start_at = str(time.time() + 2.0)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            database_url,
            start_at,
            cwd=REPO_ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(process.communicate() for process in processes)), timeout=60
        )
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()

    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr.decode()
    assert current_revision(database_url) == head_revision()


async def test_concurrent_upgrades_in_one_process_both_succeed(database_url: str) -> None:
    await asyncio.wait_for(
        asyncio.gather(
            asyncio.to_thread(upgrade, database_url), asyncio.to_thread(upgrade, database_url)
        ),
        timeout=60,
    )

    assert current_revision(database_url) == head_revision()


def test_upgrade_of_an_unreachable_database_raises_database_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError):
        upgrade(f"sqlite:///{tmp_path / 'missing' / 'chatbot.db'}")


# --- the ledger ---------------------------------------------------------------


async def test_a_recorded_row_reads_back_with_every_field_equal(
    ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    await ledger.record(RECORD)

    [stored] = await recorded(ledger_engine)

    assert stored == RECORD
    assert stored.created_at.utcoffset() == timedelta(0)
    assert stored.created_at == datetime(2025, 3, 29, 23, 59, 59, 123456, tzinfo=UTC)


async def test_a_record_without_first_token_reads_back(
    ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    failed = replace(RECORD, first_token_ms=None, outcome="model_unavailable", completion_tokens=0)

    await ledger.record(failed)

    assert await recorded(ledger_engine) == [failed]


async def test_rows_read_back_in_the_order_of_their_times(
    ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    records = [replace(RECORD, created_at=start + timedelta(minutes=i)) for i in range(5)]
    for record in (records[2], records[0], records[4], records[1], records[3]):
        await ledger.record(record)

    assert await recorded(ledger_engine, limit=3) == [records[4], records[3], records[2]]
    assert await recorded(ledger_engine) == records[::-1]


async def test_concurrent_records_are_all_stored(
    ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    records = [replace(RECORD, prompt_tokens=i) for i in range(20)]

    await asyncio.gather(*(ledger.record(record) for record in records))

    stored = await recorded(ledger_engine)
    assert sorted(r.prompt_tokens for r in stored) == list(range(20))


async def test_record_on_a_database_without_the_table_raises_database_error(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    try:
        with pytest.raises(DatabaseError) as caught:
            await Ledger(engine=engine).record(RECORD)
    finally:
        await engine.dispose()

    assert isinstance(caught.value.__cause__, SQLAlchemyError)
    assert "requests" in str(caught.value)


def test_a_naive_created_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        replace(RECORD, created_at=datetime(2025, 1, 1))


# --- ping ---------------------------------------------------------------------


async def test_ping_succeeds_on_a_live_database(ledger: Ledger) -> None:
    await ledger.ping()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/test",
        "sqlite:///{tmp}/no-such-directory/chatbot.db",
    ],
    ids=["postgresql-closed-port", "sqlite-missing-directory"],
)
async def test_ping_raises_database_error_when_the_database_is_down(
    url: str, tmp_path: Path
) -> None:
    threads_before = sqlite_worker_threads()
    engine = create_engine(url.format(tmp=tmp_path))
    try:
        with pytest.raises(DatabaseError, match="database is down"):
            await Ledger(engine=engine).ping()
    finally:
        await engine.dispose()

    # A failed ping leaves no thread behind (aiosqlite stops the worker of a failed
    # connection without waiting; waiting here also keeps it from outliving the loop).
    for _ in range(200):
        if sqlite_worker_threads() <= threads_before:
            break
        await asyncio.sleep(0.01)
    assert sqlite_worker_threads() <= threads_before


def test_an_unknown_database_scheme_raises_database_error() -> None:
    with pytest.raises(DatabaseError, match="unsupported DATABASE_URL"):
        create_engine("nosuchdb://host/db")


# --- URL conversions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///chatbot.db", "sqlite+aiosqlite:///chatbot.db"),
        ("sqlite:////var/lib/bot/x.db", "sqlite+aiosqlite:////var/lib/bot/x.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u:p%40ss@db:5432/bot", "postgresql+psycopg://u:p%40ss@db:5432/bot"),
        (
            "postgres://u:p@db/bot?sslmode=require",
            "postgresql+psycopg://u:p@db/bot?sslmode=require",
        ),
        ("postgresql+psycopg2://u@db/bot", "postgresql+psycopg://u@db/bot"),
        ("postgresql+psycopg://u@db/bot", "postgresql+psycopg://u@db/bot"),
        ("mysql+aiomysql://u@db/bot", "mysql+aiomysql://u@db/bot"),
    ],
)
def test_to_async_url(url: str, expected: str) -> None:
    assert to_async_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:///chatbot.db", "sqlite:///chatbot.db"),
        ("sqlite:///chatbot.db", "sqlite:///chatbot.db"),
        ("postgresql://u:p@db:5432/bot", "postgresql+psycopg://u:p@db:5432/bot"),
        ("postgres://u@db/bot", "postgresql+psycopg://u@db/bot"),
        ("postgresql+psycopg://u@db/bot", "postgresql+psycopg://u@db/bot"),
        ("postgresql+asyncpg://u@db/bot", "postgresql+psycopg://u@db/bot"),
    ],
)
def test_to_sync_url(url: str, expected: str) -> None:
    assert to_sync_url(url) == expected


def test_a_string_that_is_not_a_url_raises_database_error() -> None:
    with pytest.raises(DatabaseError):
        to_async_url("chatbot.db")


async def test_sqlite_opens_while_another_process_reads_it_before_wal(tmp_path: Path) -> None:
    """`serve --workers` opens one SQLite file from several processes at once: switching it
    to WAL must not fail a connection while another one reads it ("database is locked")."""
    path = tmp_path / "ledger.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN")
    other.execute("SELECT * FROM t").fetchall()  # a read in progress, file not WAL yet
    engine = create_engine(f"sqlite:///{path}?timeout=0.2")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()
        other.close()


async def test_a_second_vote_and_a_relinked_message_replace_the_first(
    ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    """A replacement (one INSERT ... ON CONFLICT statement) keeps one vote per person and
    answer, one answer per message."""
    from bot.votes import Vote

    now = datetime.now(UTC)
    await ledger.record_vote(Vote("a1", "slack", "T1", "U1", "up", now))
    await ledger.record_vote(Vote("a1", "slack", "T1", "U1", "down", now))
    await ledger.record_vote(Vote("a1", "slack", "T1", "U2", "up", now))
    assert await votes_on(ledger_engine, "a1") == {"slack:U1": "down", "slack:U2": "up"}
    await ledger.link_messages(
        platform="teams", messages=["m1", "m1", "m2"], answer_id="a1", at=now
    )
    await ledger.link_messages(platform="teams", messages=["m2"], answer_id="a2", at=now)
    assert await ledger.answer_for_message(platform="teams", message="m1") == "a1"
    assert await ledger.answer_for_message(platform="teams", message="m2") == "a2"
