"""Daily summaries of the usage ledger, kept up to date as records are written, so that the
analytics page reads a few thousand summary rows instead of a million ledger rows.

Each record adds to the counters of its UTC day in the same transaction that stores it
(``add_records``), with one additive upsert per table: ``requests`` stays the truth, the
summaries are what it adds up to. Migration 0006 fills them from the rows already there.

Latency is summarised as a histogram of answers per bucket: 10 ms below one second, 100 ms
below ten, one second below a hundred, ten seconds above; percentiles read from it are
exact to two significant digits (``latency_bucket``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import (
    Date,
    Integer,
    Numeric,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bot.database import Base
from bot.usage import UsageRecord

NO_KNOWLEDGE = ""  # the knowledge key of answers without retrieval (NULL in requests)


def latency_bucket(ms: int) -> int:
    """The histogram bucket of a latency: its lower bound, in ms (two significant digits)."""
    for limit, width in ((1_000, 10), (10_000, 100), (100_000, 1_000)):
        if ms < limit:
            return ms // width * width
    return ms // 10_000 * 10_000


class UsageDailyRow(Base):
    """Table `usage_daily`: questions per UTC day, platform, route, model, what retrieval
    found ("" without retrieval) and outcome."""

    __tablename__ = "usage_daily"

    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    route: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(255), primary_key=True)
    knowledge: Mapped[str] = mapped_column(String(16), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(64), primary_key=True)
    questions: Mapped[int] = mapped_column(Integer())


class PeopleDailyRow(Base):
    """Table `people_daily`: per UTC day and person (in a workspace), their questions,
    premium questions, cost and last question."""

    __tablename__ = "people_daily"

    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(255), primary_key=True)
    user: Mapped[str] = mapped_column("user_id", String(255), primary_key=True)
    questions: Mapped[int] = mapped_column(Integer())
    premium_questions: Mapped[int] = mapped_column(Integer())
    cost_usd: Mapped[float] = mapped_column(Numeric(14, 8, asdecimal=False))
    last_at: Mapped[str] = mapped_column(String(32))  # ISO 8601 UTC: sorts as text


class SpendMonthlyRow(Base):
    """Table `spend_monthly`: premium spend per UTC calendar month and person (in a
    workspace): what the monthly budgets are held against."""

    __tablename__ = "spend_monthly"

    month: Mapped[str] = mapped_column(String(7), primary_key=True)  # "2026-12"
    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(255), primary_key=True)
    user: Mapped[str] = mapped_column("user_id", String(255), primary_key=True)
    cost_usd: Mapped[float] = mapped_column(Numeric(14, 8, asdecimal=False))
    questions: Mapped[int] = mapped_column(Integer())


class LatencyDailyRow(Base):
    """Table `latency_daily`: answers that ended well per UTC day, route, measure ("total"
    or "first_token") and latency bucket."""

    __tablename__ = "latency_daily"

    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    route: Mapped[str] = mapped_column(String(32), primary_key=True)
    measure: Mapped[str] = mapped_column(String(16), primary_key=True)
    bucket_ms: Mapped[int] = mapped_column(Integer(), primary_key=True)
    answers: Mapped[int] = mapped_column(Integer())


class GapsDailyRow(Base):
    """Table `gaps_daily`: answers whose search of the team knowledge found nothing, per
    UTC day, platform and channel."""

    __tablename__ = "gaps_daily"

    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel: Mapped[str] = mapped_column(String(255), primary_key=True)
    no_match: Mapped[int] = mapped_column(Integer())


class DocumentsDailyRow(Base):
    """Table `documents_daily`: answers citing each indexed document, per UTC day."""

    __tablename__ = "documents_daily"

    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    title: Mapped[str] = mapped_column(String(255), primary_key=True)
    url: Mapped[str] = mapped_column(String(2048), primary_key=True)
    answers: Mapped[int] = mapped_column(Integer())


def _day(record: UsageRecord) -> date:
    return record.created_at.astimezone(UTC).date()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _count(totals: dict[tuple[Any, ...], list[Any]], key: tuple[Any, ...], *adds: Any) -> None:
    row = totals.get(key)
    if row is None:
        totals[key] = list(adds)
        return
    for index, value in enumerate(adds):
        row[index] = max(row[index], value) if isinstance(value, str) else row[index] + value


async def add_records(session: AsyncSession, records: Sequence[UsageRecord]) -> None:
    """Add ``records`` to the daily summaries (in the caller's transaction)."""
    usage: dict[tuple[Any, ...], list[Any]] = {}
    people: dict[tuple[Any, ...], list[Any]] = {}
    latency: dict[tuple[Any, ...], list[Any]] = {}
    gaps: dict[tuple[Any, ...], list[Any]] = {}
    documents: dict[tuple[Any, ...], list[Any]] = {}
    spend: dict[tuple[Any, ...], list[Any]] = {}
    for r in records:
        day, outcome = _day(r), str(r.outcome)
        knowledge = r.knowledge or NO_KNOWLEDGE
        _count(usage, (day, r.platform, r.route, r.model, knowledge, outcome), 1)
        premium = 1 if r.route == "premium" else 0
        _count(
            people,
            (day, r.platform, r.workspace, r.user),
            1,
            premium,
            r.cost_usd,
            _iso(r.created_at),
        )
        if premium or r.cost_usd > 0:
            month = r.created_at.astimezone(UTC).strftime("%Y-%m")
            _count(spend, (month, r.platform, r.workspace, r.user), r.cost_usd, 1)
        if outcome == "ok":
            _count(latency, (day, r.route, "total", latency_bucket(r.latency_ms)), 1)
            if r.first_token_ms is not None:
                bucket = latency_bucket(r.first_token_ms)
                _count(latency, (day, r.route, "first_token", bucket), 1)
        if r.knowledge == "no_match":
            _count(gaps, (day, r.platform, r.channel), 1)
        for title, url in r.cited:
            _count(documents, (day, title[:255], url[:2048]), 1)
    await _add(
        session,
        UsageDailyRow,
        ("day", "platform", "route", "model", "knowledge", "outcome"),
        ("questions",),
        usage,
    )
    await _add(
        session,
        PeopleDailyRow,
        ("day", "platform", "workspace", "user_id"),
        ("questions", "premium_questions", "cost_usd", "last_at"),
        people,
    )
    await _add(
        session,
        SpendMonthlyRow,
        ("month", "platform", "workspace", "user_id"),
        ("cost_usd", "questions"),
        spend,
    )
    await _add(
        session,
        LatencyDailyRow,
        ("day", "route", "measure", "bucket_ms"),
        ("answers",),
        latency,
    )
    await _add(session, GapsDailyRow, ("day", "platform", "channel"), ("no_match",), gaps)
    await _add(session, DocumentsDailyRow, ("day", "title", "url"), ("answers",), documents)


_LATEST = ("last_at",)  # kept as the greatest, not added up


async def _add(
    session: AsyncSession,
    model: type[Base],
    keys: Sequence[str],
    counters: Sequence[str],
    totals: dict[tuple[Any, ...], list[Any]],
) -> None:
    """Add ``totals`` (key -> counter values) to ``model``'s rows: INSERT ... ON CONFLICT
    DO UPDATE adding up, one statement (PostgreSQL and SQLite, the two databases the bot
    runs on). Keys are written in order, so concurrent writers lock rows in the same order."""
    if not totals:
        return
    table = cast(Table, model.__table__)
    rows = [
        dict(zip((*keys, *counters), (*key, *values), strict=True))
        for key, values in sorted(totals.items())
    ]
    dialect = session.bind.dialect.name if session.bind is not None else ""
    # One statement, compiled once and cached, run for every row (executemany).
    upsert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = upsert(table)
    latest = func.greatest if dialect == "postgresql" else func.max
    changes = {
        name: latest(table.c[name], statement.excluded[name])
        if name in _LATEST
        else table.c[name] + statement.excluded[name]
        for name in counters
    }
    await session.execute(
        statement.on_conflict_do_update(index_elements=list(keys), set_=changes), rows
    )
