"""What the analytics page shows, read as aggregates in the database.

Every query (``bot.analytics_queries``) groups and counts in SQL, over the ledger's daily
summaries (``bot.rollups``: a few thousand rows for 90 days, however many questions were
asked) rather than its rows; votes and the answers voted down are read from the votes of
the window. The queries run at once, each on its own pooled connection. Latency percentiles
are nearest-rank values (as `chatbot usage` gives them) read from the summaries'
histograms: exact to two significant digits.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Row, Select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.analytics_queries import (
    channels_query,
    documents_query,
    down_voted_query,
    latency_query,
    people_query,
    spend_query,
    usage_query,
    votes_query,
)
from bot.budget import Budgets, month_start
from bot.database import translated_errors
from bot.retrieval import KnowledgeFound

WINDOWS = (7, 30, 90)
DEFAULT_WINDOW = 30
QUERY_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class DayCount:
    """Questions asked on one UTC day on one platform, by route."""

    day: date
    platform: str
    route: str
    questions: int


@dataclass(frozen=True, slots=True)
class Person:
    """One person who asked in the window."""

    platform: str
    user: str
    questions: int
    premium_questions: int
    cost_usd: float
    last_asked: datetime


@dataclass(frozen=True, slots=True)
class MonthlySpend:
    """Premium spend of one person or workspace in one calendar month, against its budget."""

    month: str  # "2026-11"
    kind: Literal["person", "workspace"]
    who: str
    cost_usd: float
    budget_usd: float  # 0: no limit

    @property
    def budget_share(self) -> float | None:
        """The share of the budget spent (None without a limit)."""
        return self.cost_usd / self.budget_usd if self.budget_usd > 0 else None


@dataclass(frozen=True, slots=True)
class Latency:
    """Time to the first token and to the whole answer on one route (answers that ended
    well), in milliseconds."""

    route: str
    answers: int
    first_token_p50: int | None
    first_token_p95: int | None
    total_p50: int | None
    total_p95: int | None


@dataclass(frozen=True, slots=True)
class VoteLine:
    """Votes on one model's answers on one route."""

    model: str
    route: str
    answers: int
    up: int
    down: int

    @property
    def up_share(self) -> float | None:
        """The share of thumbs up among the votes (None without votes)."""
        votes = self.up + self.down
        return self.up / votes if votes else None


@dataclass(frozen=True, slots=True)
class CitedDocument:
    """An indexed document and how many answers cited it."""

    title: str
    url: str
    answers: int


@dataclass(frozen=True, slots=True)
class GapDay:
    """On one UTC day: answers that searched the team knowledge (and could), and those of
    them that found no matching source."""

    day: date
    searched: int
    no_match: int


@dataclass(frozen=True, slots=True)
class GapChannel:
    """Answers that found no matching source in one channel (Slack) or conversation (Teams)."""

    platform: str
    channel: str
    no_match: int


@dataclass(frozen=True, slots=True)
class DownVoted:
    """An answer voted down."""

    created_at: datetime
    platform: str
    channel: str
    model: str
    route: str
    down: int
    up: int
    question: str | None  # redacted; None unless questions are kept and shown


@dataclass(frozen=True, slots=True)
class Analytics:
    """Everything the page shows for one window."""

    days: int
    since: datetime  # start of the first day shown (UTC midnight)
    until: datetime  # when it was read
    per_day: list[DayCount]
    people: list[Person]
    spend: list[MonthlySpend]
    latency: list[Latency]
    votes: list[VoteLine]
    documents: list[CitedDocument]
    gaps_by_day: list[GapDay]
    gaps_by_channel: list[GapChannel]
    down_voted: list[DownVoted]

    @property
    def questions(self) -> int:
        """Questions asked in the window."""
        return sum(d.questions for d in self.per_day)

    @property
    def premium_cost_usd(self) -> float:
        """Premium spend in the window."""
        return sum(p.cost_usd for p in self.people)

    @property
    def no_match(self) -> int:
        """Answers that found no matching indexed source."""
        return sum(g.no_match for g in self.gaps_by_day)


