"""Desired state on disk: the database (SQLite or PostgreSQL) and the files beside it.

    models       tables: services, revisions, builds, deliveries
    db           engine and alembic migrations (migrations/ holds them)
    state        Store: every read and write of desired state
    deliveries   webhook delivery ids (replay protection)
    secrets      key/value sets, versioned, encrypted at rest
    domains      domain mappings: a custom host -> a service (Knative's DomainMapping)
    certificates the certificates HAProxy serves, their chains and order outcomes (keys on disk)
    repos        one bare git repository per service
    permissions  the data dir is its owner's alone: umask 077, what exists tightened
    backups      the database and the files beside it, in one archive, and back
"""
