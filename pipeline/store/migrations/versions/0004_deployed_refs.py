"""deployed_refs: the commit each webhook-tracked ref last deployed (replay protection)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployed_refs",
        sa.Column("service", sa.String(255), primary_key=True),
        sa.Column("ref", sa.String(255), primary_key=True),
        sa.Column("sha", sa.String(40), nullable=False),
        sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deployed_refs")