def window_start(days: int, now: datetime) -> datetime:
    """UTC midnight of the first of the last ``days`` days (today included)."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days - 1)


def nearest_rank(histogram: Sequence[tuple[int, int]], pct: float) -> int | None:
    """The nearest-rank percentile of values given as (value, count) pairs sorted by value."""
    total = sum(count for _, count in histogram)
    if total == 0:
        return None
    rank = max(1, math.ceil(pct / 100 * total))
    seen = 0
    for value, count in histogram:
        seen += count
        if seen >= rank:
            return value
    return histogram[-1][0]


def _to_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    moment = datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class AnalyticsReader:
    """Reads the page's figures from the ledger's database."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        budgets: Budgets,
        show_questions: bool = False,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._budgets = budgets
        self._show_questions = show_questions
        self._now = now

    async def read(self, days: int) -> Analytics:
        """The figures of the last ``days`` days (one of WINDOWS)."""
        if days not in WINDOWS:
            raise ValueError(f"days must be one of {', '.join(map(str, WINDOWS))}")
        now = self._now()
        since = window_start(days, now)
        first = since.date()
        (
            usage,
            people,
            latency,
            spend,
            votes,
            documents,
            channels,
            down_voted,
        ) = await asyncio.gather(
            self._rows(usage_query(first)),
            self._rows(people_query(first)),
            self._rows(latency_query(first)),
            self._rows(spend_query(month_start(since).strftime("%Y-%m"))),
            self._rows(votes_query(since)),
            self._rows(documents_query(first)),
            self._rows(channels_query(first)),
            self._rows(down_voted_query(since)),
        )
        return Analytics(
            days=days,
            since=since,
            until=now,
            per_day=_per_day(usage),
            people=[
                Person(r.platform, r.user_id, r.questions, r.premium, float(r.cost), _utc(r.last))
                for r in people
            ],
            spend=self._spend(spend),
            latency=_latency(latency),
            votes=_votes(usage, votes),
            documents=[CitedDocument(r.title, r.url, r.answers) for r in documents],
            gaps_by_day=_gaps_by_day(usage),
            gaps_by_channel=[GapChannel(r.platform, r.channel, r.no_match) for r in channels],
            down_voted=[_down_voted(r, show_question=self._show_questions) for r in down_voted],
        )

    async def _rows(self, query: Select[Any]) -> Sequence[Row[Any]]:
        async with (
            translated_errors("could not read the analytics", QUERY_TIMEOUT_SECONDS),
            self._engine.connect() as connection,
        ):
            rows: Sequence[Row[Any]] = (await connection.execute(query)).all()
        return rows

    def _spend(self, rows: Sequence[Row[Any]]) -> list[MonthlySpend]:
        people: dict[tuple[str, str], float] = {}
        workspaces: dict[tuple[str, str], float] = {}
        for r in rows:
            cost = float(r.cost or 0)
            people[(r.month, r.user_id)] = people.get((r.month, r.user_id), 0.0) + cost
            where = f"{r.platform}:{r.workspace}"
            workspaces[(r.month, where)] = workspaces.get((r.month, where), 0.0) + cost
        lines = [
            MonthlySpend(month, "person", who, cost, self._budgets.user_usd)
            for (month, who), cost in people.items()
        ] + [
            MonthlySpend(month, "workspace", who, cost, self._budgets.workspace_usd)
            for (month, who), cost in workspaces.items()
        ]
        # The latest month first; in a month the workspaces, then who spent most.
        lines.sort(key=lambda s: (s.kind != "workspace", -s.cost_usd, s.who))
        lines.sort(key=lambda s: s.month, reverse=True)
        return lines


# -- queo figures ----------------------------------------------------------------


def _down_voted(r: Row[Any], *, show_question: bool) -> DownVoted:
    return DownVoted(
        created_at=_utc(r.created_at),
        platform=r.platform,
        channel=r.channel or "",
        model=r.model,
        route=r.route,
        down=r.down,
        up=r.up,
        question=r.question if show_question else None,
    )


def _per_day(rows: Sequence[Row[Any]]) -> list[DayCount]:
    counts: dict[tuple[date, str, str], int] = {}
    for r in rows:
        key = (_to_date(r.day), r.platform, r.route)
        counts[key] = counts.get(key, 0) + r.questions
    return [DayCount(d, p, route, n) for (d, p, route), n in sorted(counts.items())]


def _gaps_by_day(rows: Sequence[Row[Any]]) -> list[GapDay]:
    searched: dict[date, list[int]] = {}
    for r in rows:
        if r.knowledge not in (KnowledgeFound.MATCHED.value, KnowledgeFound.NO_MATCH.value):
            continue
        counts = searched.setdefault(_to_date(r.day), [0, 0])
        counts[0] += r.questions
        counts[1] += r.questions if r.knowledge == KnowledgeFound.NO_MATCH.value else 0
    return [GapDay(d, s, n) for d, (s, n) in sorted(searched.items())]


def _votes(usage: Sequence[Row[Any]], votes: Sequence[Row[Any]]) -> list[VoteLine]:
    """Answers per model and route (those that ended well), with the votes cast."""
    counts: dict[tuple[str, str], list[int]] = {}
    for r in usage:
        if r.outcome == "ok":
            counts.setdefault((r.model, r.route), [0, 0, 0])[0] += r.questions
    for r in votes:
        line = counts.setdefault((r.model, r.route), [0, 0, 0])
        line[1] += r.up
        line[2] += r.down
    lines = [VoteLine(m, route, n, up, down) for (m, route), (n, up, down) in counts.items()]
    return sorted(lines, key=lambda v: (-v.answers, v.model, v.route))


def _latency(rows: Sequence[Row[Any]]) -> list[Latency]:
    histograms: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for r in rows:
        histograms.setdefault((r.route, r.measure), []).append((int(r.bucket_ms), int(r.n)))
    routes = sorted({route for route, _ in histograms})
    lines = []
    for route in routes:
        total = histograms.get((route, "total"), [])
        first = histograms.get((route, "first_token"), [])
        lines.append(
            Latency(
                route=route,
                answers=sum(n for _, n in total),
                first_token_p50=nearest_rank(first, 50),
                first_token_p95=nearest_rank(first, 95),
                total_p50=nearest_rank(total, 50),
                total_p95=nearest_rank(total, 95),
            )
        )
    return lines
