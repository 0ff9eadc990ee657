"""What the analytics page shows, read from the usage ledger as aggregates in the database.

Every query groups and counts in SQL (SQLAlchemy Core) and returns at most a few thousand
rows, whatever the size of the ledger; the four that read the whole window run at once on
their own connections. Latency percentiles are exact nearest-rank values (as `chatbot
usage` gives them), computed from a count per millisecond value, the same on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Date,
    Row,
    Select,
    and_,
    case,
    cast,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.budget import Budgets, month_start
from bot.database import translated_errors
from bot.ledger import AnswerSourceRow, RequestRow, VoteRow
from bot.retrieval import KnowledgeFound

WINDOWS = (7, 30, 90)
DEFAULT_WINDOW = 30
QUERY_TIMEOUT_SECONDS = 30.0
TOP_DOCUMENTS = 20
TOP_CHANNELS = 20
DOWN_VOTED_LIMIT = 50

_REQUESTS_TABLE = RequestRow.__table__
_REQUESTS = RequestRow.__table__.c
_VOTES = VoteRow.__table__.c
_SOURCES = AnswerSourceRow.__table__.c


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


def _day(column: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return cast(func.timezone("UTC", column), Date)
    return func.date(column)  # SQLite keeps naive UTC text: 'YYYY-MM-DD HH:MM:SS'


def _month(column: Any, dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


def _to_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


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
        dialect = self._engine.dialect.name
        (
            per_day_rows,
            people,
            totals,
            first_tokens,
            spend,
            votes,
            documents,
            channels,
            down_voted,
        ) = await asyncio.gather(
            self._rows(self._per_day_query(since, dialect)),
            self._rows(self._people_query(since)),
            self._rows(self._latency_query(since, _REQUESTS.latency_ms)),
            self._rows(self._latency_query(since, _REQUESTS.first_token_ms)),
            self._rows(self._spend_query(month_start(since), dialect)),
            self._rows(self._votes_query(since)),
            self._rows(self._documents_query(since)),
            self._rows(self._channels_query(since)),
            self._rows(self._down_voted_query(since)),
        )
        return Analytics(
            days=days,
            since=since,
            until=now,
            per_day=_per_day(per_day_rows),
            people=[
                Person(r.platform, r.user_id, r.questions, r.premium, float(r.cost), _utc(r.last))
                for r in people
            ],
            spend=self._spend(spend),
            latency=_latency(totals, first_tokens),
            votes=[VoteLine(r.model, r.route, r.answers, r.up, r.down) for r in votes],
            documents=[CitedDocument(r.title, r.url, r.answers) for r in documents],
            gaps_by_day=_gaps_by_day(per_day_rows),
            gaps_by_channel=[GapChannel(r.platform, r.channel or "", r.no_match) for r in channels],
            down_voted=[_down_voted(r, show_question=self._show_questions) for r in down_voted],
        )

    async def _rows(self, query: Select[Any]) -> Sequence[Row[Any]]:
        async with (
            translated_errors("could not read the analytics", QUERY_TIMEOUT_SECONDS),
            self._engine.connect() as connection,
        ):
            rows: Sequence[Row[Any]] = (await connection.execute(query)).all()
        return rows

    # -- queries (each returns a bounded number of rows) ---------------------------------

    @staticmethod
    def _per_day_query(since: datetime, dialect: str) -> Select[Any]:
        day = _day(_REQUESTS.created_at, dialect).label("day")
        return (
            select(
                day,
                _REQUESTS.platform,
                _REQUESTS.route,
                _REQUESTS.knowledge,
                func.count().label("questions"),
            )
            .where(_REQUESTS.created_at >= since)
            .group_by(day, _REQUESTS.platform, _REQUESTS.route, _REQUESTS.knowledge)
        )

    @staticmethod
    def _people_query(since: datetime) -> Select[Any]:
        premium = _REQUESTS.route == "premium"
        return (
            select(
                _REQUESTS.platform,
                _REQUESTS.user_id,
                func.count().label("questions"),
                func.count(case((premium, 1))).label("premium"),
                func.coalesce(func.sum(_REQUESTS.cost_usd), 0).label("cost"),
                func.max(_REQUESTS.created_at).label("last"),
            )
            .where(_REQUESTS.created_at >= since)
            .group_by(_REQUESTS.platform, _REQUESTS.user_id)
            .order_by(func.count().desc(), _REQUESTS.platform, _REQUESTS.user_id)
        )

    @staticmethod
    def _latency_query(since: datetime, column: Any) -> Select[Any]:
        return (
            select(_REQUESTS.route, column.label("ms"), func.count().label("n"))
            .where(_REQUESTS.created_at >= since, _REQUESTS.outcome == "ok", column.is_not(None))
            .group_by(_REQUESTS.route, column)
            .order_by(_REQUESTS.route, column)
        )

    @staticmethod
    def _spend_query(since: datetime, dialect: str) -> Select[Any]:
        month = _month(_REQUESTS.created_at, dialect).label("month")
        return (
            select(
                month,
                _REQUESTS.platform,
                _REQUESTS.workspace,
                _REQUESTS.user_id,
                func.sum(_REQUESTS.cost_usd).label("cost"),
            )
            .where(_REQUESTS.route == "premium", _REQUESTS.created_at >= since)
            .group_by(month, _REQUESTS.platform, _REQUESTS.workspace, _REQUESTS.user_id)
        )

    @staticmethod
    def _votes_query(since: datetime) -> Select[Any]:
        # The latest vote of each person on each answer (one row per person per answer).
        tally = (
            select(
                _VOTES.answer_id,
                func.count(case((_VOTES.vote == "up", 1))).label("up"),
                func.count(case((_VOTES.vote == "down", 1))).label("down"),
            )
            .group_by(_VOTES.answer_id)
            .subquery()
        )
        return (
            select(
                _REQUESTS.model,
                _REQUESTS.route,
                func.count().label("answers"),
                func.coalesce(func.sum(tally.c.up), 0).label("up"),
                func.coalesce(func.sum(tally.c.down), 0).label("down"),
            )
            .select_from(_REQUESTS_TABLE)
            .outerjoin(tally, tally.c.answer_id == _REQUESTS.answer_id)
            .where(
                _REQUESTS.created_at >= since,
                _REQUESTS.outcome == "ok",
                _REQUESTS.answer_id.is_not(None),
            )
            .group_by(_REQUESTS.model, _REQUESTS.route)
            .order_by(func.count().desc(), _REQUESTS.model, _REQUESTS.route)
        )

    @staticmethod
    def _documents_query(since: datetime) -> Select[Any]:
        answers = func.count(func.distinct(_SOURCES.answer_id))
        return (
            select(_SOURCES.title, _SOURCES.url, answers.label("answers"))
            .where(_SOURCES.created_at >= since)
            .group_by(_SOURCES.title, _SOURCES.url)
            .order_by(answers.desc(), _SOURCES.title, _SOURCES.url)
            .limit(TOP_DOCUMENTS)
        )

    @staticmethod
    def _channels_query(since: datetime) -> Select[Any]:
        # Group by the column, not by an expression: PostgreSQL sees two coalesce(...) with
        # their own bound parameters as different expressions.
        return (
            select(_REQUESTS.platform, _REQUESTS.channel, func.count().label("no_match"))
            .where(
                _REQUESTS.knowledge == KnowledgeFound.NO_MATCH.value,
                _REQUESTS.created_at >= since,
            )
            .group_by(_REQUESTS.platform, _REQUESTS.channel)
            .order_by(func.count().desc(), _REQUESTS.platform, _REQUESTS.channel)
            .limit(TOP_CHANNELS)
        )

    @staticmethod
    def _down_voted_query(since: datetime) -> Select[Any]:
        tally = (
            select(
                _VOTES.answer_id,
                func.count(case((_VOTES.vote == "up", 1))).label("up"),
                func.count(case((_VOTES.vote == "down", 1))).label("down"),
            )
            .group_by(_VOTES.answer_id)
            .having(func.count(case((_VOTES.vote == "down", 1))) > 0)
            .subquery()
        )
        return (
            select(
                _REQUESTS.created_at,
                _REQUESTS.platform,
                _REQUESTS.channel,
                _REQUESTS.model,
                _REQUESTS.route,
                _REQUESTS.question,
                tally.c.up,
                tally.c.down,
            )
            .select_from(tally)
            .join(
                _REQUESTS_TABLE,
                and_(_REQUESTS.answer_id == tally.c.answer_id, _REQUESTS.created_at >= since),
            )
            .order_by(_REQUESTS.created_at.desc())
            .limit(DOWN_VOTED_LIMIT)
        )

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
        return sorted(lines, key=lambda s: (s.month, s.kind, -s.cost_usd, s.who))


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


def _latency(totals: Sequence[Row[Any]], first_tokens: Sequence[Row[Any]]) -> list[Latency]:
    def by_route(rows: Sequence[Row[Any]]) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = {}
        for r in rows:
            out.setdefault(r.route, []).append((int(r.ms), int(r.n)))
        return out

    total, first = by_route(totals), by_route(first_tokens)
    return [
        Latency(
            route=route,
            answers=sum(n for _, n in total.get(route, [])),
            first_token_p50=nearest_rank(first.get(route, []), 50),
            first_token_p95=nearest_rank(first.get(route, []), 95),
            total_p50=nearest_rank(total.get(route, []), 50),
            total_p95=nearest_rank(total.get(route, []), 95),
        )
        for route in sorted(set(total) | set(first))
    ]
