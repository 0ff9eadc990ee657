"""Analytics for the team lead: `/admin` in chat gives an admin a one-time sign-in link,
the link a session cookie, the page the ledger's figures.

Sign-in runs through the real bot (Slack over HTTP on the fake Slack, real Redis and
database); the page's figures are checked against a seeded ledger on SQLite and PostgreSQL,
counted here independently of the page's SQL.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis

from bot import keys
from bot.admin import (
    CODE_TTL_SECONDS,
    AdminSignIn,
    DatabaseSignInStore,
    RedisSignInStore,
    digest_of,
)
from bot.analytics import window_start
from bot.conversation import ConversationKey, IncomingMessage
from bot.database import create_engine
from bot.ledger import Ledger
from bot.usage import UsageRecord
from tests.fakes.core import RecordingSink
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack import FakeSlack
from tests.support.analytics_seed import (
    ADMIN,
    BUDGETS,
    NOW,
    Seed,
    analytics_server,
    make_seed,
    write_seed,
)
from tests.support.harness import SlackBotUnderTest, records_written, running_bot, slack_settings
from tests.support.slack_payloads import dm, slash

SLACK_ADMIN = "U123ABC456"  # the user of the slash command fixture
DM = "D024BE91L"
LINK = re.compile(r"(https?://\S+/admin/login\?code=[A-Za-z0-9_\-]+)")


@pytest.fixture
def bot_overrides() -> dict[str, Any]:
    return {"admin_users": f"UOTHER, {SLACK_ADMIN}", "public_url": "http://bot.example.test/"}


async def slash_admin(
    bot: SlackBotUnderTest, *, user: str = SLACK_ADMIN, channel: str = DM, trigger: str = "t1"
) -> str:
    """Send `/admin` as Slack does and return the private answer's text."""
    url = bot.slack.response_url(trigger)
    form = slash(
        "/admin",
        "",
        response_url=url,
        channel=channel,
        channel_name="directmessage" if channel.startswith("D") else "general",
        trigger_id=trigger,
    )
    form["user_id"] = user
    response = await bot.post_command(form)
    assert response.status == 200
    await bot.settle()
    answers = bot.slack.responses_to(trigger)
    assert len(answers) == 1, answers
    assert answers[0]["response_type"] == "ephemeral"  # to them alone
    return str(answers[0]["text"])


def local(link: str, base: str) -> str:
    """The link as this test reaches the bot (PUBLIC_URL names the public host)."""
    parts = urlsplit(link)
    return f"{base}{parts.path}?{parts.query}"


def cookie_header(response: aiohttp.ClientResponse) -> str:
    values = response.headers.getall("Set-Cookie", [])
    assert len(values) == 1, values
    return str(values[0])


async def get(
    http: aiohttp.ClientSession, url: str, *, cookie: str | None = None, **headers: str
) -> tuple[int, str, aiohttp.ClientResponse]:
    if cookie is not None:
        headers["Cookie"] = cookie
    async with http.get(url, headers=headers, allow_redirects=False) as response:
        return response.status, await response.text(), response


# --- signing in from chat --------------------------------------------------------------


async def test_admin_link_signs_in_once(slack_bot: SlackBotUnderTest) -> None:
    status, body, _ = await get(slack_bot.http, f"{slack_bot.url}/admin")
    assert status == 401 and "/admin" in body and "direct message" in body

    text = await slash_admin(slack_bot)
    match = LINK.search(text)
    assert match, text
    assert match.group(1).startswith("http://bot.example.test/admin/login?code=")
    assert "10 minutes" in text
    login = local(match.group(1), slack_bot.url)

    status, _, response = await get(slack_bot.http, login)
    assert status == 303 and response.headers["Location"] == "/admin"
    set_cookie = cookie_header(response)
    flags = {part.strip().split("=")[0].lower(): part for part in set_cookie.split(";")}
    assert "httponly" in flags and flags["samesite"].strip().lower() == "samesite=lax"
    assert flags["max-age"].strip() == "Max-Age=43200" and flags["path"].strip() == "Path=/admin"
    assert "secure" not in flags  # PUBLIC_URL is http here
    session = set_cookie.split(";")[0]

    status, body, response = await get(slack_bot.http, f"{slack_bot.url}/admin", cookie=session)
    assert status == 200 and "Questions per day" in body
    assert "script" not in response.headers["Content-Security-Policy"]

    # Used once: the same link again is refused, and sets no cookie.
    status, body, response = await get(slack_bot.http, login)
    assert status == 401 and "used already" in body
    assert "Set-Cookie" not in response.headers


