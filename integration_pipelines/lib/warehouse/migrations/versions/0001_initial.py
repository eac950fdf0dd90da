"""The initial schema: raw landing records, the eight canonical tables and per-stream sync state.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from integration_pipelines.lib.warehouse.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "classes",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("class_key", sa.String(length=96), nullable=False),
        sa.Column("zoho_id", sa.String(length=32), nullable=True),
        sa.Column("program_zoho_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("moodle_course_id", sa.BigInteger(), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "class_key"),
    )
    op.create_index("ix_classes_moodle_course_id", "classes", ["tenant_id", "moodle_course_id"], unique=False)
    op.create_table(
        "enrollments",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("enrollment_key", sa.String(length=96), nullable=False),
        sa.Column("zoho_id", sa.String(length=32), nullable=True),
        sa.Column("student_key", sa.String(length=96), nullable=True),
        sa.Column("student_zoho_id", sa.String(length=32), nullable=True),
        sa.Column("moodle_user_id", sa.BigInteger(), nullable=True),
        sa.Column("class_key", sa.String(length=96), nullable=True),
        sa.Column("class_zoho_id", sa.String(length=32), nullable=True),
        sa.Column("moodle_course_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("enrolled_on", sa.Date(), nullable=True),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "enrollment_key"),
    )
    op.create_index("ix_enrollments_class_key", "enrollments", ["tenant_id", "class_key"], unique=False)
    op.create_index(
        "ix_enrollments_moodle_course_id_moodle_user_id",
        "enrollments",
        ["tenant_id", "moodle_course_id", "moodle_user_id"],
        unique=False,
    )
    op.create_index("ix_enrollments_student_key", "enrollments", ["tenant_id", "student_key"], unique=False)
    op.create_table(
        "grades",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("grade_key", sa.String(length=96), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=True),
        sa.Column("zoho_id", sa.String(length=32), nullable=True),
        sa.Column("student_key", sa.String(length=96), nullable=True),
        sa.Column("student_zoho_id", sa.String(length=32), nullable=True),
        sa.Column("moodle_user_id", sa.BigInteger(), nullable=True),
        sa.Column("unit_zoho_id", sa.String(length=32), nullable=True),
        sa.Column("moodle_course_id", sa.BigInteger(), nullable=True),
        sa.Column("moodle_grade_item_id", sa.BigInteger(), nullable=True),
        sa.Column("moodle_assignment_id", sa.BigInteger(), nullable=True),
        sa.Column("raw_grade", sa.Float(), nullable=True),
        sa.Column("grade_max", sa.Float(), nullable=True),
        sa.Column("percentage", sa.Float(), nullable=True),
        sa.Column("btec_grade", sa.String(length=16), nullable=True),
        sa.Column("btec_equivalent", sa.String(length=16), nullable=True),
        sa.Column("graded_at", UTCDateTime(), nullable=True),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "grade_key"),
    )
    op.create_index("ix_grades_moodle_user_id", "grades", ["tenant_id", "moodle_user_id"], unique=False)
    op.create_index("ix_grades_student_key", "grades", ["tenant_id", "student_key"], unique=False)
    op.create_table(
        "payments",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("payment_key", sa.String(length=96), nullable=False),
        sa.Column("zoho_id", sa.String(length=32), nullable=True),
        sa.Column("student_key", sa.String(length=96), nullable=True),
        sa.Column("student_zoho_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("method", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("paid_on", sa.Date(), nullable=True),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "payment_key"),
    )
    op.create_index("ix_payments_student_key", "payments", ["tenant_id", "student_key"], unique=False)
    op.create_table(
        "programs",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("program_key", sa.String(length=96), nullable=False),
        sa.Column("zoho_id", sa.String(length=32), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("level", sa.String(length=32), nullable=True),
        sa.Column("credits", sa.Integer(), nullable=True),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "program_key"),
    )
    op.create_table(
        "raw_records",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("entity", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column(
            "payload", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "source", "entity", "record_id"),
    )
    op.create_index(
        "ix_raw_records_modified", "raw_records", ["tenant_id", "source", "entity", "source_modified_at"], unique=False
    )
    op.create_table(
        "registrations",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("registration_key", sa.String(length=96), nullable=False),
        sa.Column("zoho_id", sa.String(length=32), nullable=True),
        sa.Column("student_key", sa.String(length=96), nullable=True),
        sa.Column("student_zoho_id", sa.String(length=32), nullable=True),
        sa.Column("unit_zoho_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "registration_key"),
    )
    op.create_index("ix_registrations_student_key", "registrations", ["tenant_id", "student_key"], unique=False)
    op.create_table(
        "students",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("student_key", sa.String(length=96), nullable=False),
        sa.Column("zoho_id", sa.String(length=32), nullable=True),
        sa.Column("moodle_user_id", sa.BigInteger(), nullable=True),
        sa.Column("student_number", sa.String(length=64), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("program_zoho_id", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("identity_match", sa.String(length=16), nullable=True),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "student_key"),
    )
    op.create_index("ix_students_email", "students", ["tenant_id", "email"], unique=False)
    op.create_index("ix_students_moodle_user_id", "students", ["tenant_id", "moodle_user_id"], unique=False)
    op.create_index("ix_students_zoho_id", "students", ["tenant_id", "zoho_id"], unique=False)
    op.create_table(
        "sync_state",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("last_synced_at", UTCDateTime(), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("watermark", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "stream"),
    )
    op.create_table(
        "units",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("unit_key", sa.String(length=96), nullable=False),
        sa.Column("zoho_id", sa.String(length=32), nullable=True),
        sa.Column("program_zoho_id", sa.String(length=32), nullable=True),
        sa.Column("code", sa.String(length=64), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("credits", sa.Integer(), nullable=True),
        sa.Column("fingerprint", sa.String(length=32), nullable=False),
        sa.Column("source_modified_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("deleted_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "unit_key"),
    )
    op.create_index("ix_units_code", "units", ["tenant_id", "code"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_units_code", table_name="units")
    op.drop_table("units")
    op.drop_table("sync_state")
    op.drop_index("ix_students_zoho_id", table_name="students")
    op.drop_index("ix_students_moodle_user_id", table_name="students")
    op.drop_index("ix_students_email", table_name="students")
    op.drop_table("students")
    op.drop_index("ix_registrations_student_key", table_name="registrations")
    op.drop_table("registrations")
    op.drop_index("ix_raw_records_modified", table_name="raw_records")
    op.drop_table("raw_records")
    op.drop_table("programs")
    op.drop_index("ix_payments_student_key", table_name="payments")
    op.drop_table("payments")
    op.drop_index("ix_grades_student_key", table_name="grades")
    op.drop_index("ix_grades_moodle_user_id", table_name="grades")
    op.drop_table("grades")
    op.drop_index("ix_enrollments_student_key", table_name="enrollments")
    op.drop_index("ix_enrollments_moodle_course_id_moodle_user_id", table_name="enrollments")
    op.drop_index("ix_enrollments_class_key", table_name="enrollments")
    op.drop_table("enrollments")
    op.drop_index("ix_classes_moodle_course_id", table_name="classes")
    op.drop_table("classes")
