"""Analytics for the team lead: what the ledger did not hold (the channel, what retrieval
found, the redacted question when kept; on votes, the answer's model and route), daily and
monthly summaries the page adds up instead of the ledger's rows (filled here from the rows
already there), an index on votes' time, and the sign-in tables (one-time codes, the
session key).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = sa.DateTime(timezone=True)


# Two significant digits of a latency in ms (bot.rollups.latency_bucket), in SQL.
_BUCKET = (
    "CASE WHEN {ms} < 1000 THEN {ms} / 10 * 10 WHEN {ms} < 10000 THEN {ms} / 100 * 100 "
    "WHEN {ms} < 100000 THEN {ms} / 1000 * 1000 ELSE {ms} / 10000 * 10000 END"
)


def _day_month_and_iso() -> tuple[str, str, str]:
    """SQL for a row's UTC day, its UTC month ('YYYY-MM') and its time as ISO 8601 text."""
    if op.get_bind().dialect.name == "postgresql":
        utc = "(created_at AT TIME ZONE 'UTC')"
        return (
            f"CAST({utc} AS DATE)",
            f"to_char({utc}, 'YYYY-MM')",
            f'to_char({utc}, \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\')',
        )
    # SQLite keeps naive UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return "date(created_at)", "substr(created_at, 1, 7)", "replace(created_at, ' ', 'T') || 'Z'"


def _summarise_existing_rows() -> None:
    """Fill the daily summaries from the ledger's rows (rows older than this migration
    hold no channel, retrieval result or cited documents: nothing for those)."""
    day, month, iso = _day_month_and_iso()
    op.execute(
        "INSERT INTO usage_daily (day, platform, route, model, knowledge, outcome, questions) "
        f"SELECT {day}, platform, route, model, coalesce(knowledge, ''), outcome, count(*) "
        "FROM requests GROUP BY 1, 2, 3, 4, 5, 6"
    )
    op.execute(
        "INSERT INTO people_daily (day, platform, workspace, user_id, questions, "
        "premium_questions, cost_usd, last_at) "
        f"SELECT {day}, platform, workspace, user_id, count(*), "
        "sum(CASE WHEN route = 'premium' THEN 1 ELSE 0 END), coalesce(sum(cost_usd), 0), "
        f"max({iso}) FROM requests GROUP BY 1, 2, 3, 4"
    )
    op.execute(
        "INSERT INTO spend_monthly (month, platform, workspace, user_id, cost_usd, questions) "
        f"SELECT {month}, platform, workspace, user_id, coalesce(sum(cost_usd), 0), count(*) "
        "FROM requests WHERE route = 'premium' OR cost_usd > 0 GROUP BY 1, 2, 3, 4"
    )
    # Votes keep their answer's model and route.
    for column in ("model", "route"):
        op.execute(
            f"UPDATE votes SET {column} = (SELECT r.{column} FROM requests r "
            "WHERE r.answer_id = votes.answer_id LIMIT 1)"
        )
    for measure, column, where in (
        ("total", "latency_ms", ""),
        ("first_token", "first_token_ms", " AND first_token_ms IS NOT NULL"),
    ):
        bucket = _BUCKET.format(ms=column)
        op.execute(
            "INSERT INTO latency_daily (day, route, measure, bucket_ms, answers) "
            f"SELECT {day}, route, '{measure}', {bucket}, count(*) FROM requests "
            f"WHERE outcome = 'ok'{where} GROUP BY 1, 2, 4"
        )


def upgrade() -> None:
    """Add requests.channel, .knowledge, .question and votes' time index; create the daily
    summaries (filled from the rows there) and the sign-in tables."""
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("channel", sa.String(255), nullable=True))
        batch.add_column(sa.Column("knowledge", sa.String(16), nullable=True))
        batch.add_column(sa.Column("question", sa.Text(), nullable=True))
    with op.batch_alter_table("votes") as batch:
        batch.add_column(sa.Column("model", sa.String(255), nullable=True))
        batch.add_column(sa.Column("route", sa.String(32), nullable=True))
        batch.create_index("ix_votes_created_at", ["created_at"])
    op.create_table(
        "usage_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("route", sa.String(32), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("knowledge", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("questions", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "platform", "route", "model", "knowledge", "outcome", name="pk_usage_daily"
        ),
    )
    op.create_table(
        "people_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("workspace", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("questions", sa.Integer(), nullable=False),
        sa.Column("premium_questions", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(14, 8), nullable=False),
        sa.Column("last_at", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("day", "platform", "workspace", "user_id", name="pk_people_daily"),
    )
    op.create_table(
        "spend_monthly",
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("workspace", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("cost_usd", sa.Numeric(14, 8), nullable=False),
        sa.Column("questions", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "month", "platform", "workspace", "user_id", name="pk_spend_monthly"
        ),
    )
    op.create_table(
        "latency_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("route", sa.String(32), nullable=False),
        sa.Column("measure", sa.String(16), nullable=False),
        sa.Column("bucket_ms", sa.Integer(), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "route", "measure", "bucket_ms", name="pk_latency_daily"),
    )
    op.create_table(
        "gaps_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(255), nullable=False),
        sa.Column("no_match", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "platform", "channel", name="pk_gaps_daily"),
    )
    op.create_table(
        "documents_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "title", "url", name="pk_documents_daily"),
    )
    op.create_table(
        "admin_codes",
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("code_hash", name="pk_admin_codes"),
    )
    op.create_table(
        "admin_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_admin_secrets"),
    )
    _summarise_existing_rows()


def downgrade() -> None:
    """Drop what upgrade added."""
    for table in (
        "admin_secrets",
        "admin_codes",
        "documents_daily",
        "gaps_daily",
        "latency_daily",
        "spend_monthly",
        "people_daily",
        "usage_daily",
    ):
        op.drop_table(table)
    with op.batch_alter_table("votes") as batch:
        batch.drop_index("ix_votes_created_at")
        batch.drop_column("route")
        batch.drop_column("model")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("question")
        batch.drop_column("knowledge")
        batch.drop_column("channel")