async def test_admin_is_refused_in_channels_and_to_others(
    slack_bot: SlackBotUnderTest, redis_client: Redis
) -> None:
    in_channel = await slash_admin(slack_bot, channel="C123ABC456", trigger="t1")
    assert "direct message" in in_channel and not LINK.search(in_channel)
    stranger = await slash_admin(slack_bot, user="U0NOBODY", trigger="t2")
    assert "admins" in stranger and not LINK.search(stranger)
    assert [k async for k in redis_client.scan_iter(match=keys.admin_code("*"))] == []


async def test_teams_admin_typed_in_the_personal_chat(slack_bot: SlackBotUnderTest) -> None:
    # Teams hands the core a message typed in the personal chat (is_direct) or a channel.
    assistant = slack_bot.runtime.assistant
    key = ConversationKey("teams", "tenant-1", "a:personal-chat", "")
    direct, channel = RecordingSink(), RecordingSink()
    await assistant.handle(IncomingMessage(key, "m1", "UOTHER", "/admin", is_direct=True), direct)
    await assistant.handle(IncomingMessage(key, "m2", "UOTHER", "/admin", is_direct=False), channel)
    match = LINK.search(direct.text)
    assert match, direct.text
    assert "direct message" in channel.text and not LINK.search(channel.text)
    status, _, _ = await get(slack_bot.http, local(match.group(1), slack_bot.url))
    assert status == 303


# --- codes and sessions ----------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_a_code_expires_after_ten_minutes_in_the_database(database_url: str) -> None:
    from bot.database import upgrade

    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        clock = Clock(datetime.now(UTC))
        store = DatabaseSignInStore(engine=engine)
        sign_in = AdminSignIn(admins=frozenset({ADMIN}), store=store, public_url="", now=clock)
        late, in_time = await sign_in.issue_code(ADMIN), await sign_in.issue_code(ADMIN)
        clock.now += timedelta(seconds=CODE_TTL_SECONDS - 1)
        assert await sign_in.redeem(in_time) == ADMIN
        assert await sign_in.redeem(in_time) is None  # once
        clock.now += timedelta(seconds=2)
        assert await sign_in.redeem(late) is None  # expired
        # Only the digest is stored, never the code.
        async with engine.connect() as connection:
            stored = (await connection.exec_driver_sql("SELECT code_hash FROM admin_codes")).all()
        assert all(row[0] != late for row in stored)
    finally:
        await engine.dispose()


async def test_a_code_in_redis_expires_by_itself_and_is_stored_hashed(
    redis_client: Redis,
) -> None:
    sign_in = AdminSignIn(
        admins=frozenset({ADMIN}), store=RedisSignInStore(redis=redis_client), public_url=""
    )
    code = await sign_in.issue_code(ADMIN)
    ttl = await redis_client.ttl(keys.admin_code(digest_of(code)))
    assert CODE_TTL_SECONDS - 5 <= ttl <= CODE_TTL_SECONDS
    assert await redis_client.get(keys.admin_code(code)) is None
    assert await sign_in.redeem(code) == ADMIN
    assert await sign_in.redeem(code) is None


