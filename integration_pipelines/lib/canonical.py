"""Canonical rows from raw source records: programs, units, classes, enrollments, registrations,
payments and grades. (Students, whose identity rules are richer, live in `students.py`.)

Keys are stable and say where a row came from: `zoho:<id>` for a record admissions or finance
holds in Zoho, `moodle:<...>` for something only Moodle knows. Child rows carry the keys of the
student and class they belong to, so referential checks and the marts join on one column.

Everything here is a pure function of its inputs: the Dagster assets read raw records and
lookups from the warehouse, call these, and write the rows through the one upsert path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from more_itertools import chunked

from integration_pipelines.lib.lookups import LOOKUP_BATCH, Lookup, with_lookup

# Canonical table -> the key column and the mapping entity its Zoho records come from.
ZOHO_ENTITY_OF_TABLE = {
    "programs": "programs",
    "units": "units",
    "classes": "classes",
    "registrations": "registrations",
    "payments": "payments",
    "grades": "btec_grades",
}


def zoho_key(zoho_id: Any) -> str | None:
    return f"zoho:{zoho_id}" if zoho_id else None


def key_column(table: str) -> str:
    """The natural-key column of a canonical table: `program_key`, `class_key`, ..."""
    return {"classes": "class_key", "grades": "grade_key"}.get(table, f"{table.removesuffix('s')}_key")


def zoho_rows(table: str, entity, records: Iterable[Mapping[str, Any]], tenant_id: str) -> Iterator[dict[str, Any]]:
    """Canonical rows for records that map one to one from a Zoho module.

    `entity` is the field mapping of the Zoho module (`EntityMapping.to_row`). Rows pointing at
    a student get its key, `zoho:<student id>`.
    """
    key = key_column(table)
    for record in records:
        row = entity.to_row(record)
        row["tenant_id"] = tenant_id
        row[key] = zoho_key(row["zoho_id"])
        if "student_zoho_id" in row:
            row["student_key"] = zoho_key(row["student_zoho_id"])
        if table == "grades":
            row.update(source="zoho", btec_equivalent=row.get("btec_grade"))
        yield row


@dataclass(frozen=True, slots=True)
class StudentLink:
    """Where a Moodle user sits in the canonical students table."""

    student_key: str
    zoho_id: str | None


class EnrolmentClaims(Protocol):
    """The Moodle enrolments of students, for the enrollment merge to claim (`MoodleEnrolments`)."""

    def claim(self, pairs: set[tuple[int, int]]) -> dict[tuple[int, int], bool]:
        """Claim the enrolments among `pairs` ((course, user)) that nothing claimed before; for
        each claimed, whether it is suspended."""

    def unclaimed(self) -> Iterable[tuple[int, int, bool]]:
        """(course, user, suspended) of each enrolment nothing claimed."""


def enrollment_rows(
    zoho_enrollments: Iterable[dict[str, Any]],
    moodle_enrolments: EnrolmentClaims,
    *,
    tenant_id: str,
    course_of_class: Mapping[str, int | None],
    moodle_users_of_students: Lookup,
    students_of_moodle_users: Lookup,
    observed_at: datetime,
) -> Iterator[dict[str, Any]]:
    """One row per student in a class, merging what admissions recorded with what Moodle has.

    `zoho_enrollments` are mapped Zoho Enrollments rows; `moodle_enrolments` holds the Moodle
    enrolments of students, to be claimed a batch at a time. A Zoho enrollment absorbs the Moodle
    enrolment of the same student in the class's course, even when Zoho has deleted it (its row
    carries `deleted_at`): the Moodle enrolment stood for it and must not reappear on its own.
    Moodle enrolments of students with no Zoho enrollment are kept as Moodle-only rows.
    `moodle_users_of_students` finds the Moodle accounts of Zoho students (by Zoho id), and
    `students_of_moodle_users` the `StudentLink`s of Moodle users.

    Status: a withdrawal in Zoho wins; then a suspended enrolment on either side; else active.
    (A suspended Moodle *account* is the student's state, not the enrollment's.)
    """
    for batch in chunked(zoho_enrollments, LOOKUP_BATCH):
        users = moodle_users_of_students({r["student_zoho_id"] for r in batch if r["student_zoho_id"] is not None})
        placed = [(row, course_of_class.get(row["class_zoho_id"]), users.get(row["student_zoho_id"])) for row in batch]
        claimed = moodle_enrolments.claim({(course, user) for _, course, user in placed if course and user})
        for row, course_id, user_id in placed:
            # The first enrollment of a student in a class's course takes its Moodle enrolment.
            moodle_suspended = claimed.pop((course_id, user_id), False)
            zoho_status = row.get("status")
            if zoho_status == "withdrawn":
                status = "withdrawn"
            elif zoho_status == "suspended" or moodle_suspended:
                status = "suspended"
            else:
                status = "active"
            yield {
                **row,
                "tenant_id": tenant_id,
                "enrollment_key": zoho_key(row["zoho_id"]),
                "student_key": zoho_key(row["student_zoho_id"]),
                "class_key": zoho_key(row["class_zoho_id"]),
                "moodle_user_id": user_id,
                "moodle_course_id": course_id,
                "status": status,
            }
    class_of_course = {course: zid for zid, course in course_of_class.items() if course is not None}
    moodle_only = moodle_enrolments.unclaimed()
    for (course_id, user_id, suspended), link in with_lookup(moodle_only, lambda e: e[1], students_of_moodle_users):
        class_zoho_id = class_of_course.get(course_id)
        yield {
            "tenant_id": tenant_id,
            "enrollment_key": f"moodle:{course_id}:{user_id}",
            "zoho_id": None,
            "student_key": link.student_key if link else f"moodle:{user_id}",
            "student_zoho_id": link.zoho_id if link else None,
            "moodle_user_id": user_id,
            "class_key": zoho_key(class_zoho_id),
            "class_zoho_id": class_zoho_id,
            "moodle_course_id": course_id,
            "status": "suspended" if suspended else "active",
            "enrolled_on": None,
            # Moodle does not say when an enrolment changed: the snapshot that saw it stands in.
            "source_modified_at": observed_at,
        }


@dataclass(frozen=True, slots=True)
class GradeItem:
    """A Moodle assignment's grade item: what a grade is out of, and which unit it assesses."""

    assignment_id: int
    item_id: int | None
    course_id: int
    idnumber: str | None
    grade_max: float
    scale: bool

    @classmethod
    def from_report(cls, item: Mapping[str, Any], course_id: int) -> GradeItem:
        """From a `gradereport_user_get_grade_items` item of an assignment."""
        return cls(
            assignment_id=int(item["iteminstance"]),
            item_id=int(item["id"]),
            course_id=int(course_id),
            idnumber=(item.get("idnumber") or "").strip() or None,
            grade_max=float(item["grademax"]),
            scale=item.get("scaleid") is not None,
        )


