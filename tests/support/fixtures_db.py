"""Database fixtures on real databases: SQLite in a temp dir, and PostgreSQL.

Load with `pytest_plugins = ["tests.support.fixtures_db"]` (or `-p tests.support.fixtures_db`).

- `database_url`: a DATABASE_URL-style URL of an empty database, once per backend
  ("sqlite", "postgresql"). For PostgreSQL each test gets its own schema (selected
  through the URL's `options=-csearch_path=...`), dropped afterwards, so tests can run
  concurrently. PostgreSQL is `TEST_POSTGRES_URL` (default
  postgresql://postgres@127.0.0.1:5432/test); when it is down the param is skipped,
  or fails with CI=true.
- `ledger`: a Ledger on a migrated `database_url`.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url

from bot.database import create_engine, upgrade
from bot.ledger import Ledger

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
async def ledger(database_url: str) -> AsyncIterator[Ledger]:
    """A Ledger on a freshly migrated database."""
    await asyncio.to_thread(upgrade, database_url)
    engine = create_engine(database_url)
    try:
        yield Ledger(engine=engine)
    finally:
        await engine.dispose()