async def test_forged_expired_and_revoked_sessions_get_401(ledger: Ledger) -> None:
    engine = ledger._engine
    async with analytics_server(engine) as (server, sign_in):
        url = str(server.make_url("/admin"))
        good = await sign_in.new_session(ADMIN)
        name, expires, signature = good.split(".")
        other = AdminSignIn(
            admins=frozenset({ADMIN, "U0MALLORY"}),
            store=DatabaseSignInStore(engine=engine),
            public_url="",
            now=lambda: NOW,
        )
        mallory = await other.new_session("U0MALLORY")  # same key, not an admin of the page
        stale = AdminSignIn(
            admins=frozenset({ADMIN}),
            store=DatabaseSignInStore(engine=engine),
            public_url="",
            now=lambda: NOW - timedelta(hours=12, seconds=1),
        )
        expired = await stale.new_session(ADMIN)
        forged = [
            f"{name}.{int(expires) + 3600}.{signature}",  # lifetime stretched
            f"{name}.{expires}.{'0' * 64}",
            good[:-1] + ("0" if good[-1] != "0" else "1"),
            "garbage",
            mallory,
            expired,
        ]
        async with aiohttp.ClientSession() as http:
            assert (await get(http, url, cookie=f"chatbot_admin={good}"))[0] == 200
            for value in forged:
                status, body, _ = await get(http, url, cookie=f"chatbot_admin={value}")
                assert status == 401, value
                assert "/admin" in body and "Traceback" not in body


async def test_cookie_is_secure_under_https(ledger: Ledger) -> None:
    async with analytics_server(ledger._engine, public_url="https://bot.example") as (
        server,
        sign_in,
    ):
        code = await sign_in.issue_code(ADMIN)
        async with aiohttp.ClientSession() as http:
            status, _, response = await get(http, str(server.make_url(f"/admin/login?code={code}")))
        assert status == 303
        assert "secure" in [p.strip().lower() for p in cookie_header(response).split(";")]


async def test_link_previews_do_not_use_the_code(ledger: Ledger) -> None:
    async with analytics_server(ledger._engine) as (server, sign_in):
        code = await sign_in.issue_code(ADMIN)
        url = str(server.make_url(f"/admin/login?code={code}"))
        async with aiohttp.ClientSession() as http:
            preview = await get(http, url, **{"User-Agent": "Slackbot-LinkExpanding 1.0"})
            assert preview[0] == 200 and "Set-Cookie" not in preview[2].headers
            assert (await get(http, url))[0] == 303


async def test_bearer_token_of_an_admin(ledger: Ledger) -> None:
    owners = {"cbt_admin": ADMIN, "cbt_other": "U0SOMEONE"}

    async def resolve(token: str) -> str | None:
        return owners.get(token)

    async with analytics_server(ledger._engine, resolve_bearer=resolve) as (server, _):
        url = str(server.make_url("/admin/export/people.csv?days=7"))
        async with aiohttp.ClientSession() as http:
            assert (await get(http, url, Authorization="Bearer cbt_admin"))[0] == 200
            assert (await get(http, url, Authorization="Bearer cbt_other"))[0] == 401
            assert (await get(http, url, Authorization="Bearer nonsense"))[0] == 401
    async with analytics_server(ledger._engine) as (server, _):  # no token store wired
        url = str(server.make_url("/admin"))
        async with aiohttp.ClientSession() as http:
            assert (await get(http, url, Authorization="Bearer cbt_admin"))[0] == 401


