"""The events log: every webhook event once, with what processing it did.

`integration_events_log` (lib/warehouse/schema.py) is keyed by `event_id`: inserting an event a
second time does nothing, which is how `process_events` applies each event once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from integration_pipelines.lib.warehouse.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "integration_events_log",
        sa.Column("event_id", sa.String(length=128), primary_key=True),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("sender", sa.String(length=32), nullable=False),
        sa.Column("event_type", sa.String(length=100), nullable=False),
        sa.Column("record_id", sa.String(length=128)),
        sa.Column("user_id", sa.BigInteger()),
        sa.Column("event_time", UTCDateTime(), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("next_attempt_at", UTCDateTime()),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("processed_at", UTCDateTime()),
    )
    op.create_index("ix_integration_events_log_status", "integration_events_log", ["status", "next_attempt_at"])
    op.create_index(
        "ix_integration_events_log_received", "integration_events_log", ["tenant_id", "received_at", "event_id"]
    )
    op.create_index("ix_integration_events_log_user", "integration_events_log", ["tenant_id", "user_id"])


def downgrade() -> None:
    op.drop_table("integration_events_log")
