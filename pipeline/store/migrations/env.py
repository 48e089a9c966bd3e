"""Alembic environment: runs on the connection `pipeline.store.db.migrate` hands over."""

from __future__ import annotations

from alembic import context

# Imported for their tables: each joins Base.metadata.
import pipeline.store.certificates
import pipeline.store.deliveries
import pipeline.store.domains  # noqa: F401
from pipeline.store.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
