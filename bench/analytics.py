"""Analytics page benchmark: the page's render time over a big usage ledger in PostgreSQL.

Fills a fresh schema with ``--rows`` ledger rows (default 1,000,000) spread over the last 90
days (two platforms, 2,000 people, 300 channels, a quarter premium, votes on 5% of the
answers, a cited document on two answers in five), written the bot's own way (the ledger
with its daily summaries, in batches), then VACUUM ANALYZE (what autovacuum does). Then
signs in and times `GET /admin` through HTTP, for 7, 30 and 90 days: the queries, the
charts and the HTML. Target: 500 ms.

Run: `python -m bench.analytics [--rows 1000000] [--url postgresql://...] [--repeat 5]`
(PostgreSQL: TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import aiohttp
import psycopg
from aiohttp import web
from aiohttp.test_utils import TestServer
from psycopg import sql
from sqlalchemy import make_url

from adapters.admin import register_admin_routes
from bot.admin import AdminSignIn, DatabaseSignInStore
from bot.analytics import WINDOWS, AnalyticsReader
from bot.budget import Budgets
from bot.database import create_engine, upgrade
from bot.ledger import Ledger
from bot.usage import UsageRecord

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
ADMIN = "U0ADMIN"
TARGET_MS = 500
BATCH = 5_000
SUMMARIES = ("usage_daily", "people_daily", "latency_daily", "gaps_daily", "documents_daily")

# Votes as Ledger.record_vote writes them (with the answer's model and route), on 5% of the
# answers, one in four down.
VOTES = """
INSERT INTO votes (answer_id, platform, workspace, user_id, vote, created_at, model, route)
SELECT answer_id, platform, workspace, 'V' || (id % 97),
    CASE WHEN (id / 20) % 4 = 0 THEN 'down' ELSE 'up' END, created_at, model, route
