"""City alerts: the durable queue of alerts the hall sends to the city broker (DESIGN §11).

Written in the transaction of the event that raised them (a 差评, its follow-up, an overdue visit …) or
by the clock tick (a device offline over 5 minutes); the uplink sends them in id order and sets
`sent_at` only after the broker's PUBACK, so a WAN cut of days or a kill -9 loses none.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
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
        "city_alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("sent_at", sa.Text),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_city_alerts_sent", "city_alerts", ["sent_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_city_alerts_sent", "city_alerts")
    op.drop_table("city_alerts")
