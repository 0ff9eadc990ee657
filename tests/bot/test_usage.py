"""Cost in the ledger, monthly spend, the 0002 migration and `chatbot usage`, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.cli import main
from bot.budget import (
    Budgets,
    Price,
    Spend,
    format_usd,
    month_start,
    next_month_start,
    over_budget,
    price_for,
)
from bot.database import create_engine, current_revision, downgrade, to_sync_url, upgrade
from bot.ledger import Ledger
from bot.usage import UsageRecord
from bot.usage_report import format_report, parse_since, percentile, usage_report
from inference.base import Usage
from tests.support.fixtures_db import recorded

NOW = datetime(2025, 11, 15, 12, 0, tzinfo=UTC)

ROW = UsageRecord(
    platform="slack",
    workspace="T1",
    user="U1",
    conversation="slack:T1:C1:1",
    route="premium",
    model="gpt-4.1",
    prompt_tokens=1000,
    completion_tokens=500,
    latency_ms=1000,
    first_token_ms=200,
    outcome="ok",
    created_at=NOW,
    cost_usd=0.006,
)


# --- prices and budgets ---------------------------------------------------------------


def test_cost_is_tokens_times_the_price_per_million() -> None:
    price = Price(input_per_mtok=2.0, output_per_mtok=8.0)
    assert price.cost(Usage(1_000_000, 0)) == 2.0
    assert price.cost(Usage(1000, 500)) == pytest.approx(0.006)
    assert price.cost(Usage(0, 0)) == 0


def test_prices_match_dated_snapshots_to_their_family() -> None:
    table = {"gpt-4o": Price(2.5, 10), "gpt-4o-mini": Price(0.15, 0.6), "gpt-4": Price(30, 60)}
    assert price_for("gpt-4o", table) == Price(2.5, 10)
    assert price_for("gpt-4o-2024-08-06", table) == Price(2.5, 10)
    assert price_for("gpt-4o-mini-2024-07-18", table) == Price(0.15, 0.6)
    assert price_for("GPT-4", table) == Price(30, 60)
    assert price_for("gpt-4.5-preview", table) is None  # not "gpt-4" + "-..."
    assert price_for("codellama:7b", table) is None


def test_over_budget_and_zero_means_no_limit() -> None:
    assert over_budget(Budgets(20, 0), Spend(19.99, 1000)) is None
    assert over_budget(Budgets(20, 0), Spend(20, 0)) == "user"
    assert over_budget(Budgets(0, 100), Spend(500, 100)) == "workspace"
    assert over_budget(Budgets(20, 100), Spend(25, 150)) == "user"
    assert over_budget(Budgets(0, 0), Spend(1e6, 1e6)) is None
    assert not Budgets().limited and Budgets(0, 1).limited


def test_the_budget_month_is_the_utc_calendar_month() -> None:
    assert month_start(NOW) == datetime(2025, 11, 1, tzinfo=UTC)
    late = datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    assert next_month_start(late) == datetime(2026, 1, 1, tzinfo=UTC)
    # 00:30 on December 1 in UTC+2 is still November in UTC.
    east = datetime(2025, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))
    assert month_start(east) == datetime(2025, 11, 1, tzinfo=UTC)


def test_format_usd() -> None:
    assert format_usd(0) == "$0.00"
    assert format_usd(1234.5) == "$1,234.50"
    assert format_usd(0.0042) == "$0.0042"


# --- the ledger -----------------------------------------------------------------------


async def test_cost_is_stored_exactly_and_reads_back(
    ledger: Ledger, ledger_engine: AsyncEngine
) -> None:
    cheap = replace(ROW, cost_usd=0.00000015, model="gpt-4.1-nano")
    await ledger.record(ROW)
    await ledger.record(cheap)
    rows = await recorded(ledger_engine)
    assert sorted(r.cost_usd for r in rows) == [0.00000015, 0.006]
    assert {r.cost_usd for r in rows if r.model == "gpt-4.1"} == {0.006}


async def test_spend_since_counts_the_user_anywhere_and_the_workspace_for_anyone(
    ledger: Ledger,
) -> None:
    since = month_start(NOW)
    for record in (
        replace(ROW, cost_usd=1.25),
        replace(ROW, cost_usd=2.00, workspace="T2"),  # U1 in another workspace
        replace(ROW, cost_usd=4.00, user="U2"),  # a colleague in T1
        replace(ROW, cost_usd=8.00, user="U3", workspace="T9"),  # unrelated
        replace(ROW, cost_usd=16.0, created_at=since - timedelta(microseconds=1)),  # October
        replace(ROW, cost_usd=0.0, route="local", model="codellama:7b"),
    ):
        await ledger.record(record)
    spend = await ledger.spend_since(user="U1", workspace="T1", since=since)
    assert spend == Spend(user_usd=pytest.approx(3.25), workspace_usd=pytest.approx(5.25))
    nobody = await ledger.spend_since(user="U0", workspace="T0", since=since)
    assert nobody == Spend(0.0, 0.0)


# --- migration 0002 -------------------------------------------------------------------


def _columns(url: str) -> set[str]:
    engine = sqlalchemy.create_engine(to_sync_url(url))
    try:
        with engine.connect() as connection:
            return {c["name"] for c in inspect(connection).get_columns("requests")}
    finally:
        engine.dispose()


def _execute(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = sqlalchemy.create_engine(to_sync_url(url))
    try:
        with engine.begin() as connection:
            result = connection.execute(sqlalchemy.text(sql))
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


def test_0002_adds_cost_to_existing_rows_and_downgrades_cleanly(database_url: str) -> None:
    upgrade(database_url, "0001")
    _execute(
        database_url,
        "INSERT INTO requests (platform, workspace, user_id, conversation, route, model,"
        " prompt_tokens, completion_tokens, latency_ms, outcome, created_at)"
        " VALUES ('slack', 'T1', 'U1', 'c', 'premium', 'gpt-4.1', 1, 2, 3, 'ok',"
        " '2025-11-01 00:00:00')",
    )
    assert "cost_usd" not in _columns(database_url)

    upgrade(database_url, "0002")

    assert current_revision(database_url) == "0002"
    assert [float(v) for (v,) in _execute(database_url, "SELECT cost_usd FROM requests")] == [0.0]

    downgrade(database_url, "0001")

    assert current_revision(database_url) == "0001"
    assert "cost_usd" not in _columns(database_url)
    assert _execute(database_url, "SELECT count(*) FROM requests") == [(1,)]
    upgrade(database_url)
    assert "cost_usd" in _columns(database_url)


# --- the report -----------------------------------------------------------------------


def test_parse_since() -> None:
    assert parse_since("30d", NOW) == NOW - timedelta(days=30)
    assert parse_since("24h", NOW) == NOW - timedelta(hours=24)
    assert parse_since(" 2w ", NOW) == NOW - timedelta(weeks=2)
    assert parse_since("90m", NOW) == NOW - timedelta(minutes=90)
    assert parse_since("2025-11-01", NOW) == datetime(2025, 11, 1, tzinfo=UTC)
    for bad in ("", "30", "d", "thirty days", "2025-13-01", "-3d"):
        with pytest.raises(ValueError, match="30d"):
            parse_since(bad, NOW)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(100, 2001, 100))  # 20 values
    assert percentile(values, 50) == 1000
    assert percentile(values, 95) == 1900
    assert percentile(list(reversed(values)), 95) == 1900
    assert percentile([7], 95) == 7
    assert percentile([], 50) is None


async def _seed(ledger: Ledger, now: datetime) -> None:
    records = [
        replace(
            ROW,
            latency_ms=100 * i,
            created_at=now - timedelta(hours=i),
            cost_usd=0.01,
            user="U1" if i % 2 else "U2",
        )
        for i in range(1, 21)
    ]
    records += [
        replace(
            ROW,
            route="local",
            model="codellama:7b",
            cost_usd=0.0,
            latency_ms=5000,
            user="U3",
            workspace="T2",
            platform="teams",
            outcome="model_unavailable" if i == 0 else "ok",
            created_at=now - timedelta(days=2, minutes=i),
        )
        for i in range(3)
    ]
    # Outside every window the tests use.
    records.append(replace(ROW, cost_usd=99.0, created_at=now - timedelta(days=45)))
    await asyncio.gather(*(ledger.record(r) for r in records))


async def test_report_by_model_user_and_workspace(ledger: Ledger, database_url: str) -> None:
    now = datetime.now(UTC)
    await _seed(ledger, now)
    engine = create_engine(database_url)
    try:
        by_model = await usage_report(engine, since=now - timedelta(days=30), by="model")
        by_user = await usage_report(engine, since=now - timedelta(days=30), by="user")
        by_ws = await usage_report(engine, since=now - timedelta(days=30), by="workspace")
        last_day = await usage_report(engine, since=now - timedelta(hours=24), by="model")
    finally:
        await engine.dispose()
    premium, local = by_model
    assert premium.key == "gpt-4.1 (premium)"
    assert (premium.requests, premium.failed) == (20, 0)
    assert (premium.prompt_tokens, premium.completion_tokens) == (20_000, 10_000)
    assert premium.cost_usd == pytest.approx(0.20)
    assert (premium.p50_ms, premium.p95_ms) == (1000, 1900)
    assert local.key == "codellama:7b (local)"
    assert (local.requests, local.failed, local.cost_usd) == (3, 1, 0)
    assert [(u.key, u.requests) for u in by_user] == [
        ("slack:U1", 10),
        ("slack:U2", 10),
        ("teams:U3", 3),
    ]
    assert [(w.key, w.requests) for w in by_ws] == [("slack:T1", 20), ("teams:T2", 3)]
    assert [(m.key, m.requests) for m in last_day] == [("gpt-4.1 (premium)", 20)]


def test_format_report_is_an_aligned_table_with_a_total() -> None:
    from bot.usage_report import ReportLine

    lines = [
        ReportLine("slack:U1", 12, 1, 12_000, 3_400, 1.234, 1500, 4200),
        ReportLine("teams:29:1abc", 3, 0, 900, 300, 0.0, 800, 900),
    ]
    text = format_report(lines, by="user")
    rows = text.splitlines()
    assert rows[0].split() == [
        "user",
        "requests",
        "failed",
        "prompt",
        "tok",
        "compl.",
        "tok",
        "cost",
        "p50",
        "s",
        "p95",
        "s",
    ]
    assert rows[2].split() == ["slack:U1", "12", "1", "12,000", "3,400", "$1.23", "1.50", "4.20"]
    assert rows[-1].split() == ["total", "15", "1", "12,900", "3,700", "$1.23"]
    assert len({len(r) for r in rows[:2]}) == 1  # header and rule line up


# --- `chatbot usage` ------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str) -> str:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


def _usage_total(out: str) -> list[str]:
    """The total row of the usage table (the first table printed)."""
    return next(line for line in out.splitlines() if line.startswith("total")).split()


def test_chatbot_usage_prints_the_table(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    upgrade(cli_env)

    async def seed() -> None:
        engine = create_engine(cli_env)
        try:
            await _seed(Ledger(engine=engine), datetime.now(UTC))
        finally:
            await engine.dispose()

    asyncio.run(seed())

    assert main(["usage", "--by", "model"]) == 0
    out = capsys.readouterr().out
    assert "by model" in out
    premium = next(line for line in out.splitlines() if line.startswith("gpt-4.1 (premium)"))
    assert premium.split()[2:] == ["20", "0", "20,000", "10,000", "$0.20", "1.00", "1.90"]
    total = _usage_total(out)
    assert total == ["total", "23", "1", "23,000", "11,500", "$0.20"]

    assert main(["usage", "--since", "24h"]) == 0
    out = capsys.readouterr().out
    assert "slack:U1" in out and "teams:U3" not in out

    assert main(["usage", "--since", "60d", "--by", "workspace"]) == 0
    out = capsys.readouterr().out
    assert _usage_total(out)[:2] == ["total", "24"]
    assert "$99.20" in out


def test_chatbot_usage_on_an_empty_ledger(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    upgrade(cli_env)
    assert main(["usage"]) == 0
    assert _usage_total(capsys.readouterr().out) == [
        "total",
        "0",
        "0",
        "0",
        "0",
        "$0.00",
    ]


def test_chatbot_usage_errors(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage"]) == 1  # not migrated: no table
    err = capsys.readouterr().err
    assert "chatbot db upgrade" in err and "Traceback" not in err
    assert main(["usage", "--since", "soon"]) == 2
    assert "30d" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["usage", "--by", "planet"])


# --- feedback votes -------------------------------------------------------------------


async def _seed_votes(ledger: Ledger, now: datetime) -> None:
    from bot.votes import Vote

    answers = [
        replace(ROW, answer_id=f"p{i}", created_at=now - timedelta(hours=1)) for i in range(4)
    ]
    answers += [
        replace(ROW, route="local", model="codellama:7b", answer_id=f"l{i}", created_at=now)
        for i in range(2)
    ]
    answers.append(replace(ROW, answer_id="old", created_at=now - timedelta(days=90)))
    await ledger.record_many(answers)
    votes = [
        ("p0", "U1", "up"),
        ("p0", "U2", "up"),
        ("p1", "U1", "down"),
        ("p1", "U1", "up"),  # changed their mind: one vote, up
        ("l0", "U3", "down"),
        ("old", "U1", "down"),  # an answer outside the window
    ]
    for answer, user, value in votes:
        await ledger.record_vote(Vote(answer, "slack", "T1", user, value, now))  # type: ignore[arg-type]


async def test_feedback_report_by_model_and_route(ledger: Ledger, database_url: str) -> None:
    from bot.usage_report import feedback_report, format_feedback

    now = datetime.now(UTC)
    await _seed_votes(ledger, now)
    engine = create_engine(database_url)
    try:
        lines = await feedback_report(engine, since=now - timedelta(days=30))
    finally:
        await engine.dispose()
    premium, local = lines
    assert (premium.key, premium.answers, premium.rated, premium.up, premium.down) == (
        "gpt-4.1 (premium)",
        4,
        2,
        3,
        0,
    )
    assert premium.rated_share == 0.5
    assert (local.key, local.answers, local.rated, local.up, local.down) == (
        "codellama:7b (local)",
        2,
        1,
        0,
        1,
    )
    table = format_feedback(lines).splitlines()
    assert table[0].split() == ["model", "(route)", "answers", "rated", "rated", "%", "up", "down"]
    assert table[2].split() == ["gpt-4.1", "(premium)", "4", "2", "50%", "3", "0"]
    assert table[-1].split() == ["total", "6", "3", "50%", "3", "1"]


def test_chatbot_usage_prints_the_votes(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    upgrade(cli_env)

    async def seed() -> None:
        engine = create_engine(cli_env)
        try:
            await _seed_votes(Ledger(engine=engine), datetime.now(UTC))
        finally:
            await engine.dispose()

    asyncio.run(seed())
    assert main(["usage", "--by", "model"]) == 0
    out = capsys.readouterr().out
    votes = out[out.index("Feedback votes on answers, by model and route:") :].splitlines()
    assert votes[-1].split() == ["total", "6", "3", "50%", "3", "1"]
