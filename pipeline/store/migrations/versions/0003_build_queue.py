"""builds: queued builds and when each started (the queue wait is created_at..started_at)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_builds_status", "builds", ["status"])


def downgrade() -> None:
    op.drop_index("ix_builds_status", table_name="builds")
    with op.batch_alter_table("builds") as batch:
        batch.drop_column("started_at")
