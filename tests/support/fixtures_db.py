"""Database fixtures on real databases: SQLite in a temp dir, and PostgreSQL.

Load with `pytest_plugins = ["tests.support.fixtures_db"]` (or `-p tests.support.fixtures_db`).

- `database_url`: a DATABASE_URL-style URL of an empty database, once per backend
  ("sqlite", "postgresql"). For PostgreSQL each test gets its own schema (selected
  through the URL's `options=-csearch_path=...`), dropped afterwards, so tests can run
  concurrently. PostgreSQL is `TEST_POSTGRES_URL` (default
  postgresql://postgres@127.0.0.1:5432/test); when it is down the param is skipped,
  or fails with CI=true.
- `ledger_engine`: an engine on a migrated `database_url`; `ledger`: a Ledger on it.
- `recorded`, `votes_on`: what the ledger's tables hold, read with SQL (the bot itself
  only writes them, and reads them as sums).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.database import create_engine, upgrade
from bot.ledger import Ledger, RequestRow, VoteRow
from bot.usage import UsageRecord

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_base_url() -> str:
    """The PostgreSQL server and database the tests use."""
    return os.environ.get("TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _libpq_conninfo(url: str) -> str:
    """A libpq connection string for psycopg.connect from a SQLAlchemy-style URL."""
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The PostgreSQL base URL, after checking the server answers."""
    url = postgres_base_url()
    try:
        with psycopg.connect(_libpq_conninfo(url), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = (
            f"PostgreSQL NOT REACHABLE at {make_url(url).render_as_string()}: {exc}. "
            "Start PostgreSQL or set TEST_POSTGRES_URL."
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} CI requires PostgreSQL.")
        pytest.skip(f"{reason} PostgreSQL tests are SKIPPED.")
    return url


@pytest.fixture
def postgres_schema_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections use a fresh, empty schema, dropped after the test."""
    schema = f"test_{uuid.uuid4().hex[:16]}"
    conninfo = _libpq_conninfo(postgres_server)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    url = make_url(postgres_server).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of an empty database, once per backend."""
    if request.param == "sqlite":
        directory = tmp_path_factory.mktemp("db")
        return f"sqlite:///{directory / 'chatbot.db'}"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture
async def ledger_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a freshly migrated database (the one `ledger` writes to)."""
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def ledger(ledger_engine: AsyncEngine) -> Ledger:
    """A Ledger on a freshly migrated database."""
    return Ledger(engine=ledger_engine)


async def recorded(engine: AsyncEngine, limit: int = 100) -> list[UsageRecord]:
    """The newest ``limit`` rows of the `requests` table as the usage records they store,
    newest first."""
    query = (
        select(RequestRow).order_by(RequestRow.created_at.desc(), RequestRow.id.desc()).limit(limit)
    )
    async with AsyncSession(engine) as session:
        rows = (await session.scalars(query)).all()
    return [
        UsageRecord(
            platform=row.platform,
            workspace=row.workspace,
            user=row.user,
            conversation=row.conversation,
            route=row.route,
            model=row.model,
            prompt_tokens=row.prompt_tokens,
            completion_tokens=row.completion_tokens,
            latency_ms=row.latency_ms,
            first_token_ms=row.first_token_ms,
            outcome=row.outcome,
            created_at=row.created_at,
            cost_usd=float(row.cost_usd or 0),
            passages=row.passages or 0,
            retrieval_ms=row.retrieval_ms,
            answer_id=row.answer_id or "",
            via=row.via or "",
            channel=row.channel or "",
            knowledge=row.knowledge,
            question=row.question,
        )
        for row in rows
    ]


async def votes_on(engine: AsyncEngine, answer_id: str) -> dict[str, str]:
    """The votes kept on one answer, by ``platform:user``."""
    query = select(VoteRow.platform, VoteRow.user, VoteRow.vote).where(
        VoteRow.answer_id == answer_id
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return {f"{platform}:{user}": vote for platform, user, vote in rows}
