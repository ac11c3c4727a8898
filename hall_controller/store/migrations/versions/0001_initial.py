"""Initial hall schema: state, append-only event log, tickets, windows, appointments, commands,
upstream outbox and scans.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("hall_state", sa.Column("key", sa.String(32), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("ts", sa.String(40), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("ticket_id", sa.String(36)),
        sa.Column("window_no", sa.Integer),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_events_type_seq", "events", ["type", "seq"])
    op.create_index("ix_events_ticket", "events", ["ticket_id"])
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("prefix", sa.String(4), nullable=False),
        sa.Column("seq_no", sa.Integer, nullable=False),
        sa.Column("number", sa.String(16), nullable=False),
        sa.Column("service", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("window_no", sa.Integer),
        sa.Column("person_key", sa.String(64)),
        sa.Column("issued_at", sa.String(40), nullable=False),
        sa.Column("closed_at", sa.String(40)),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint("day", "epoch", "prefix", "seq_no", name="uq_ticket_number"),
    )
    op.create_index("ix_tickets_open", "tickets", ["closed_at"])
    op.create_index("ix_tickets_day", "tickets", ["day", "epoch"])
    op.create_table("windows", sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("data", sa.Text, nullable=False))
    op.create_table(
        "appointments",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("code", sa.String(64), nullable=False, unique=True),
        sa.Column("day", sa.String(10), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_appointments_day", "appointments", ["day"])
    op.create_table(
        "commands",
        sa.Column("command_id", sa.String(80), primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("reply", sa.Text, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("record_key", sa.String(80), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.String(40)),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", sa.String(40)),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outbox_status_next", "outbox", ["status", "next_attempt_at"])
    op.create_table(
        "scans",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("ticket_id", sa.String(36)),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("uploaded_at", sa.String(40)),
    )


def downgrade() -> None:
    for name in ("scans", "outbox", "commands", "appointments", "windows", "tickets", "events", "hall_state"):
        op.drop_table(name)
