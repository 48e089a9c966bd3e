"""domain_mappings and certificates: custom hosts per service; the certificates HAProxy serves

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "domain_mappings",
        sa.Column("host", sa.String(253), primary_key=True),
        sa.Column("service", sa.String(63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_domain_mappings_service", "domain_mappings", ["service"])
    op.create_table(
        "certificates",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("hosts", sa.JSON(), nullable=False),
        sa.Column("issuer", sa.String(16), nullable=False),
        sa.Column("chain_pem", sa.Text(), nullable=False),
        sa.Column("serial", sa.String(64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("renew_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("certificates")
    op.drop_index("ix_domain_mappings_service", table_name="domain_mappings")
    op.drop_table("domain_mappings")
