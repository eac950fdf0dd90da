"""Data-quality checks on the canonical tables, as plain SQL over the warehouse.

Each check returns a `CheckOutcome`: whether it passed, and figures (with a few sample keys)
that tell a data engineer where to look. The Dagster asset checks only wire these up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Float, and_, cast, func, or_, select

from integration_pipelines.lib.mapping import BTEC_GRADES
from integration_pipelines.lib.warehouse.schema import (
    classes,
    enrollments,
    grades,
    payments,
    students,
    sync_state,
)
from integration_pipelines.lib.warehouse.sql import matches

SAMPLE_SIZE = 5
# One @ with something either side and no space: loose on purpose, it finds what is plainly no address.
EMAIL_SHAPE = r"^[^@\s]+@[^@\s]+$"


@dataclass
class CheckOutcome:
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)


def _live(table):
    return table.c.deleted_at.is_(None)


def _tenant(table, tenant_id: str):
    return and_(table.c.tenant_id == tenant_id, _live(table))


def _violations(conn: Connection, stmt, key_column) -> CheckOutcome:
    """Pass when `stmt` (selecting offending rows) finds none; report the count and a sample."""
    rows = conn.execute(stmt.with_only_columns(key_column).limit(SAMPLE_SIZE)).scalars().all()
    count = conn.execute(select(func.count()).select_from(stmt.subquery())).scalar_one() if rows else 0
    return CheckOutcome(passed=count == 0, metadata={"violations": count, "sample": [str(r) for r in rows]})


def unique_source_ids(conn: Connection, tenant_id: str) -> CheckOutcome:
    """No Moodle account and no Zoho student belongs to two live students."""
    outcome = CheckOutcome(True, {})
    for column in ("moodle_user_id", "zoho_id"):
        col = students.c[column]
        stmt = select(col).where(_tenant(students, tenant_id), col.is_not(None)).group_by(col).having(func.count() > 1)
        found = _violations(conn, stmt, col)
        outcome.passed &= found.passed
        outcome.metadata[f"duplicate_{column}"] = found.metadata["violations"]
        outcome.metadata[f"duplicate_{column}_sample"] = found.metadata["sample"]
    return outcome


def unique_enrollments(conn: Connection, tenant_id: str) -> CheckOutcome:
    """A student is enrolled in a class once."""
    key = enrollments.c.student_key + "|" + enrollments.c.class_key
    stmt = (
        select(key)
        .where(_tenant(enrollments, tenant_id), enrollments.c.class_key.is_not(None))
        .group_by(enrollments.c.student_key, enrollments.c.class_key)
        .having(func.count() > 1)
    )
    return _violations(conn, stmt, key)


def references_exist(conn: Connection, tenant_id: str, child, column: str, parent, parent_key: str) -> CheckOutcome:
    """Every live `child` row's `column` names a `parent` row (null references are not checked).

    A soft-deleted parent still exists: a source that deletes a student but keeps its enrollments
    leaves a tombstone that explains them. Such references are counted (`to_deleted`), not failed.
    Both counts come from one pass over the children, each looking its parent up once by key.
    """
    with_parent = child.outerjoin(
        parent, and_(parent.c.tenant_id == tenant_id, parent.c[parent_key] == child.c[column])
    )
    live_children = (_tenant(child, tenant_id), child.c[column].is_not(None))
    no_parent = parent.c[parent_key].is_(None)
    missing, to_deleted = conn.execute(
        select(func.count().filter(no_parent), func.count().filter(parent.c.deleted_at.is_not(None)))
        .select_from(with_parent)
        .where(*live_children)
    ).one()
    sample = []
    if missing:
        stmt = select(child.c[column]).select_from(with_parent).where(*live_children, no_parent).limit(SAMPLE_SIZE)
        sample = [str(key) for key in conn.execute(stmt).scalars()]
    return CheckOutcome(
        passed=missing == 0, metadata={"violations": missing, "sample": sample, "to_deleted": to_deleted}
    )


def enrollment_references(conn: Connection, tenant_id: str) -> CheckOutcome:
    """An enrollment's student and class exist."""
    student = references_exist(conn, tenant_id, enrollments, "student_key", students, "student_key")
    klass = references_exist(conn, tenant_id, enrollments, "class_key", classes, "class_key")
    return CheckOutcome(
        student.passed and klass.passed,
        {
            "missing_students": student.metadata["violations"],
            "missing_students_sample": student.metadata["sample"],
            "deleted_students": student.metadata["to_deleted"],
            "missing_classes": klass.metadata["violations"],
            "missing_classes_sample": klass.metadata["sample"],
            "deleted_classes": klass.metadata["to_deleted"],
        },
    )