FROM requests WHERE id % 20 = 0 AND outcome = 'ok'
"""


def conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def records(rows: int, now: datetime, seed: int = 21) -> Iterator[UsageRecord]:
    """``rows`` answers spread evenly over the last 90 days, newest last."""
    rng = random.Random(seed)
    span = 90 * 86400
    for index in range(rows):
        user = rng.randrange(2000)
        platform = "teams" if user % 3 == 0 else "slack"
        premium = rng.random() < 0.25
        knowledge = rng.choice([None, "matched", "matched", "no_match", "unavailable"])
        ok = rng.random() > 0.02
        first = rng.randint(100, 2600)
        model = "gpt-4.1" if premium else rng.choice(["codellama:7b", "qwen2.5-coder:7b"])
        yield UsageRecord(
            platform=platform,
            workspace=f"tenant-{user % 4}" if platform == "teams" else f"T{user % 5}",
            user=f"U{user}",
            conversation=f"{platform}:w:c:{index % 50_000}",
            route="premium" if premium else "local",
            model=model,
            prompt_tokens=rng.randint(100, 3000),
            completion_tokens=rng.randint(50, 900),
            latency_ms=first + rng.randint(200, 20000),
            first_token_ms=first if ok else None,
            outcome="ok" if ok else "error",
            created_at=now - timedelta(seconds=span * (rows - index) / rows),
            cost_usd=rng.uniform(0.0005, 0.05) if premium else 0.0,
            passages=3 if knowledge == "matched" else 0,
            retrieval_ms=40 if knowledge else None,
            answer_id=f"a{index}",
            channel=f"C{rng.randrange(300)}",
            knowledge=knowledge,
            cited=((f"Document {rng.randrange(400)}", "https://wiki.example/doc"),)
            if knowledge == "matched"
            else (),
        )


async def fill(schema_url: str, rows: int) -> float:
    """Write the ledger through ``Ledger.record_many`` (the bot's own path, summaries
    included), in batches as the usage writer does; the seconds it took."""
    started = time.perf_counter()
    engine = create_engine(schema_url)
    ledger = Ledger(engine=engine)
    batch: list[UsageRecord] = []
    try:
        for record in records(rows, datetime.now(UTC)):
            batch.append(record)
            if len(batch) == BATCH:
                await ledger.record_many(batch)
                batch.clear()
        if batch:
            await ledger.record_many(batch)
    finally:
        await engine.dispose()
    return time.perf_counter() - started


def prepare(url: str, schema: str) -> str:
    """A new schema, migrated; its URL."""
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    schema_url = (
        make_url(url)
        .update_query_dict({"options": f"-csearch_path={schema}"})
        .render_as_string(hide_password=False)
    )
    upgrade(schema_url)
    return schema_url


def finish(url: str, schema: str) -> None:
    """Votes on 5% of the answers, then VACUUM ANALYZE (what autovacuum does)."""
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        conn.execute(VOTES)  # type: ignore[arg-type]
        for table in ("requests", "votes", *SUMMARIES):
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))


async def measure(schema_url: str, repeat: int) -> dict[int, list[float]]:
    engine = create_engine(schema_url)
    sign_in = AdminSignIn(
        admins=frozenset({ADMIN}), store=DatabaseSignInStore(engine=engine), public_url=""
    )
    reader = AnalyticsReader(engine=engine, budgets=Budgets(user_usd=20.0, workspace_usd=500.0))
    app = web.Application()
    register_admin_routes(app, sign_in=sign_in, reader=reader, public_url="")
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    times: dict[int, list[float]] = {}
    try:
        async with aiohttp.ClientSession() as http:
            code = await sign_in.issue_code(ADMIN)
            login = str(server.make_url(f"/admin/login?code={code}"))
            async with http.get(login, allow_redirects=False) as response:
                cookie = response.headers["Set-Cookie"].split(";")[0]
            headers = {"Cookie": cookie}
            # One warm-up (connections opened, templates compiled), as on a running bot.
            async with http.get(str(server.make_url("/admin?days=7")), headers=headers) as r:
                assert r.status == 200, await r.text()
            for days in WINDOWS:
                for _ in range(repeat):
                    started = time.perf_counter()
                    async with http.get(
                        str(server.make_url(f"/admin?days={days}")), headers=headers
                    ) as r:
                        body = await r.read()
                        assert r.status == 200 and b"Questions per day" in body
                    times.setdefault(days, []).append((time.perf_counter() - started) * 1000)
    finally:
        await server.close()
        await engine.dispose()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--url", default=os.environ.get("TEST_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the filled schema")
    parser.add_argument("--schema", help="time a schema kept by an earlier --keep run")
    args = parser.parse_args(argv)
    schema = args.schema or f"bench_analytics_{uuid.uuid4().hex[:8]}"
    try:
        if args.schema:
            schema_url = (
                make_url(args.url)
                .update_query_dict({"options": f"-csearch_path={schema}"})
                .render_as_string(hide_password=False)
            )
        else:
            schema_url = prepare(args.url, schema)
            seconds = asyncio.run(fill(schema_url, args.rows))
            print(
                f"wrote {args.rows:,} ledger rows with their daily summaries in {seconds:.1f} s "
                f"({args.rows / seconds:,.0f} rows/s in batches of {BATCH}; schema {schema})"
            )
            finish(args.url, schema)
        times = asyncio.run(measure(schema_url, args.repeat))
    finally:
        if not (args.keep or args.schema):
            with psycopg.connect(conninfo(args.url), autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                )
    worst = 0.0
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores"
    print(f"GET /admin over {args.rows:,} rows, {args.repeat} runs each ({when}):")
    for days, values in times.items():
        worst = max(worst, statistics.median(values))
        print(
            f"  days={days:<3} median {statistics.median(values):7.1f} ms   "
            f"min {min(values):7.1f} ms   max {max(values):7.1f} ms"
        )
    verdict = "within" if worst <= TARGET_MS else "ABOVE"
    print(f"slowest median {worst:.1f} ms: {verdict} the {TARGET_MS} ms target")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
