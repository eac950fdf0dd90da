"""Moodle course results: each student's course total and course completion.

- `course_results`, one row per live Moodle enrolment of a student (`moodle:<course>:<user>`):
  the gradebook's course total (final grade, its maximum, Moodle's percentage), whether and when
  the course was completed, and the enrollment it belongs to.

Moodle grades are now keyed by grade item (`moodle:<grade item>:<user>`, every kind of item) where
they were keyed by assignment: the first full_sync after the upgrade inserts each Moodle grade
under its new key and soft-deletes the row under its old one, once.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from integration_pipelines.lib.warehouse.types import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "course_results",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("result_key", sa.String(length=96), nullable=False),
        sa.Column("student_key", sa.String(length=96), nullable=True),
        sa.Column("student_zoho_id", sa.String(length=32), nullable=True),
        sa.Column("moodle_user_id", sa.BigInteger(), nullable=True),
        sa.Column("moodle_course_id", sa.BigInteger(), nullable=True),
        sa.Column("enrollment_key", sa.String(length=96), nullable=True),
        sa.Column("final_grade", sa.Float(), nullable=True),
        sa.Column("final_grade_max", sa.Float(), nullable=True),
        sa.Column("final_percentage", sa.Float(), nullable=True),
        sa.Column("completed", sa.Boolean(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "result_key"),
    )
    for column in ("student_key", "moodle_user_id"):
        op.create_index(f"ix_course_results_{column}", "course_results", ["tenant_id", column])


def downgrade() -> None:
    for column in ("student_key", "moodle_user_id"):
        op.drop_index(f"ix_course_results_{column}", table_name="course_results")
    op.drop_table("course_results")