# --- the page's figures ----------------------------------------------------------------


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def nearest_rank(values: list[int], pct: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def two_digits(ms: int) -> int:
    """A latency to two significant digits, rounded down (how the page keeps them)."""
    width = 10 ** max(1, len(str(ms)) - 2)
    return ms // width * width


def in_window(seed: Seed, days: int) -> list[UsageRecord]:
    since = window_start(days, NOW)
    return [r for r in seed.records if r.created_at >= since]


async def signed_in(server: TestServer, sign_in: AdminSignIn, http: aiohttp.ClientSession) -> str:
    code = await sign_in.issue_code(ADMIN)
    status, _, response = await get(http, str(server.make_url(f"/admin/login?code={code}")))
    assert status == 303
    return cookie_header(response).split(";")[0]


@pytest.mark.parametrize("days", [7, 30])
async def test_the_page_shows_the_ledgers_figures(ledger: Ledger, days: int) -> None:
    seed = make_seed()
    await write_seed(ledger, seed)
    rows = in_window(seed, days)
    assert 0 < len(rows) <= len(seed.records)
    async with (
        analytics_server(ledger._engine) as (server, sign_in),
        aiohttp.ClientSession() as http,
    ):
        cookie = await signed_in(server, sign_in, http)

        async def export(name: str) -> list[dict[str, str]]:
            status, body, response = await get(
                http, str(server.make_url(f"/admin/export/{name}.csv?days={days}")), cookie=cookie
            )
            assert status == 200 and response.content_type == "text/csv", body
            return read_csv(body)

        status, page, _ = await get(
            http, str(server.make_url(f"/admin?days={days}")), cookie=cookie
        )
        assert status == 200
        assert f'id="total-questions">{len(rows):,}<' in page
        assert f'id="total-people">{len({(r.platform, r.user) for r in rows})}<' in page

        # Questions per day by platform and route.
        per_day = Counter((r.created_at.date().isoformat(), r.platform, r.route) for r in rows)
        got = {
            (x["day"], x["platform"], x["route"]): int(x["questions"])
            for x in await export("questions_per_day")
        }
        assert got == dict(per_day)

        # People who asked, with their premium cost.
        people: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0])
        for r in rows:
            person = people[(r.platform, r.user)]
            person[0] += 1
            person[1] += r.route == "premium"
            person[2] += r.cost_usd
        got_people = {
            (x["platform"], x["user"]): [
                int(x["questions"]), int(x["premium questions"]), float(x["premium cost (USD)"])
            ]
            for x in await export("people")
        }  # fmt: skip
        assert got_people.keys() == people.keys()
        for who, (n, premium, cost) in people.items():
            assert got_people[who][:2] == [n, premium]
            assert got_people[who][2] == pytest.approx(cost, abs=1e-5)

        # Premium cost by person and month, against the budget.
        month_of = {r.answer_id: r.created_at.strftime("%Y-%m") for r in seed.records}
        spend: dict[tuple[str, str], float] = defaultdict(float)
        for r in seed.records:
            if r.route == "premium" and r.created_at >= window_start(days, NOW).replace(day=1):
                spend[(month_of[r.answer_id], r.user)] += r.cost_usd
        got_spend = {
            (x["month"], x["who"]): (float(x["cost (USD)"]), float(x["monthly budget (USD)"]))
            for x in await export("premium_spend")
            if x["person or workspace"] == "person"
        }
        assert got_spend.keys() == spend.keys()
        for key, cost in spend.items():
            assert got_spend[key] == (pytest.approx(cost, abs=1e-5), BUDGETS.user_usd)

        # Time to the first token and to the whole answer, per route.
        latency = {x["route"]: x for x in await export("latency")}
        for route in ("local", "premium"):
            ok = [r for r in rows if r.route == route and r.outcome == "ok"]
            totals = [r.latency_ms for r in ok]
            firsts = [r.first_token_ms for r in ok if r.first_token_ms is not None]
            line = latency[route]
            assert int(line["answers"]) == len(ok)
            assert int(line["whole answer, median (ms)"]) == two_digits(nearest_rank(totals, 50))
            assert int(line["whole answer, 95th pct (ms)"]) == two_digits(nearest_rank(totals, 95))
            assert int(line["first token, median (ms)"]) == two_digits(nearest_rank(firsts, 50))
            assert int(line["first token, 95th pct (ms)"]) == two_digits(nearest_rank(firsts, 95))

        # Answers by model and route, and the votes cast in the period on them.
        answers = {r.answer_id: r for r in seed.records}
        cast = [v for v in seed.votes if v.created_at >= window_start(days, NOW)]
        votes: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
        for r in rows:
            if r.outcome == "ok":
                votes[(r.model, r.route)][0] += 1
        for v in cast:
            r = answers[v.answer_id]
            votes[(r.model, r.route)][1 if v.value == "up" else 2] += 1
        got_votes = {
            (x["model"], x["route"]): [
                int(x["answers"]),
                int(x["thumbs up"]),
                int(x["thumbs down"]),
            ]
            for x in await export("votes")
        }
        assert got_votes == dict(votes)

        # The most cited documents.
        cited = Counter(doc for r in rows for doc in r.cited)
        got_docs = {
            (x["document"], x["link"]): int(x["answers citing it"])
            for x in await export("documents")
        }
        assert got_docs == dict(cited)

        # Knowledge gaps by day and by channel.
        searched = [r for r in rows if r.knowledge in ("matched", "no_match")]
        gaps_day = Counter(r.created_at.date().isoformat() for r in searched)
        nothing = Counter(
            r.created_at.date().isoformat() for r in searched if r.knowledge == "no_match"
        )
        got_gaps = {
            x["day"]: (int(x["answers that searched"]), int(x["found no matching source"]))
            for x in await export("gaps_by_day")
        }
        assert got_gaps == {d: (n, nothing[d]) for d, n in gaps_day.items()}
        by_channel = Counter((r.platform, r.channel) for r in rows if r.knowledge == "no_match")
        got_channels = {
            (x["platform"], x["channel"]): int(x["found no matching source"])
            for x in await export("gaps_by_channel")
        }
        assert got_channels == dict(by_channel)
        assert f'id="total-gaps">{sum(by_channel.values())}<' in page

        # Answers voted down; no question text unless asked for.
        down = {v.answer_id for v in cast if v.value == "down"}
        got_down = await export("down_voted")
        assert len(got_down) == len(down)
        assert "question (redacted)" not in got_down[0]
        assert "hunter2" not in page and "question 1 " not in page


