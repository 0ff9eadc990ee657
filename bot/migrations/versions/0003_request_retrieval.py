"""Usage ledger: team knowledge per request (requests.passages, requests.retrieval_ms).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add how many indexed passages the model was given and how long retrieval took."""
    with op.batch_alter_table("requests") as batch:
        batch.add_column(
            sa.Column("passages", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("retrieval_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop requests.passages and requests.retrieval_ms."""
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("retrieval_ms")
        batch.drop_column("passages")
