"""Database engine, URL conversions and schema migrations (Alembic).

Alembic (a third of a second of imports, Mako and Pygments included) is imported only
when there is a migration to apply or a revision to report: a database already at the
shipped head is recognised without it, so that `chatbot serve` and `chatbot chat`, which
upgrade at every start, start without it.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy
from sqlalchemy import Connection, Engine, MetaData, event, make_url, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import NullPool

from bot.errors import BotError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# How long a SQLite connection waits for another writer's lock before failing.
SQLITE_BUSY_TIMEOUT_SECONDS = 5.0
# How long opening a PostgreSQL connection may take before failing.
POSTGRES_CONNECT_TIMEOUT_SECONDS = 5

# Serialises `upgrade` across processes sharing one PostgreSQL database (replicas
# starting together); any constant bigint works, it only has to be ours.
_MIGRATION_LOCK_KEY = 0x63686174626F74  # "chatbot"

# Alembic keeps the running migration in module globals (alembic.context, alembic.op),
# so two migrations in one process must not overlap.
_alembic_lock = threading.Lock()

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
_SYNC_DRIVERS = {"sqlite+aiosqlite": "sqlite", "postgresql": "postgresql+psycopg"}
# Drivers we do not ship, replaced by psycopg 3 (which does both sync and async).
_POSTGRES_REPLACED = {"postgresql+psycopg2", "postgresql+asyncpg", "postgresql+pg8000"}


class DatabaseError(BotError):
    """Root error of the database layer: the database is unreachable or refused an operation."""


class Base(DeclarativeBase):
    """Declarative base of every table the bot stores."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


