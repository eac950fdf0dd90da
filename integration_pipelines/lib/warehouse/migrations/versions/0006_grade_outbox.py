"""The grade outbox: BTEC grades written back to Zoho, one row per Zoho grade record.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from integration_pipelines.lib.warehouse.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grade_outbox",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("record_key", sa.String(length=96), nullable=False),
        sa.Column("grade_key", sa.String(length=96), nullable=False),
        sa.Column("student_zoho_id", sa.String(length=32), nullable=False),
        sa.Column("unit_zoho_id", sa.String(length=32), nullable=False),
        sa.Column("btec_grade", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("sent_fingerprint", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("zoho_id", sa.String(length=32), nullable=True),
        sa.Column("zoho_grade", sa.String(length=16), nullable=True),
        sa.Column("zoho_modified_at", UTCDateTime(), nullable=True),
        sa.Column("moodle_graded_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "record_key"),
    )
    op.create_index("ix_grade_outbox_status", "grade_outbox", ["tenant_id", "status"])
    op.create_index("ix_grade_outbox_zoho_id", "grade_outbox", ["tenant_id", "zoho_id"])


def downgrade() -> None:
    op.drop_index("ix_grade_outbox_zoho_id", table_name="grade_outbox")
    op.drop_index("ix_grade_outbox_status", table_name="grade_outbox")
    op.drop_table("grade_outbox")
