"""Alembic environment: runs on the connection handed over by hall_controller.store.upgrade."""

from __future__ import annotations

from alembic import context

from hall_controller.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `hallctl db upgrade` (hall_controller.store.upgrade)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