def _split_scheme(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme:
        raise DatabaseError(
            "DATABASE_URL is not a database URL (expected e.g. sqlite:///chatbot.db)"
        )
    scheme = scheme.lower()
    # "postgres" is Heroku's and libpq's spelling; SQLAlchemy only knows "postgresql".
    if scheme == "postgres" or scheme.startswith("postgres+"):
        scheme = "postgresql" + scheme[len("postgres") :]
    return scheme, rest


def to_async_url(url: str) -> str:
    """The URL with an asyncio driver: aiosqlite for SQLite, psycopg 3 for PostgreSQL.

    URLs that already name a driver are kept, except PostgreSQL drivers that are not
    installed, which become psycopg.
    """
    scheme, rest = _split_scheme(url)
    if scheme in _POSTGRES_REPLACED:
        scheme = "postgresql+psycopg"
    return f"{_ASYNC_DRIVERS.get(scheme, scheme)}://{rest}"


def to_sync_url(url: str) -> str:
    """The URL with a blocking driver (for migrations): sqlite3 or psycopg 3."""
    scheme, rest = _split_scheme(url)
    if scheme in _POSTGRES_REPLACED:
        scheme = "postgresql+psycopg"
    return f"{_SYNC_DRIVERS.get(scheme, scheme)}://{rest}"


def redact_url(url: str) -> str:
    """The URL with its password hidden, for logs and diagnostics."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _connect_args(url: str) -> dict[str, Any]:
    """Timeouts for the driver, unless the URL sets its own."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError("DATABASE_URL cannot be parsed") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite" and "timeout" not in parsed.query:
        return {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    if backend == "postgresql" and "connect_timeout" not in parsed.query:
        return {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS}
    return {}


def create_engine(url: str) -> AsyncEngine:
    """The application's async engine for DATABASE_URL; build it once and share it."""
    async_url = to_async_url(url)
    try:
        engine = create_async_engine(
            async_url, pool_pre_ping=True, connect_args=_connect_args(async_url)
        )
    except (ArgumentError, ImportError) as exc:
        raise DatabaseError(f"unsupported DATABASE_URL: {redact_url(url)}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_write_ahead_log)
    return engine


def _sqlite_write_ahead_log(dbapi_connection: Any, _record: Any) -> None:
    # One fsync per checkpoint instead of per commit: a ledger row per answer stays cheap,
    # and readers (reports) never block the writer.
    # WAL is a property of the file: set once, it stays. Switching needs the file to
    # itself, so processes opening it at the same moment (`serve --workers`) would make
    # each other fail with "database is locked": only switch when it is not WAL yet, and
    # leave it to the other process when it is switching at that moment.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode")
    row = cursor.fetchone()
    if row is None or str(row[0]).lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            pass
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def alembic_config() -> Config:
    """Alembic configuration pointing at the bundled migrations (no alembic.ini needed).

    Developers create a revision with
    `command.revision(alembic_config(), "message")` and write it by hand.
    """
    from alembic.config import Config

    config = Config()
    # ConfigParser interpolates "%", which may appear in a path.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


def head_revision() -> str | None:
    """The newest migration revision shipped with this code."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def _sync_engine(url: str) -> Engine:
    sync_url = to_sync_url(url)
    try:
        return sqlalchemy.create_engine(
            sync_url, poolclass=NullPool, connect_args=_connect_args(sync_url)
        )
    except (ArgumentError, ImportError) as exc:
        raise DatabaseError(f"unsupported DATABASE_URL: {redact_url(url)}") from exc


def _serialise_sqlite_writers(engine: Engine) -> None:
    """Make SQLite transactions start with the write lock and cover DDL."""

    # The sqlite3 module neither begins a transaction before DDL nor takes the write
    # lock up front; do both, so that a migration is atomic and two processes
    # upgrading at once run one after the other (the busy timeout makes one wait).
    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def _migration_connection(url: str) -> Iterator[Connection]:
    """One connection in one transaction, holding the migration lock."""
    engine = _sync_engine(url)
    if engine.dialect.name == "sqlite":
        _serialise_sqlite_writers(engine)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            yield connection
    finally:
        engine.dispose()


def describe_error(exc: BaseException) -> str:
    """A short line saying what the driver reported, without SQL or parameters."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    first = lines[0] if lines else type(orig).__name__
    return first[:200]


@asynccontextmanager
async def translated_errors(what: str, timeout: float) -> AsyncIterator[None]:
    """Bound a database operation by ``timeout`` and turn its failures into DatabaseError
    saying ``what`` could not be done (without SQL or parameters)."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseError(f"{what}: {describe_error(exc)}") from exc
    except TimeoutError as exc:
        raise DatabaseError(f"{what}: no answer within {timeout:g} s") from exc


@functools.cache
def _shipped_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """Every revision of the bundled migrations and the heads among them, read from each
    script's ``revision`` and ``down_revision`` assignments without importing Alembic (whose
    script directory stays the authority: tests/adapters/app/test_start_up.py checks that
    both agree). Both empty when a script cannot be read that way, and then Alembic decides."""
    revisions: set[str] = set()
    revised: set[str] = set()
    try:
        for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                target: ast.expr
                if isinstance(node, ast.AnnAssign) and node.value is not None:
                    target, value = node.target, node.value
                elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                    target, value = node.targets[0], node.value
                else:
                    continue
                name = target.id if isinstance(target, ast.Name) else ""
                if name in ("revision", "down_revision"):
                    found = ast.literal_eval(value)
                    found = [found] if isinstance(found, str) else list(found or ())
                    (revisions if name == "revision" else revised).update(found)
    except (OSError, SyntaxError, ValueError, TypeError):
        return frozenset(), frozenset()
    return frozenset(revisions), frozenset(revisions - revised)


def shipped_heads() -> frozenset[str]:
    """The head revisions of the bundled migrations (see `_shipped_revisions`)."""
    return _shipped_revisions()[1]


def _recorded_revisions(connection: Connection) -> set[str] | None:
    """The revisions the database records; None when it has no migration table."""
    if not sqlalchemy.inspect(connection).has_table("alembic_version"):
        return None
    return set(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


class SchemaBehind(DatabaseError):
    """The database's tables are older than this release's (a start-up migration failed or
    was never run): answers cannot be recorded until `chatbot db upgrade` runs."""


async def check_schema(engine: AsyncEngine, timeout: float) -> None:
    """Raise SchemaBehind when the database is not migrated to this release's head, and
    DatabaseError when it does not answer. A schema newer than this release (a newer replica
    migrated it during a rolling upgrade) counts as current: migrations only add."""
    known, heads = _shipped_revisions()
    async with translated_errors("database is down", timeout), engine.connect() as connection:
        recorded = await connection.run_sync(_recorded_revisions)
    if recorded is None:
        raise SchemaBehind("the database has no tables: run `chatbot db upgrade`")
    if heads and recorded != heads and recorded <= known:
        raise SchemaBehind(
            f"the database schema is at {', '.join(sorted(recorded)) or 'nothing'}, this release"
            f" needs {', '.join(sorted(heads))}: run `chatbot db upgrade`"
        )


def _at_shipped_heads(connection: Connection) -> bool:
    """Whether the database records exactly the shipped head revisions (nothing to do)."""
    heads = shipped_heads()
    recorded = _recorded_revisions(connection)
    return bool(heads) and recorded is not None and recorded == set(heads)


def _migrate(
    connection: Connection, action: Literal["upgrade", "downgrade"], revision: str
) -> None:
    from alembic import command
    from alembic.util.exc import CommandError

    config = alembic_config()
    config.attributes["connection"] = connection
    try:
        if action == "upgrade":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)
    except CommandError as exc:
        raise DatabaseError(f"database migration failed: {describe_error(exc)}") from exc


def upgrade(url: str, revision: str = "head") -> None:
    """Apply the migrations up to `revision` (blocking; run it in a thread). A database
    already at the head is left as it is without loading Alembic."""
    try:
        with _alembic_lock, _migration_connection(url) as connection:
            if revision == "head" and _at_shipped_heads(connection):
                return
            _migrate(connection, "upgrade", revision)
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseError(f"database migration failed: {describe_error(exc)}") from exc


def downgrade(url: str, revision: str) -> None:
    """Revert the migrations down to `revision` ("base" = empty) (blocking)."""
    try:
        with _alembic_lock, _migration_connection(url) as connection:
            _migrate(connection, "downgrade", revision)
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseError(f"database migration failed: {describe_error(exc)}") from exc


def current_revision(url: str) -> str | None:
    """The migration revision the database is at; None when it was never migrated (blocking)."""
    from alembic.runtime.migration import MigrationContext

    engine = _sync_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseError(f"cannot read the database revision: {describe_error(exc)}") from exc
    finally:
        engine.dispose()