GradeConverter = Callable[[float, float, bool], str | None]


def moodle_grade_row(
    *,
    tenant_id: str,
    item: GradeItem,
    user_id: int,
    raw_grade: float | None,
    graded_at: datetime,
    student: StudentLink | None,
    unit_of_code: Mapping[str, str],
    convert: GradeConverter,
) -> dict[str, Any]:
    """A Moodle assignment grade as a canonical grade.

    The same assignment grade reaches us from the grade report (snapshot) and from
    `mod_assign_get_grades` (incremental): both land here under one key, and the newer wins.
    """
    scale_min = 1.0 if item.scale else 0.0
    percentage = None
    if raw_grade is not None and item.grade_max > scale_min:
        percentage = round((raw_grade - scale_min) / (item.grade_max - scale_min) * 100, 4)
    equivalent = convert(raw_grade, item.grade_max, item.scale) if raw_grade is not None else None
    return {
        "tenant_id": tenant_id,
        "grade_key": f"moodle:{item.assignment_id}:{user_id}",
        "source": "moodle",
        "zoho_id": None,
        "student_key": student.student_key if student else f"moodle:{user_id}",
        "student_zoho_id": student.zoho_id if student else None,
        "moodle_user_id": user_id,
        "unit_zoho_id": unit_of_code.get(item.idnumber) if item.idnumber else None,
        "moodle_course_id": item.course_id,
        "moodle_grade_item_id": item.item_id,
        "moodle_assignment_id": item.assignment_id,
        "raw_grade": raw_grade,
        "grade_max": item.grade_max,
        "percentage": percentage,
        # Only a BTEC-scale item *awards* a BTEC grade; a numeric one has an equivalent only.
        "btec_grade": equivalent if item.scale else None,
        "btec_equivalent": equivalent,
        "graded_at": graded_at,
        "source_modified_at": graded_at,
    }


def epoch(value: Any) -> datetime | None:
    """Moodle times are epoch seconds, 0 meaning never."""
    return datetime.fromtimestamp(int(value), UTC) if value else None
