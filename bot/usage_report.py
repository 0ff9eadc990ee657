"""The usage report (`chatbot usage`): requests, tokens, cost and latency from the ledger,
and the feedback votes on answers by model and route."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import InstrumentedAttribute

from bot.budget import format_usd
from bot.database import translated_errors
from bot.ledger import RequestRow, VoteRow

GroupBy = Literal["user", "workspace", "model"]
GROUPINGS: tuple[GroupBy, ...] = ("user", "workspace", "model")
QUERY_TIMEOUT_SECONDS = 60.0

_SPAN = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
_SPAN_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime) -> datetime:
    """The start of the window ``text`` names: ``30d``, ``24h``, ``2w``, ``90m`` back from
    ``now``, or a UTC date ``2025-11-01``. Raises ValueError for anything else."""
    match = _SPAN.match(text)
    if match is not None:
        amount, unit = int(match.group(1)), match.group(2).lower()
        return now - timedelta(**{_SPAN_UNITS[unit]: amount})
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time span: use e.g. 30d, 24h, 2w or 2025-11-01"
        ) from None
    return day.replace(tzinfo=UTC)


def percentile(values: Sequence[int], pct: float) -> int | None:
    """The nearest-rank percentile of ``values`` (None when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class ReportLine:
    """One group's totals over the window."""

    key: str
    requests: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    p50_ms: int | None
    p95_ms: int | None


@dataclass
class _Totals:
    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latencies: list[int] = field(default_factory=list)


def _group_column(by: GroupBy) -> tuple[InstrumentedAttribute[str], InstrumentedAttribute[str]]:
    if by == "user":
        return (RequestRow.platform, RequestRow.user)
    if by == "workspace":
        return (RequestRow.platform, RequestRow.workspace)
    return (RequestRow.route, RequestRow.model)


async def usage_report(engine: AsyncEngine, *, since: datetime, by: GroupBy) -> list[ReportLine]:
    """Totals per user, workspace or model of the requests recorded since ``since``,
    dearest first. Percentiles are computed here, the same on SQLite and PostgreSQL."""
    first, second = _group_column(by)
    query = select(
        first,
        second,
        RequestRow.outcome,
        RequestRow.prompt_tokens,
        RequestRow.completion_tokens,
        RequestRow.cost_usd,
        RequestRow.latency_ms,
    ).where(RequestRow.created_at >= since)
    totals: dict[str, _Totals] = {}
    async with (
        translated_errors("could not read usage", QUERY_TIMEOUT_SECONDS),
        engine.connect() as connection,
    ):
        result = await connection.stream(query)
        async for a, b, outcome, prompt, completion, cost, latency in result:
            key = f"{a}:{b}" if by != "model" else f"{b} ({a})"
            group = totals.setdefault(key, _Totals())
            group.requests += 1
            group.failed += outcome != "ok"
            group.prompt_tokens += prompt
            group.completion_tokens += completion
            group.cost_usd += float(cost or 0)
            group.latencies.append(latency)
    lines = [
        ReportLine(
            key=key,
            requests=t.requests,
            failed=t.failed,
            prompt_tokens=t.prompt_tokens,
            completion_tokens=t.completion_tokens,
            cost_usd=t.cost_usd,
            p50_ms=percentile(t.latencies, 50),
            p95_ms=percentile(t.latencies, 95),
        )
        for key, t in totals.items()
    ]
    return sorted(lines, key=lambda line: (-line.cost_usd, -line.requests, line.key))


def _seconds(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}"


def format_report(lines: Sequence[ReportLine], *, by: GroupBy) -> str:
    """A plain-text table with a total row, for a terminal."""
    header = (by, "requests", "failed", "prompt tok", "compl. tok", "cost", "p50 s", "p95 s")
    rows = [
        (
            line.key,
            f"{line.requests:,}",
            f"{line.failed:,}",
            f"{line.prompt_tokens:,}",
            f"{line.completion_tokens:,}",
            format_usd(line.cost_usd),
            _seconds(line.p50_ms),
            _seconds(line.p95_ms),
        )
        for line in lines
    ]
    total = (
        "total",
        f"{sum(x.requests for x in lines):,}",
        f"{sum(x.failed for x in lines):,}",
        f"{sum(x.prompt_tokens for x in lines):,}",
        f"{sum(x.completion_tokens for x in lines):,}",
        format_usd(sum(x.cost_usd for x in lines)),
        "",
        "",
    )
    return _table(header, rows, total)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], total: Sequence[str]) -> str:
    """Columns sized to fit, the first left-aligned and the rest right-aligned, with rules
    around the rows and the total below."""
    widths = [max(len(r[i]) for r in (header, *rows, total)) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        out = [cells[0].ljust(widths[0])]
        out += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(r) for r in rows), rule, render(total)])


@dataclass(frozen=True, slots=True)
class FeedbackLine:
    """Votes on one model's answers (by route) over the window."""

    key: str  # "model (route)"
    answers: int  # model answers that offered feedback buttons
    rated: int  # of them, answers with at least one vote
    up: int
    down: int

    @property
    def rated_share(self) -> float | None:
        """The share of answers rated (None without answers)."""
        return self.rated / self.answers if self.answers else None


async def feedback_report(engine: AsyncEngine, *, since: datetime) -> list[FeedbackLine]:
    """Up and down votes, and the share of answers rated, per model and route, for the
    answers given since ``since`` (one vote per person per answer: the latest)."""
    answers = select(RequestRow.route, RequestRow.model, RequestRow.answer_id).where(
        RequestRow.created_at >= since,
        RequestRow.answer_id.is_not(None),
        RequestRow.outcome == "ok",
    )
    votes = (
        select(RequestRow.route, RequestRow.model, VoteRow.answer_id, VoteRow.vote)
        .join(VoteRow, VoteRow.answer_id == RequestRow.answer_id)
        .where(RequestRow.created_at >= since)
    )
    counts: dict[str, list[int]] = {}  # key -> [answers, up, down]
    rated: dict[str, set[str]] = {}
    async with (
        translated_errors("could not read votes", QUERY_TIMEOUT_SECONDS),
        engine.connect() as connection,
    ):
        async for route, model, _answer in await connection.stream(answers):
            counts.setdefault(f"{model} ({route})", [0, 0, 0])[0] += 1
        async for route, model, answer, vote in await connection.stream(votes):
            key = f"{model} ({route})"
            group = counts.setdefault(key, [0, 0, 0])
            group[1 if vote == "up" else 2] += 1
            rated.setdefault(key, set()).add(answer)
    lines = [
        FeedbackLine(key, n, len(rated.get(key, ())), up, down)
        for key, (n, up, down) in counts.items()
    ]
    return sorted(lines, key=lambda line: (-line.answers, line.key))


def format_feedback(lines: Sequence[FeedbackLine]) -> str:
    """The feedback votes as a plain-text table with a total row, for a terminal."""
    header = ("model (route)", "answers", "rated", "rated %", "up", "down")

    def row(key: str, answers: int, rated: int, up: int, down: int) -> tuple[str, ...]:
        share = f"{100 * rated / answers:.0f}%" if answers else "-"
        return (key, f"{answers:,}", f"{rated:,}", share, f"{up:,}", f"{down:,}")

    rows = [row(x.key, x.answers, x.rated, x.up, x.down) for x in lines]
    total = row(
        "total",
        sum(x.answers for x in lines),
        sum(x.rated for x in lines),
        sum(x.up for x in lines),
        sum(x.down for x in lines),
    )
    return _table(header, rows, total)
