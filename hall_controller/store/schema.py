"""Tables of the hall database (SQLAlchemy Core). Alembic migrations create them.

Every table has its one definition here, the upstream outbox included: the store writes outbox rows
in the transaction that closes a visit, and the forwarder (hall_controller.upstream) reads them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

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
    Column("visit_token_hash", String(64)),     # sha256 of the phone page's token (domain/visit.py), never the token
    UniqueConstraint("day", "epoch", "prefix", "seq_no", name="uq_ticket_number"),
    Index("ix_tickets_open", "closed_at"),
    Index("ix_tickets_day", "day", "epoch"),
    Index("ix_tickets_visit_token", "visit_token_hash"),
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

# Rows waiting to be sent upstream, and the scan images they reference. Times are `db_time` text.
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("record_key", Text, nullable=False, unique=True),
    Column("kind", Text, nullable=False),
    Column("created_at", Text),
    Column("payload", Text),
    Column("status", Text, nullable=False, default="pending"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Text),
    Column("last_error", Text),
    Column("delivered_at", Text),
    Index("ix_outbox_status_next", "status", "next_attempt_at"),
    sqlite_autoincrement=True,  # ids are never reused, so id order stays creation order
)

scans = Table(
    "scans", metadata,
    Column("sha256", Text, primary_key=True),
    Column("ticket_id", Text),
    Column("content_type", Text),
    Column("size", Integer),
    Column("data", LargeBinary),
    Column("created_at", Text),
    Column("uploaded_at", Text),
)

# The roster `hallctl staff` manages, over the config's `staff:` (DB wins by id; NULL = the config's
# value). `windows` is a JSON list of window numbers, NULL or [] = any window.
staff = Table(
    "staff", metadata,
    Column("id", String(64), primary_key=True),
    Column("job_number", String(16)),
    Column("name", String(64)),
    Column("position", String(32)),
    Column("windows", Text),
    Column("active", Boolean),
    Column("pin_hash", Text),
    Column("updated_at", String(40), nullable=False),
)

# Alerts for the city broker (DESIGN §11, hall_controller.uplink): written in the transaction of the
# event that raised them, sent in `id` order at QoS 1, `sent_at` set only after the broker's PUBACK;
# sent rows are purged after a week. `alert_id` is the dedupe key the city sees.
city_alerts = Table(
    "city_alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", String(36), nullable=False),
    Column("type", String(32), nullable=False),
    Column("created_at", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("sent_at", Text),
    Index("ix_city_alerts_sent", "sent_at", "id"),
    sqlite_autoincrement=True,  # ids are never reused: id order is the order they were raised
)


def db_time(moment: datetime) -> str:
    """The stored form of an outbox time: UTC ISO-8601 with microseconds, fixed width, so that text
    order is time order on SQLite and PostgreSQL alike. Write outbox times only through this."""
    if moment.tzinfo is None:
        raise ValueError("outbox times must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