async def test_question_texts_only_when_asked_for_and_redacted(ledger: Ledger) -> None:
    seed = make_seed()
    await write_seed(ledger, seed)
    async with (
        analytics_server(ledger._engine, show_questions=True) as (server, sign_in),
        aiohttp.ClientSession() as http,
    ):
        cookie = await signed_in(server, sign_in, http)
        status, body, _ = await get(
            http, str(server.make_url("/admin/export/down_voted.csv?days=30")), cookie=cookie
        )
        assert status == 200
        questions = [x["question (redacted)"] for x in read_csv(body)]
        assert questions and all(q.startswith("question ") for q in questions)


@pytest.mark.parametrize("keep", [False, True])
async def test_the_ledger_keeps_the_question_redacted_only_when_asked(
    fake_slack: FakeSlack,
    fake_ollama: FakeOllama,
    redis_url: str,
    database_url: str,
    keep: bool,
) -> None:
    settings = slack_settings(
        fake_slack, fake_ollama, redis_url, database_url, analytics_show_questions=keep
    )
    async with running_bot(settings, fake_slack, fake_ollama) as bot:
        await bot.post_event(dm("is password=hunter2hunter2 strong?", "1700000000.000100"))
        await bot.settle()
        (record,) = await records_written(bot)
    assert record.channel == DM  # for the knowledge gaps by channel
    if keep:
        assert record.question is not None and "hunter2" not in record.question
        assert record.question.startswith("is password=[REDACTED")
    else:
        assert record.question is None


async def test_bad_period_unknown_table_and_no_session(ledger: Ledger) -> None:
    async with (
        analytics_server(ledger._engine) as (server, sign_in),
        aiohttp.ClientSession() as http,
    ):
        status, body, _ = await get(http, str(server.make_url("/admin/export/people.csv")))
        assert status == 401
        cookie = await signed_in(server, sign_in, http)
        status, body, _ = await get(http, str(server.make_url("/admin?days=12")), cookie=cookie)
        assert status == 400 and "7, 30, 90" in body
        status, body, _ = await get(
            http, str(server.make_url("/admin/export/secrets.csv")), cookie=cookie
        )
        assert status == 404 and "people" in body
        status, body, _ = await get(http, str(server.make_url("/admin")), cookie=cookie)
        assert status == 200 and "Nothing in this period" in body  # an empty ledger
        status, css, _ = await get(http, str(server.make_url("/admin/admin.css")))
        assert status == 200 and "http" not in css  # nothing from another host


