"""Usage ledger: what each request cost (requests.cost_usd).

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add requests.cost_usd; rows recorded before it existed cost 0."""
    # Batch mode: SQLite alters tables by copying them; PostgreSQL gets a plain ALTER.
    with op.batch_alter_table("requests") as batch:
        batch.add_column(
            sa.Column(
                "cost_usd",
                sa.Numeric(14, 8, asdecimal=False),
                nullable=False,
                server_default=sa.text("0"),
            )
        )


def downgrade() -> None:
    """Drop requests.cost_usd."""
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("cost_usd")
