"""A seeded usage ledger for the analytics page's tests, and an analytics page serving it.

The records are random but fixed (a seeded generator); the tests count what the page
should show from ``Seed.records`` and ``Seed.votes`` themselves, in plain Python.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.admin import register_admin_routes
from adapters.admin.auth import BearerResolver, no_bearer_tokens
from bot.admin import AdminSignIn, DatabaseSignInStore
from bot.analytics import AnalyticsReader
from bot.budget import Budgets
from bot.ledger import Ledger
from bot.usage import UsageRecord
from bot.votes import Vote

NOW = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)
ADMIN = "U0ADMIN"
BUDGETS = Budgets(user_usd=5.0, workspace_usd=50.0)
DOCUMENTS = (
    ("Deploying the billing service", "https://wiki.example/deploy"),
    ("Error codes", "https://wiki.example/errors"),
    ("On-call runbook", "https://wiki.example/oncall"),
)


@dataclass
class Seed:
    """What was written to the ledger."""

    records: list[UsageRecord] = field(default_factory=list)
    votes: list[Vote] = field(default_factory=list)


def make_seed(count: int = 80, *, seed: int = 21) -> Seed:
    """``count`` answers over the last 12 days, and votes on some of them."""
    rng = random.Random(seed)
    out = Seed()
    for index in range(count):
        platform = rng.choice(["slack", "slack", "teams"])
        route = rng.choice(["local", "local", "local", "premium"])
        knowledge = rng.choice([None, "matched", "matched", "no_match", "unavailable"])
        outcome = "ok" if rng.random() > 0.1 else "error"
        cited = (
            tuple(rng.sample(DOCUMENTS, rng.randint(1, 2)))
            if knowledge == "matched" and outcome == "ok"
            else ()
        )
        created = NOW - timedelta(days=rng.randint(0, 11), minutes=rng.randint(0, 900))
        first = rng.randint(150, 3000)
        record = UsageRecord(
            platform=platform,
            workspace="T1" if platform == "slack" else "tenant-1",
            user=f"U{rng.randint(1, 6)}",
            conversation=f"{platform}:w:c:{index}",
            route=route,
            model="gpt-4.1" if route == "premium" else "codellama:7b",
            prompt_tokens=rng.randint(10, 900),
            completion_tokens=rng.randint(10, 900),
            latency_ms=first + rng.randint(100, 9000),
            first_token_ms=first if outcome == "ok" else None,
            outcome=outcome,
            created_at=created,
            cost_usd=round(rng.uniform(0.001, 0.9), 6) if route == "premium" else 0.0,
            passages=2 if knowledge == "matched" else 0,
            retrieval_ms=30 if knowledge else None,
            answer_id=f"a{index:04d}",
            channel=rng.choice(["C1", "C2", "C3"]),
            knowledge=knowledge,
            question=f"question {index} with password=hunter2-{index}",
            cited=cited,
        )
        out.records.append(record)
        if outcome == "ok" and rng.random() < 0.5:
            for voter in rng.sample(["V1", "V2", "V3"], rng.randint(1, 2)):
                out.votes.append(
                    Vote(
                        answer_id=record.answer_id,
                        platform=platform,
                        workspace=record.workspace,
                        user=voter,
                        value=rng.choice(["up", "up", "down"]),
                        created_at=created + timedelta(minutes=5),
                    )
                )
    return out


async def write_seed(ledger: Ledger, seed: Seed) -> None:
    """Store the seed's records and votes: a third of the votes before the records, as
    when a vote comes before the usage writer has written the answer's row."""
    early = seed.votes[::3]
    for vote in early:
        await ledger.record_vote(vote)
    await ledger.record_many(seed.records)
    for vote in seed.votes:
        if vote not in early:
            await ledger.record_vote(vote)


@asynccontextmanager
async def analytics_server(
    engine: AsyncEngine,
    *,
    admins: frozenset[str] = frozenset({ADMIN}),
    public_url: str = "http://127.0.0.1",
    show_questions: bool = False,
    resolve_bearer: BearerResolver = no_bearer_tokens,
    now: datetime = NOW,
) -> AsyncIterator[tuple[TestServer, AdminSignIn]]:
    """The analytics page alone, on a free port, over ``engine``'s ledger."""
    sign_in = AdminSignIn(
        admins=admins,
        store=DatabaseSignInStore(engine=engine),
        public_url=public_url,
        now=lambda: now,
    )
    reader = AnalyticsReader(
        engine=engine, budgets=BUDGETS, show_questions=show_questions, now=lambda: now
    )
    app = web.Application()
    register_admin_routes(
        app,
        sign_in=sign_in,
        reader=reader,
        public_url=public_url,
        show_questions=show_questions,
        resolve_bearer=resolve_bearer,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, sign_in
    finally:
        await server.close()
