"""Tables of the hall database (SQLAlchemy Core). Alembic migrations create them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from ..upstream.outbox import define_outbox_tables

metadata = MetaData()

hall_state = Table(
    "hall_state", metadata,
    Column("key", String(32), primary_key=True),
    Column("value", Text, nullable=False),
)

# Append-only: rows are inserted, never updated or deleted (the monotonic `seq` is the order).
events = Table(
    "events", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("ts", String(40), nullable=False),
    Column("type", String(40), nullable=False),
    Column("ticket_id", String(36)),
    Column("window_no", Integer),
    Column("payload", Text, nullable=False),
    Index("ix_events_type_seq", "type", "seq"),
    Index("ix_events_ticket", "ticket_id"),
)

tickets = Table(
    "tickets", metadata,
    Column("id", String(36), primary_key=True),
    Column("day", String(10), nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("prefix", String(4), nullable=False),
    Column("seq_no", Integer, nullable=False),
    Column("number", String(16), nullable=False),
    Column("service", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("window_no", Integer),
    Column("person_key", String(64)),
    Column("issued_at", String(40), nullable=False),
    Column("closed_at", String(40)),
    Column("data", Text, nullable=False),
    UniqueConstraint("day", "epoch", "prefix", "seq_no", name="uq_ticket_number"),
    Index("ix_tickets_open", "closed_at"),
    Index("ix_tickets_day", "day", "epoch"),
)

windows = Table(
    "windows", metadata,
    Column("number", Integer, primary_key=True, autoincrement=False),
    Column("data", Text, nullable=False),
)

appointments = Table(
    "appointments", metadata,
    Column("id", String(64), primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("day", String(10), nullable=False),
    Column("status", String(16), nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_appointments_day", "day"),
)

# Replies to commands by their id, so a redelivered command is answered, not executed again.
commands = Table(
    "commands", metadata,
    Column("command_id", String(80), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("reply", Text, nullable=False),
    Index("ix_commands_created", "created_at"),
)

# The upstream outbox and scans are defined by the forwarder's module (one definition).
outbox, scans = define_outbox_tables(metadata)
