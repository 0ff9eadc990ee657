"""The page's tables, defined once: shown as HTML and downloaded as CSV
(`/admin/export/NAME.csv`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from bot.analytics import Analytics
from bot.budget import format_usd

Kind = Literal["text", "int", "usd", "ms", "share", "date", "time", "url"]


@dataclass(frozen=True, slots=True)
class Column:
    """A column: its heading and how its values are shown."""

    heading: str
    kind: Kind = "text"


@dataclass(frozen=True, slots=True)
class Table:
    """One table of the page."""

    name: str  # the CSV's file name, without `.csv`
    title: str
    columns: Sequence[Column]
    rows: Sequence[Sequence[Any]]
    empty: str = "Nothing in this period."


def tables(analytics: Analytics, *, show_questions: bool) -> dict[str, Table]:
    """Every table of the page, by name."""
    a = analytics
    down_columns = [
        Column("answered (UTC)", "time"),
        Column("platform"),
        Column("channel"),
        Column("model"),
        Column("route"),
        Column("thumbs down", "int"),
        Column("thumbs up", "int"),
    ]
    if show_questions:
        down_columns.append(Column("question (redacted)"))
    found = [
        Table(
            "questions_per_day",
            "Questions per day",
            [
                Column("day", "date"),
                Column("platform"),
                Column("route"),
                Column("questions", "int"),
            ],
            [(d.day, d.platform, d.route, d.questions) for d in a.per_day],
        ),
        Table(
            "people",
            "People who asked",
            [
                Column("platform"),
                Column("user"),
                Column("questions", "int"),
                Column("premium questions", "int"),
                Column("premium cost", "usd"),
                Column("last asked (UTC)", "time"),
            ],
            [
                (p.platform, p.user, p.questions, p.premium_questions, p.cost_usd, p.last_asked)
                for p in a.people
            ],
        ),
        Table(
            "premium_spend",
            "Premium cost by month, against the budgets",
            [
                Column("month"),
                Column("person or workspace"),
                Column("who"),
                Column("cost", "usd"),
                Column("monthly budget", "usd"),
                Column("budget used", "share"),
            ],
            [
                (s.month, s.kind, s.who, s.cost_usd, s.budget_usd or None, s.budget_share)
                for s in a.spend
            ],
            "No premium questions in these months.",
        ),
        Table(
            "latency",
            "Time to the first token and to the whole answer",
            [
                Column("route"),
                Column("answers", "int"),
                Column("first token, median", "ms"),
                Column("first token, 95th pct", "ms"),
                Column("whole answer, median", "ms"),
                Column("whole answer, 95th pct", "ms"),
            ],
            [
                (x.route, x.answers, x.first_token_p50, x.first_token_p95, x.total_p50, x.total_p95)
                for x in a.latency
            ],
        ),
        Table(
            "votes",
            "Votes on the answers",
            [
                Column("model"),
                Column("route"),
                Column("answers", "int"),
                Column("thumbs up", "int"),
                Column("thumbs down", "int"),
                Column("thumbs up share", "share"),
            ],
            [(v.model, v.route, v.answers, v.up, v.down, v.up_share) for v in a.votes],
        ),
        Table(
            "documents",
            "Most cited documents",
            [Column("document"), Column("link", "url"), Column("answers citing it", "int")],
            [(d.title, d.url, d.answers) for d in a.documents],
            "No answer cited an indexed document in this period.",
        ),
        Table(
            "gaps_by_day",
            "Knowledge gaps by day",
            [
                Column("day", "date"),
                Column("answers that searched", "int"),
                Column("found no matching source", "int"),
            ],
            [(g.day, g.searched, g.no_match) for g in a.gaps_by_day],
            "No answer searched the team knowledge in this period.",
        ),
        Table(
            "gaps_by_channel",
            "Knowledge gaps by channel",
            [Column("platform"), Column("channel"), Column("found no matching source", "int")],
            [(g.platform, g.channel, g.no_match) for g in a.gaps_by_channel],
            "Every answer that searched found a matching source.",
        ),
        Table(
            "down_voted",
            "Answers voted down",
            down_columns,
            [
                (d.created_at, d.platform, d.channel, d.model, d.route, d.down, d.up)
                + ((d.question or "",) if show_questions else ())
                for d in a.down_voted
            ],
            "No answer was voted down in this period.",
        ),
    ]
    return {table.name: table for table in found}


def show(value: Any, kind: Kind) -> str:
    """A cell for people (the HTML table)."""
    if value is None:
        return "–"
    if kind == "int":
        return f"{value:,}"
    if kind == "usd":
        return format_usd(float(value))
    if kind == "ms":
        return f"{value / 1000:.2f} s"
    if kind == "share":
        return f"{100 * value:.0f}%"
    if kind == "time" and isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if kind == "date" and isinstance(value, date):
        return value.isoformat()
    return str(value)


def _csv_cell(value: Any, kind: Kind) -> str:
    if value is None:
        return ""
    if kind == "time" and isinstance(value, datetime):
        return value.isoformat()
    if kind == "date" and isinstance(value, date):
        return value.isoformat()
    if kind == "usd":
        return f"{float(value):.6f}"
    if kind == "share":
        return f"{float(value):.4f}"
    text = str(value)
    # A spreadsheet runs a cell starting with one of these as a formula.
    return "'" + text if kind in ("text", "url") and text[:1] in ("=", "+", "-", "@") else text


def to_csv(table: Table) -> str:
    """The table as CSV: a header row, then raw values (ms, USD, shares as fractions)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    headings = [
        c.heading + (" (ms)" if c.kind == "ms" else " (USD)" if c.kind == "usd" else "")
        for c in table.columns
    ]
    writer.writerow(headings)
    for row in table.rows:
        writer.writerow([_csv_cell(v, c.kind) for v, c in zip(row, table.columns, strict=True)])
    return out.getvalue()
