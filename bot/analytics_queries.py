"""The SQL behind the analytics page (``bot.analytics``): each query groups and counts in
the database (SQLAlchemy Core) and returns a bounded number of rows, read from the ledger's
daily summaries (``bot.rollups``), and from the votes of the window for the votes and the
answers voted down."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, case, func, select, union_all

from bot.ledger import RequestRow, VoteRow
from bot.rollups import (
    DocumentsDailyRow,
    GapsDailyRow,
    LatencyDailyRow,
    PeopleDailyRow,
    SpendMonthlyRow,
    UsageDailyRow,
)

TOP_DOCUMENTS = 20
TOP_CHANNELS = 20
DOWN_VOTED_LIMIT = 50

_REQUESTS = RequestRow.__table__.c
_VOTES = VoteRow.__table__.c
_USAGE = UsageDailyRow.__table__.c
_PEOPLE = PeopleDailyRow.__table__.c
_SPEND = SpendMonthlyRow.__table__.c
_LATENCY = LatencyDailyRow.__table__.c
_GAPS = GapsDailyRow.__table__.c
_DOCUMENTS = DocumentsDailyRow.__table__.c


def usage_query(first: date) -> Select[Any]:
    """Questions per day, platform, route, model, what retrieval found and outcome."""
    return select(
        _USAGE.day,
        _USAGE.platform,
        _USAGE.route,
        _USAGE.model,
        _USAGE.knowledge,
        _USAGE.outcome,
        _USAGE.questions,
    ).where(_USAGE.day >= first)


def people_query(first: date) -> Select[Any]:
    """Each person who asked: questions, premium ones, cost, last asked; most questions first."""
    questions = func.sum(_PEOPLE.questions)
    return (
        select(
            _PEOPLE.platform,
            _PEOPLE.user_id,
            questions.label("questions"),
            func.sum(_PEOPLE.premium_questions).label("premium"),
            func.sum(_PEOPLE.cost_usd).label("cost"),
            func.max(_PEOPLE.last_at).label("last"),
        )
        .where(_PEOPLE.day >= first)
        .group_by(_PEOPLE.platform, _PEOPLE.user_id)
        .order_by(questions.desc(), _PEOPLE.platform, _PEOPLE.user_id)
    )


def latency_query(first: date) -> Select[Any]:
    """The latency histograms per route and measure (first token, total)."""
    return (
        select(
            _LATENCY.route,
            _LATENCY.measure,
            _LATENCY.bucket_ms,
            func.sum(_LATENCY.answers).label("n"),
        )
        .where(_LATENCY.day >= first)
        .group_by(_LATENCY.route, _LATENCY.measure, _LATENCY.bucket_ms)
        .order_by(_LATENCY.route, _LATENCY.measure, _LATENCY.bucket_ms)
    )


def spend_query(first_month: str) -> Select[Any]:
    """Premium spend per month, workspace and person, from ``first_month`` on."""
    return select(
        _SPEND.month,
        _SPEND.platform,
        _SPEND.workspace,
        _SPEND.user_id,
        _SPEND.cost_usd.label("cost"),
    ).where(_SPEND.month >= first_month)


def votes_query(since: datetime) -> Select[Any]:
    """Votes cast in the window (each person's latest on each answer), by the model and
    route of the answer: kept on the vote, else looked up (a vote on an answer whose ledger
    row was not written yet when the vote was)."""
    up = func.count(case((_VOTES.vote == "up", 1))).label("up")
    down = func.count(case((_VOTES.vote == "down", 1))).label("down")
    kept = (
        select(_VOTES.model, _VOTES.route, up, down)
        .where(_VOTES.created_at >= since, _VOTES.model.is_not(None))
        .group_by(_VOTES.model, _VOTES.route)
    )
    looked_up = (
        select(_REQUESTS.model, _REQUESTS.route, up, down)
        .select_from(VoteRow.__table__)
        .join(RequestRow.__table__, _REQUESTS.answer_id == _VOTES.answer_id)
        .where(_VOTES.created_at >= since, _VOTES.model.is_(None))
        .group_by(_REQUESTS.model, _REQUESTS.route)
    )
    both = union_all(kept, looked_up).subquery()
    return select(
        both.c.model,
        both.c.route,
        func.sum(both.c.up).label("up"),
        func.sum(both.c.down).label("down"),
    ).group_by(both.c.model, both.c.route)


def documents_query(first: date) -> Select[Any]:
    """The documents cited by most answers."""
    answers = func.sum(_DOCUMENTS.answers)
    return (
        select(_DOCUMENTS.title, _DOCUMENTS.url, answers.label("answers"))
        .where(_DOCUMENTS.day >= first)
        .group_by(_DOCUMENTS.title, _DOCUMENTS.url)
        .order_by(answers.desc(), _DOCUMENTS.title, _DOCUMENTS.url)
        .limit(TOP_DOCUMENTS)
    )


def channels_query(first: date) -> Select[Any]:
    """The channels whose answers most often found no matching source."""
    no_match = func.sum(_GAPS.no_match)
    return (
        select(_GAPS.platform, _GAPS.channel, no_match.label("no_match"))
        .where(_GAPS.day >= first)
        .group_by(_GAPS.platform, _GAPS.channel)
        .order_by(no_match.desc(), _GAPS.platform, _GAPS.channel)
        .limit(TOP_CHANNELS)
    )


def down_voted_query(since: datetime) -> Select[Any]:
    """The answers voted down in the window, the latest vote first."""
    downs = (
        select(
            _VOTES.answer_id,
            func.count().label("down"),
            func.max(_VOTES.created_at).label("voted"),
        )
        .where(_VOTES.vote == "down", _VOTES.created_at >= since)
        .group_by(_VOTES.answer_id)
        .order_by(func.max(_VOTES.created_at).desc())
        .limit(DOWN_VOTED_LIMIT)
        .subquery()
    )
    ups = (
        select(func.count())
        .where(
            _VOTES.answer_id == downs.c.answer_id,
            _VOTES.vote == "up",
            _VOTES.created_at >= since,
        )
        .scalar_subquery()
    )
    return (
        select(
            _REQUESTS.created_at,
            _REQUESTS.platform,
            _REQUESTS.channel,
            _REQUESTS.model,
            _REQUESTS.route,
            _REQUESTS.question,
            ups.label("up"),
            downs.c.down,
        )
        .select_from(downs)
        .join(RequestRow.__table__, _REQUESTS.answer_id == downs.c.answer_id)
        .order_by(downs.c.voted.desc(), _REQUESTS.created_at.desc())
    )
