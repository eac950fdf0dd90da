"""Which grades a write-back looks at: per student x unit, the newest Moodle grade with a BTEC
value, what Zoho holds for it, and what the outbox knows.

One query over the canonical tables (both dialects through SQLAlchemy Core):

- the Moodle side: live Moodle grades of a Zoho student (`student_zoho_id`) for a unit
  (`unit_zoho_id`) with a BTEC value (`btec_equivalent`, the mapping's conversion, computed by
  the grades SQL), the newest per student x unit; with the student's number and the unit's code,
  which make the key Zoho matches on;
- the Zoho side: the newest live Zoho grade record of that student x unit as the canonical
  grades hold it: our own writes coming back are not there (lib/canonical/grades.py), so what
  is there is what someone else typed in Zoho;
- the outbox row of that student x unit, if any.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, select

from integration_pipelines.lib.canonical.zoho_records import ZOHO_KEY_PREFIX
from integration_pipelines.lib.warehouse.schema import grade_outbox, grades, students, units


def record_key_of(student_zoho_id: Any, unit_zoho_id: Any) -> str:
    """The outbox's key of a Zoho grade record: one per student x unit."""
    return f"{student_zoho_id}:{unit_zoho_id}"


@dataclass(frozen=True, slots=True)
class GradeState:
    """One student x unit: the Moodle grade to write, Zoho's visible record, the outbox row."""

    record_key: str
    grade_key: str
    student_zoho_id: str
    unit_zoho_id: str
    student_number: str
    unit_code: str
    btec_grade: str
    graded_at: datetime | None
    moodle_modified_at: datetime
    zoho_id: str | None
    zoho_grade: str | None
    zoho_modified_at: datetime | None
    outbox_status: str | None
    outbox_fingerprint: str | None
    outbox_sent_fingerprint: str | None
    outbox_zoho_modified_at: datetime | None
    """Zoho's Modified_Time of the record we wrote (sent), or of the other value (conflict)."""


def grade_states(conn: Connection, tenant_id: str, *, only: set[str] | None = None) -> Iterator[GradeState]:
    """Every student x unit with a Moodle grade to write back (or only the record keys `only`)."""
    m = grades.alias("moodle_grade")
    pair = (m.c.student_zoho_id, m.c.unit_zoho_id)
    moodle = (
        select(
            m.c.grade_key,
            m.c.student_key,
            m.c.student_zoho_id,
            m.c.unit_zoho_id,
            m.c.btec_equivalent,
            m.c.graded_at,
            m.c.source_modified_at,
            func.row_number()
            .over(partition_by=pair, order_by=(m.c.source_modified_at.desc(), m.c.grade_key.desc()))
            .label("newest"),
        )
        .where(
            m.c.tenant_id == tenant_id,
            m.c.source == "moodle",
            m.c.deleted_at.is_(None),
            m.c.btec_equivalent.is_not(None),
            m.c.student_zoho_id.is_not(None),
            m.c.unit_zoho_id.is_not(None),
        )
        .subquery("moodle")
    )
    z, o = grades.alias("zoho_grade"), grade_outbox
    stmt = (
        select(
            moodle.c.grade_key,
            moodle.c.student_zoho_id,
            moodle.c.unit_zoho_id,
            students.c.student_number,
            units.c.code,
            moodle.c.btec_equivalent,
            moodle.c.graded_at,
            moodle.c.source_modified_at,
            z.c.zoho_id,
            z.c.btec_grade,
            z.c.source_modified_at.label("zoho_modified_at"),
            o.c.status,
            o.c.fingerprint,
            o.c.sent_fingerprint,
            o.c.zoho_modified_at.label("outbox_zoho_modified_at"),
        )
        .select_from(
            moodle.join(
                students,
                and_(
                    students.c.tenant_id == tenant_id,
                    students.c.zoho_id == moodle.c.student_zoho_id,
                    students.c.deleted_at.is_(None),
                ),
            )
            .join(
                units,
                # By the units' primary key, `zoho:<id>`.
                and_(
                    units.c.tenant_id == tenant_id,
                    units.c.unit_key == ZOHO_KEY_PREFIX + moodle.c.unit_zoho_id,
                    units.c.deleted_at.is_(None),
                ),
            )
            .outerjoin(
                # Zoho's records of the student (by the grades' index of students), for the unit.
                z,
                and_(
                    z.c.tenant_id == tenant_id,
                    z.c.student_key == moodle.c.student_key,
                    z.c.source == "zoho",
                    z.c.unit_zoho_id == moodle.c.unit_zoho_id,
                    z.c.deleted_at.is_(None),
                ),
            )
            .outerjoin(
                # By the outbox's primary key.
                o,
                and_(
                    o.c.tenant_id == tenant_id,
                    o.c.record_key == moodle.c.student_zoho_id + ":" + moodle.c.unit_zoho_id,
                ),
            )
        )
        .where(
            moodle.c.newest == 1,
            students.c.student_number.is_not(None),
            units.c.code.is_not(None),
        )
        .order_by(moodle.c.student_zoho_id, moodle.c.unit_zoho_id)
    )
    # Zoho may hold more than one record of a student x unit: the newest stands for Zoho's view.
    newest: dict[str, Any] = {}
    for row in conn.execute(stmt):
        key = record_key_of(row.student_zoho_id, row.unit_zoho_id)
        if only is not None and key not in only:
            continue
        seen = newest.get(key)
        if seen is None or (
            row.zoho_modified_at is not None
            and (
                seen.zoho_modified_at is None
                or (row.zoho_modified_at, row.zoho_id) > (seen.zoho_modified_at, seen.zoho_id)
            )
        ):
            newest[key] = row
    for key, row in newest.items():
        yield GradeState(
            record_key=key,
            grade_key=row.grade_key,
            student_zoho_id=row.student_zoho_id,
            unit_zoho_id=row.unit_zoho_id,
            student_number=row.student_number,
            unit_code=row.code,
            btec_grade=row.btec_equivalent,
            graded_at=row.graded_at,
            moodle_modified_at=row.source_modified_at,
            zoho_id=row.zoho_id,
            zoho_grade=row.btec_grade,
            zoho_modified_at=row.zoho_modified_at,
            outbox_status=row.status,
            outbox_fingerprint=row.fingerprint,
            outbox_sent_fingerprint=row.sent_fingerprint,
            outbox_zoho_modified_at=row.outbox_zoho_modified_at,
        )
