"""The canonical warehouse schema, as SQLAlchemy Core tables.

Every canonical table carries the same bookkeeping columns:
- `tenant_id`: one warehouse can hold several colleges;
- the source ids (`zoho_id`, Moodle ids) next to a stable natural key;
- `fingerprint`: a hash of the business columns, so an unchanged record costs no write;
- `source_modified_at`: when the source last changed the record; an older update never
  overwrites a newer one;
- `created_at` / `updated_at`: when *we* first wrote and last changed the row;
- `deleted_at`: soft delete; rows are never removed by a sync.

The schema is applied by the alembic migrations in `migrations/`, never by `create_all`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import JSON, BigInteger, Boolean, Column, Date, Float, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import FromClause

from integration_pipelines.lib.warehouse.sql import json_integer
from integration_pipelines.lib.warehouse.types import Money, UTCDateTime

metadata = MetaData()

BOOKKEEPING_COLUMNS = ("fingerprint", "source_modified_at", "created_at", "updated_at", "deleted_at")


def _bookkeeping_columns() -> list[Column]:
    return [
        Column("fingerprint", String(32), nullable=False),
        Column("source_modified_at", UTCDateTime(), nullable=False),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
        Column("deleted_at", UTCDateTime(), nullable=True),
    ]


# Source records as the APIs returned them, one row per record. Raw assets land here and
# canonical assets read from here, so a transform can be re-run without calling the sources again.
raw_records = Table(
    "raw_records",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("source", String(16), primary_key=True),  # moodle | zoho
    Column("entity", String(64), primary_key=True),  # e.g. users, Students
    Column("record_id", String(64), primary_key=True),
    Column("payload", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    *_bookkeeping_columns(),
    # Canonical steps read the records written since their watermark, oldest first.
    Index("ix_raw_records_changes", "tenant_id", "source", "entity", "updated_at"),
)


# A Moodle user's enrolments and grades, found without a pass over every one: whether a user
# whose enrolments changed still holds a student role anywhere, and which enrolments and grades
# a change to a student reaches.
def moodle_user_of(raw: FromClause = raw_records):
    """The user a raw Moodle record (of `raw_records` or an alias of it) is about, as indexed."""
    return json_integer(raw.c.payload, "userid")


def is_moodle_enrolment(raw: FromClause = raw_records):
    return (raw.c.source == "moodle") & (raw.c.entity == "enrolments")


# Without `source` among its columns: PostgreSQL drops the query's `source = 'moodle'`, which the
# index's predicate implies, and could then seek no further than the tenant (migration 0009).
Index(
    "ix_raw_records_moodle_user",
    raw_records.c.tenant_id,
    raw_records.c.entity,
    moodle_user_of(),
    sqlite_where=raw_records.c.source == "moodle",
    postgresql_where=raw_records.c.source == "moodle",
)


def canonical_table(
    name: str, key: str, *columns: Column, indexes: tuple[tuple[str, ...], ...] = (), key_type=None
) -> Table:
    """A canonical table: tenant and natural key, business columns, then the bookkeeping columns."""
    return Table(
        name,
        metadata,
        Column("tenant_id", String(64), primary_key=True),
        Column(key, key_type if key_type is not None else String(96), primary_key=True),
        *columns,
        *_bookkeeping_columns(),
        *(Index(f"ix_{name}_{'_'.join(cols)}", "tenant_id", *cols) for cols in indexes),
    )


ZOHO_ID = String(32)


def mapped(*, required: bool = False) -> dict:
    """`info` of a column a college's field mapping fills from its Zoho module (lib/mapping.py).
    A required column is one other tables join on, or a mart cannot do without: a mapping must
    name it. The kind of value it takes follows from its type (`column_kind`)."""
    return {"mapped": True, "required": required}


programs = canonical_table(
    "programs",
    "program_key",
    Column("zoho_id", ZOHO_ID),
    Column("code", String(64), info=mapped(required=True)),
    Column("name", Text, info=mapped()),
    Column("level", String(32), info=mapped()),
    Column("credits", Integer, info=mapped()),
    indexes=(("zoho_id",),),  # students name their programme by it
)
units = canonical_table(
    "units",
    "unit_key",
    Column("zoho_id", ZOHO_ID),
    Column("program_zoho_id", ZOHO_ID, info=mapped(required=True)),
    Column("code", String(64), info=mapped(required=True)),
    Column("name", Text, info=mapped()),
    Column("credits", Integer, info=mapped(required=True)),
    indexes=(("code",), ("zoho_id",)),  # grades and registrations name their unit by its Zoho id
)
classes = canonical_table(
    "classes",
    "class_key",
    Column("zoho_id", ZOHO_ID),
    Column("program_zoho_id", ZOHO_ID, info=mapped(required=True)),
    Column("name", Text, info=mapped()),
    Column("moodle_course_id", BigInteger, info=mapped(required=True)),
    Column("start_date", Date, info=mapped()),
    Column("end_date", Date, info=mapped()),
    indexes=(("moodle_course_id",),),
)
students = canonical_table(
    # `zoho:<id>` for anyone admissions knows, `moodle:<id>` for a Moodle-only account.
    "students",
    "student_key",
    Column("zoho_id", ZOHO_ID),
    Column("moodle_user_id", BigInteger),
    Column("student_number", String(64), info=mapped(required=True)),
    Column("first_name", Text, info=mapped()),
    Column("last_name", Text, info=mapped()),
    Column("email", Text, info=mapped(required=True)),
    Column("program_zoho_id", ZOHO_ID, info=mapped()),
    Column("status", String(32), info=mapped()),
    # How the Moodle and Zoho records were linked: crm_field, idnumber, email, or null (one source only).
    Column("identity_match", String(16)),
    # The profile the dashboard shows: the photo is Moodle's (`profileimageurl`); the rest comes
    # from Zoho for a student admissions knows, from the Moodle account otherwise.
    Column("photo_url", Text),
    Column("phone", String(32), info=mapped()),
    Column("date_of_birth", Date, info=mapped()),
    Column("address", Text, info=mapped()),
    Column("city", Text, info=mapped()),
    Column("country", String(64), info=mapped()),
    # By updated_at: the tables that look students up follow the students a change rewrote.
    indexes=(("moodle_user_id",), ("zoho_id",), ("email",), ("updated_at",)),
)
enrollments = canonical_table(
    # `zoho:<id>` for an enrollment admissions recorded, `moodle:<course>:<user>` for one only Moodle has.
    "enrollments",
    "enrollment_key",
    Column("zoho_id", ZOHO_ID),
    Column("student_key", String(96)),
    Column("student_zoho_id", ZOHO_ID, info=mapped(required=True)),
    Column("moodle_user_id", BigInteger),
    Column("class_key", String(96)),
    Column("class_zoho_id", ZOHO_ID, info=mapped(required=True)),
    Column("moodle_course_id", BigInteger),
    Column("status", String(16), info=mapped()),
    Column("enrolled_on", Date, info=mapped()),
    indexes=(("student_key",), ("class_key",), ("moodle_course_id", "moodle_user_id"), ("updated_at",)),
)
registrations = canonical_table(
    "registrations",
    "registration_key",
    Column("zoho_id", ZOHO_ID),
    Column("student_key", String(96)),
    Column("student_zoho_id", ZOHO_ID, info=mapped(required=True)),
    Column("unit_zoho_id", ZOHO_ID, info=mapped(required=True)),
    Column("status", String(16), info=mapped()),
    indexes=(("student_key",), ("updated_at",)),
)
payments = canonical_table(
    "payments",
    "payment_key",
    Column("zoho_id", ZOHO_ID),
    Column("student_key", String(96)),
    Column("student_zoho_id", ZOHO_ID, info=mapped(required=True)),
    Column("kind", String(16), info=mapped()),
    Column("amount", Money(), info=mapped(required=True)),
    Column("currency", String(3), info=mapped()),
    Column("method", String(32), info=mapped()),
    Column("status", String(16), info=mapped()),
    Column("due_date", Date, info=mapped()),
    Column("paid_on", Date, info=mapped()),
    indexes=(("student_key",), ("updated_at",)),
)
grades = canonical_table(
    # `moodle:<assignment>:<user>` for a Moodle assignment grade, `zoho:<id>` for a BTEC grade recorded in Zoho.
    "grades",
    "grade_key",
    Column("source", String(8)),
    Column("zoho_id", ZOHO_ID),
    Column("student_key", String(96)),
    Column("student_zoho_id", ZOHO_ID, info=mapped(required=True)),
    Column("moodle_user_id", BigInteger),
    Column("unit_zoho_id", ZOHO_ID, info=mapped(required=True)),
    Column("moodle_course_id", BigInteger),
    Column("moodle_grade_item_id", BigInteger),
    Column("moodle_assignment_id", BigInteger),
    Column("raw_grade", Float),
    Column("grade_max", Float),
    Column("percentage", Float),
    # The grade as awarded on the BTEC scale (scale items, Zoho), and its conversion for every grade.
    Column("btec_grade", String(16), info=mapped(required=True)),
    Column("btec_equivalent", String(16)),
    Column("graded_at", UTCDateTime(), info=mapped()),
    indexes=(("student_key",), ("moodle_user_id",), ("updated_at",)),
)

# What identity matches on, kept by key from the raw layer and indexed, so that linking the
# students a change reaches is a few index lookups, not a pass over the college
# (lib/canonical/students.py). Numbers are upper-cased and emails trimmed and lower-cased.
identity_zoho_students = canonical_table(
    # Every live Zoho student, and each one Zoho lists as deleted (`deleted`).
    "identity_zoho_students",
    "zoho_id",
    Column("number_key", String(64)),
    Column("email_key", Text),
    Column("deleted", Boolean, nullable=False),
    indexes=(("number_key",), ("email_key",)),
    key_type=ZOHO_ID,
)
identity_moodle_users = canonical_table(
    # Every live Moodle user: its configured key (the custom field naming its Zoho student), its
    # idnumber and email, and whether it holds a student role in some course.
    "identity_moodle_users",
    "moodle_user_id",
    Column("crm_key", String(64)),
    Column("number_key", String(64)),
    Column("email_key", Text),
    Column("is_student", Boolean, nullable=False),
    indexes=(("crm_key",), ("number_key",), ("email_key",)),
    key_type=BigInteger,
)

# One row per stream and tenant: when it last synced successfully. The health endpoint reads it.
sync_state = Table(
    "sync_state",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("stream", String(64), primary_key=True),
    Column("last_synced_at", UTCDateTime(), nullable=False),
    Column("rows_read", Integer, nullable=False, default=0),
    # For canonical tables: the raw changes up to this instant have been applied.
    Column("watermark", UTCDateTime(), nullable=True),
)


@dataclass(frozen=True)
class KeyedTable:
    """A table written through the one upsert path, and the natural key its upserts conflict on."""

    table: Table
    key_columns: tuple[str, ...]

    @property
    def business_columns(self) -> tuple[str, ...]:
        """The columns whose content the fingerprint covers: everything but keys and bookkeeping."""
        skip = set(self.key_columns) | set(BOOKKEEPING_COLUMNS)
        return tuple(c.name for c in self.table.columns if c.name not in skip)


KEYED_TABLES: dict[str, KeyedTable] = {
    "raw_records": KeyedTable(raw_records, ("tenant_id", "source", "entity", "record_id")),
    **{
        table.name: KeyedTable(table, ("tenant_id", table.primary_key.columns.values()[1].name))
        for table in (
            programs,
            units,
            classes,
            students,
            enrollments,
            registrations,
            payments,
            grades,
            identity_zoho_students,
            identity_moodle_users,
        )
    },
}


# The Zoho entity each table takes its mapped columns from (the mapping file's `zoho.entities`).
ZOHO_ENTITY_TABLES = {
    "programs": programs,
    "units": units,
    "classes": classes,
    "students": students,
    "enrollments": enrollments,
    "registrations": registrations,
    "payments": payments,
    "btec_grades": grades,
}


def column_kind(column: Column) -> str:
    """The kind of value a mapped column takes, from its type: a Zoho record id (`ref`), text,
    an integer, money (`decimal`), a date or a datetime."""
    if column.name.endswith("_zoho_id"):
        return "ref"
    for kind, types in (
        ("decimal", (Money,)),
        ("datetime", (UTCDateTime,)),
        ("date", (Date,)),
        ("int", (Integer, BigInteger)),
        ("text", (String, Text)),
    ):
        if isinstance(column.type, types):
            return kind
    raise TypeError(f"{column.table.name}.{column.name}: no mapped kind for {column.type!r}")


# --- Real-time events (issue 15) -------------------------------------------------------------
# Every webhook event the inbox received, once per `event_id`: what `process_events` did with it.
# status: pending (logged, not yet applied), processed, ignored (a type this project does not
# apply), failed (to be retried at `next_attempt_at`), dead (out of attempts; an engineer requeues).
EVENT_STATUSES = ("pending", "processed", "ignored", "failed", "dead")
integration_events_log = Table(
    "integration_events_log",
    metadata,
    Column("event_id", String(128), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("source", String(16), nullable=False),  # moodle | zoho
    Column("sender", String(32), nullable=False),  # moodle_contract | local_webhooks | zoho
    Column("event_type", String(100), nullable=False),  # e.g. user_graded, zoho.Students.update
    Column("record_id", String(128)),  # what it is about: a user id, `<item>:<user>`, Zoho ids
    Column("user_id", BigInteger),  # the Moodle user it concerns, where there is one (log filter)
    Column("event_time", UTCDateTime(), nullable=False),  # the source's time of the event
    Column("payload", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    Column("file_name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("retry_count", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("next_attempt_at", UTCDateTime()),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("processed_at", UTCDateTime()),
    Index("ix_integration_events_log_status", "status", "next_attempt_at"),
    Index("ix_integration_events_log_received", "tenant_id", "received_at", "event_id"),
    Index("ix_integration_events_log_user", "tenant_id", "user_id"),
)


# --- Outbound: BTEC grades written back to Zoho (issue 18; migration 0006) -------------------
# One row per Zoho grade record we write (a student x unit), carrying the Moodle grade it holds.
# The write-back's state machine (lib/outbound/outbox.py): `in_flight` before a batch is sent,
# then `sent` (Zoho acknowledged `sent_fingerprint`), `failed` (retried by the next run),
# `parked` (Zoho rejected it for good, with its message), `conflict` (staff changed Zoho after the
# Moodle grade), and an engineer's resolution of a conflict, `kept_zoho` or `forced`.
grade_outbox = Table(
    "grade_outbox",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("record_key", String(96), primary_key=True),  # `<student zoho id>:<unit zoho id>`
    Column("grade_key", String(96), nullable=False),  # the canonical Moodle grade it carries
    Column("student_zoho_id", ZOHO_ID, nullable=False),
    Column("unit_zoho_id", ZOHO_ID, nullable=False),
    Column("btec_grade", String(16), nullable=False),
    Column("payload", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Column("sent_fingerprint", String(32)),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    # The Zoho record and what it holds, on Zoho's clock: our write once sent, the other value in a conflict.
    Column("zoho_id", ZOHO_ID),
    Column("zoho_grade", String(16)),
    Column("zoho_modified_at", UTCDateTime()),
    Column("moodle_graded_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Index("ix_grade_outbox_status", "tenant_id", "status"),
    # The grades SQL recognises our own writes by their Zoho id when Zoho sends them back.
    Index("ix_grade_outbox_zoho_id", "tenant_id", "zoho_id"),
)


# -- the profile API: its keys, and the history of sync runs (issue 16) -----------------------
# API keys, stored only as a hash. `key_id` is the short public part of a key (shown in lists,
# used to find the row); the secret part never reaches the warehouse. Scope `admin` reads every
# student of its tenant; scope `student` reads the one `student_key` it is bound to.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("student_key", String(96), nullable=True),
    Column("key_hash", String(64), nullable=False),
    Column("label", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

# The students whose marts are stale: each canonical application queues the students it changed
# (`*`: every student, after a full one), in its own transaction, and a mart build claims the
# queue, rebuilds those students' rows and deletes what it claimed (lib/warehouse/mart_refresh.py).
mart_refresh_queue = Table(
    "mart_refresh_queue",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("student_key", String(96), nullable=False),
    Column("queued_at", UTCDateTime(), nullable=False),
    # The build that claimed the row; null while it waits.
    Column("claim", String(64), nullable=True),
    Index("ix_mart_refresh_queue_claim", "claim", "tenant_id", "student_key"),
)

# One row per sync run (full_sync, incremental_sync): its outcome and, per table, the rows it
# read, inserted, updated and deleted (`tables`: a JSON list). Written when a run ends; the API's
# sync history reads it (the API imports no Dagster).
sync_runs = Table(
    "sync_runs",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    Column("tables", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    Column("error", Text, nullable=True),
    Index("ix_sync_runs_started", "tenant_id", "started_at"),
)


# ---- Moodle course results (issue 14) ---------------------------------------------------------
# A student's result in a Moodle course, `moodle:<course>:<user>`, one per live enrolment of a
# student: the gradebook's course total (the enrollment's final grade) and the course completion.
# A table of its own rather than columns of `enrollments`: its key is Moodle's (course, user),
# which every Moodle enrolment has, while an enrollment row is Zoho's where admissions recorded
# it; and the enrollment merge stays as it is. `enrollment_key` names the enrollment it belongs to.
course_results = canonical_table(
    "course_results",
    "result_key",
    Column("student_key", String(96)),
    Column("student_zoho_id", ZOHO_ID),
    Column("moodle_user_id", BigInteger),
    Column("moodle_course_id", BigInteger),
    Column("enrollment_key", String(96)),
    Column("final_grade", Float),
    Column("final_grade_max", Float),
    Column("final_percentage", Float),
    # Null when the course tracks no completion (never asked); false until completed.
    Column("completed", Boolean),
    Column("completed_at", UTCDateTime()),
    indexes=(("student_key",), ("moodle_user_id",)),
)
KEYED_TABLES["course_results"] = KeyedTable(course_results, ("tenant_id", "result_key"))
