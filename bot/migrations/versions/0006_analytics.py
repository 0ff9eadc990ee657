"""Analytics for the team lead: what the ledger did not hold (the channel, what retrieval
found, the redacted question when kept, the documents an answer cited), indexes for the
page's aggregates, and the sign-in tables (one-time codes, the session key).

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add requests.channel, .knowledge, .question and the page's indexes; create
    answer_sources, admin_codes and admin_secrets."""
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("channel", sa.String(255), nullable=True))
        batch.add_column(sa.Column("knowledge", sa.String(16), nullable=True))
        batch.add_column(sa.Column("question", sa.Text(), nullable=True))
        batch.create_index(
            "ix_requests_created_at_platform_route",
            ["created_at", "platform", "route", "knowledge", "user_id"],
        )
        batch.create_index("ix_requests_route_created_at", ["route", "created_at"])
        batch.create_index("ix_requests_knowledge_created_at", ["knowledge", "created_at"])
    op.create_table(
        "answer_sources",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_answer_sources"),
    )
    op.create_index("ix_answer_sources_created_at", "answer_sources", ["created_at"])
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


def downgrade() -> None:
    """Drop what upgrade added."""
    op.drop_table("admin_secrets")
    op.drop_table("admin_codes")
    op.drop_index("ix_answer_sources_created_at", table_name="answer_sources")
    op.drop_table("answer_sources")
    with op.batch_alter_table("requests") as batch:
        batch.drop_index("ix_requests_knowledge_created_at")
        batch.drop_index("ix_requests_route_created_at")
        batch.drop_index("ix_requests_created_at_platform_route")
        batch.drop_column("question")
        batch.drop_column("knowledge")
        batch.drop_column("channel")
