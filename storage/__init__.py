"""Persistence: tables, the request store, the audit log, the outbox, migrations."""