async def test_the_upgrade_summarises_the_rows_already_in_the_ledger(database_url: str) -> None:
    """Rows written before migration 0006 show on the page after the upgrade."""
    import sqlalchemy

    from bot.analytics import AnalyticsReader
    from bot.database import upgrade

    upgrade(database_url, "0004")
    engine = create_engine(database_url)
    old = [  # (day offset, platform, user, route, latency, first token, outcome, cost)
        (0, "slack", "U1", "local", 1234, 456, "ok", 0.0),
        (0, "slack", "U1", "premium", 2345, 678, "ok", 0.25),
        (1, "teams", "U2", "local", 99999, None, "ok", 0.0),
        (2, "slack", "U2", "local", 500, None, "error", 0.0),
    ]
    try:
        async with engine.begin() as connection:
            for offset, platform, user, route, latency, first, outcome, cost in old:
                await connection.execute(
                    sqlalchemy.text(
                        "INSERT INTO requests (platform, workspace, user_id, conversation, route,"
                        " model, prompt_tokens, completion_tokens, latency_ms, first_token_ms,"
                        " outcome, created_at, cost_usd) VALUES (:p, 'W', :u, 'c', :r, 'm', 1, 2,"
                        " :l, :f, :o, :t, :c)"
                    ),
                    {
                        "p": platform, "u": user, "r": route, "l": latency, "f": first,
                        "o": outcome, "c": cost,
                        "t": (NOW - timedelta(days=offset)).replace(tzinfo=None)
                        if engine.dialect.name == "sqlite"
                        else NOW - timedelta(days=offset),
                    },
                )  # fmt: skip
        upgrade(database_url)
        reader = AnalyticsReader(engine=engine, budgets=BUDGETS, now=lambda: NOW)
        figures = await reader.read(7)
    finally:
        await engine.dispose()
    per_day = {(d.day.isoformat(), d.platform, d.route): d.questions for d in figures.per_day}
    day = [(NOW - timedelta(days=n)).date().isoformat() for n in range(3)]
    assert per_day == {
        (day[0], "slack", "local"): 1,
        (day[0], "slack", "premium"): 1,
        (day[1], "teams", "local"): 1,
        (day[2], "slack", "local"): 1,
    }
    people = {(p.platform, p.user): (p.questions, p.premium_questions) for p in figures.people}
    assert people == {("slack", "U1"): (2, 1), ("teams", "U2"): (1, 0), ("slack", "U2"): (1, 0)}
    assert {p.user: p.last_asked for p in figures.people if p.platform == "slack"} == {
        "U1": NOW,
        "U2": NOW - timedelta(days=2),
    }
    assert figures.premium_cost_usd == pytest.approx(0.25)
    local = next(x for x in figures.latency if x.route == "local")
    assert (local.answers, local.total_p50, local.total_p95) == (2, 1200, 99000)
    assert (local.first_token_p50, local.first_token_p95) == (450, 450)


async def test_storage_down_is_a_clear_message_not_a_crash(tmp_path: Any) -> None:
    from bot import replies

    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'chatbot.db'}")
    try:
        async with (
            analytics_server(engine) as (server, sign_in),
            aiohttp.ClientSession() as http,
        ):
            assert await sign_in.reply_to(ADMIN, direct=True) == replies.ADMIN_UNAVAILABLE
            url = str(server.make_url("/admin"))
            status, body, _ = await get(http, url, cookie="chatbot_admin=QQ.9999999999.abc")
            assert status == 503 and "not answering" in body and "Traceback" not in body
            status, body, _ = await get(http, str(server.make_url("/admin/login?code=x")))
            assert status == 503 and "not answering" in body
    finally:
        await engine.dispose()
