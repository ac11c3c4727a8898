"""Visit tokens: the sha256 of the token a ticket's QR code carries to the visitor's phone page.

Only the hash is stored (domain/visit.py): the clear token exists on the printed ticket and in the
kiosk's reply, never in the database. Indexed for the lookup of recently closed visits on start.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tickets", sa.Column("visit_token_hash", sa.String(64)))
    op.create_index("ix_tickets_visit_token", "tickets", ["visit_token_hash"])


def downgrade() -> None:
    op.drop_index("ix_tickets_visit_token", "tickets")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("visit_token_hash")
