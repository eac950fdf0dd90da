"""Raw landing records, the canonical students table and per-stream sync state.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from integration_pipelines.lib.warehouse.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _bookkeeping_columns() -> list[sa.Column]:
    return [
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "raw_records",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("entity", sa.String(64), primary_key=True),
        sa.Column("record_id", sa.String(64), primary_key=True),
        sa.Column("payload", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        *_bookkeeping_columns(),
    )
    op.create_index(
        "ix_raw_records_modified", "raw_records", ["tenant_id", "source", "entity", "source_modified_at"]
    )
    op.create_table(
        "students",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("student_key", sa.String(64), primary_key=True),
        sa.Column("zoho_id", sa.String(32)),
        sa.Column("moodle_user_id", sa.BigInteger),
        sa.Column("student_number", sa.String(64)),
        sa.Column("first_name", sa.Text),
        sa.Column("last_name", sa.Text),
        sa.Column("email", sa.Text),
        sa.Column("program_zoho_id", sa.String(32)),
        sa.Column("status", sa.String(32)),
        sa.Column("identity_match", sa.String(16)),
        *_bookkeeping_columns(),
    )
    op.create_index("ix_students_moodle_user_id", "students", ["tenant_id", "moodle_user_id"])
    op.create_index("ix_students_zoho_id", "students", ["tenant_id", "zoho_id"])
    op.create_index("ix_students_email", "students", ["tenant_id", "email"])
    op.create_table(
        "sync_state",
        sa.Column("tenant_id", sa.String(64), primary_key=True),
        sa.Column("stream", sa.String(64), primary_key=True),
        sa.Column("last_synced_at", UTCDateTime(), nullable=False),
        sa.Column("rows_read", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sync_state")
    op.drop_index("ix_students_email", "students")
    op.drop_index("ix_students_zoho_id", "students")
    op.drop_index("ix_students_moodle_user_id", "students")
    op.drop_table("students")
    op.drop_index("ix_raw_records_modified", "raw_records")
    op.drop_table("raw_records")
