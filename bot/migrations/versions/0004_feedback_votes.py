"""Feedback on answers: requests.answer_id, the votes table (one per person per answer) and
answer_messages (which posted message shows which answer, for Teams' feedback).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the answer id to requests; create votes and answer_messages."""
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("answer_id", sa.String(64), nullable=True))
        batch.create_index("ix_requests_answer_id", ["answer_id"])
    op.create_table(
        "votes",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("workspace", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("vote", sa.String(8), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_votes"),
        sa.UniqueConstraint(
            "answer_id", "platform", "user_id", name="uq_votes_answer_id_platform_user_id"
        ),
    )
    op.create_table(
        "answer_messages",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("platform", sa.String(32), nullable=False),
        sa.Column("message", sa.String(1024), nullable=False),
        sa.Column("answer_id", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_answer_messages"),
        sa.UniqueConstraint("platform", "message", name="uq_answer_messages_platform_message"),
    )


def downgrade() -> None:
    """Drop answer_messages, votes and requests.answer_id."""
    op.drop_table("answer_messages")
    op.drop_table("votes")
    with op.batch_alter_table("requests") as batch:
        batch.drop_index("ix_requests_answer_id")
        batch.drop_column("answer_id")