def student_references(conn: Connection, tenant_id: str, child) -> CheckOutcome:
    """Every registration, payment or grade belongs to an existing student."""
    return references_exist(conn, tenant_id, child, "student_key", students, "student_key")


def grade_domain(conn: Connection, tenant_id: str) -> CheckOutcome:
    """BTEC grades are Refer, Pass, Merit or Distinction; a raw grade lies between 0 and its maximum."""
    bad_letter = or_(
        and_(grades.c.btec_grade.is_not(None), grades.c.btec_grade.not_in(BTEC_GRADES)),
        and_(grades.c.btec_equivalent.is_not(None), grades.c.btec_equivalent.not_in(BTEC_GRADES)),
    )
    bad_number = and_(
        grades.c.raw_grade.is_not(None),
        grades.c.grade_max.is_not(None),
        or_(grades.c.raw_grade < 0, grades.c.raw_grade > grades.c.grade_max),
    )
    stmt = select(grades.c.grade_key).where(_tenant(grades, tenant_id), or_(bad_letter, bad_number))
    return _violations(conn, stmt, grades.c.grade_key)


def payments_non_negative(conn: Connection, tenant_id: str) -> CheckOutcome:
    """Fees and instalments are amounts owed or paid: never negative (refunds are a status)."""
    # Compared as a number: on SQLite an amount is its exact decimal text (see `Money`).
    stmt = select(payments.c.payment_key).where(_tenant(payments, tenant_id), cast(payments.c.amount, Float) < 0)
    return _violations(conn, stmt, payments.c.payment_key)


def unmatched_identity_share(conn: Connection, tenant_id: str, warn_above: float) -> CheckOutcome:
    """The share of live students known to one system only stays under the configured threshold."""
    total = conn.execute(select(func.count()).where(_tenant(students, tenant_id))).scalar_one()
    unmatched = conn.execute(
        select(func.count()).where(_tenant(students, tenant_id), students.c.identity_match.is_(None))
    ).scalar_one()
    share = unmatched / total if total else 0.0
    return CheckOutcome(
        share <= warn_above,
        {
            "students": total,
            "unmatched": unmatched,
            "unmatched_share": round(share, 4),
            "threshold": warn_above,
        },
    )


def freshness(
    conn: Connection, tenant_id: str, stream: str, max_age: timedelta, now: datetime | None = None
) -> CheckOutcome:
    """The stream synced successfully within `max_age`."""
    last = conn.execute(
        select(sync_state.c.last_synced_at).where(sync_state.c.tenant_id == tenant_id, sync_state.c.stream == stream)
    ).scalar()
    now = now or datetime.now(UTC)
    age = (now - last) if last else None
    return CheckOutcome(
        age is not None and age <= max_age,
        {
            "last_synced_at": last.isoformat() if last else None,
            "age_hours": round(age.total_seconds() / 3600, 2) if age is not None else None,
            "max_age_hours": max_age.total_seconds() / 3600,
        },
    )


def student_emails(conn: Connection, tenant_id: str) -> CheckOutcome:
    """Every linked student has an email, and every email looks like one: a missing or malformed
    address is a data-quality finding (the student still syncs), for admissions to correct."""
    missing = select(students.c.student_key).where(
        _tenant(students, tenant_id), students.c.identity_match.is_not(None), students.c.email.is_(None)
    )
    malformed = select(students.c.student_key).where(
        _tenant(students, tenant_id), students.c.email.is_not(None), ~matches(students.c.email, EMAIL_SHAPE)
    )
    no_email, bad_email = (
        _violations(conn, missing, students.c.student_key),
        _violations(conn, malformed, students.c.student_key),
    )
    return CheckOutcome(
        passed=no_email.passed and bad_email.passed,
        metadata={
            "linked_without_email": no_email.metadata["violations"],
            "linked_without_email_sample": no_email.metadata["sample"],
            "malformed_email": bad_email.metadata["violations"],
            "malformed_email_sample": bad_email.metadata["sample"],
        },
    )
