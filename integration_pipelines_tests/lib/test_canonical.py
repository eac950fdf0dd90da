"""Canonical rows from raw records: enrollment merging (its Moodle enrolments in a scratch table of
a real warehouse, on both backends) and Moodle grade conversion."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from integration_pipelines.lib import btec
from integration_pipelines.lib.canonical import GradeItem, StudentLink, enrollment_rows, moodle_grade_row
from integration_pipelines.lib.canonical_reads import MoodleEnrolments
from integration_pipelines.lib.lookups import LOOKUP_BATCH

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def zoho_enrollment(zid: str, status: str, **extra):
    return {
        "zoho_id": zid,
        "student_zoho_id": "s1",
        "class_zoho_id": "c1",
        "status": status,
        "enrolled_on": None,
        "source_modified_at": NOW,
        **extra,
    }


def moodle_enrolment(course: int, user: int, *, suspended=False, role="student"):
    return {"courseid": course, "userid": user, "suspended": suspended, "roles": [{"shortname": role}]}


@pytest.fixture
def merge(warehouse):
    def merge(zoho, moodle):
        with warehouse.connect() as conn:
            rows = enrollment_rows(
                zoho,
                MoodleEnrolments(conn, moodle),
                tenant_id="t",
                course_of_class={"c1": 7, "c2": 8},
                moodle_users_of_students=lambda zoho_ids: {"s1": 41},
                students_of_moodle_users=lambda user_ids: {41: StudentLink("zoho:s1", "s1")},
                observed_at=NOW,
            )
            rows = list(rows)
        keyed = {r["enrollment_key"]: r for r in rows}
        assert len(keyed) == len(rows), "one row per enrollment"
        return keyed

    return merge


@pytest.mark.parametrize(
    ("zoho_status", "moodle_suspended", "expected"),
    [
        ("active", False, "active"),
        ("active", True, "suspended"),
        ("suspended", False, "suspended"),
        ("withdrawn", True, "withdrawn"),
    ],
)
def test_a_withdrawal_wins_then_a_suspension_on_either_side(merge, zoho_status, moodle_suspended, expected):
    rows = merge([zoho_enrollment("e1", zoho_status)], [moodle_enrolment(7, 41, suspended=moodle_suspended)])
    assert set(rows) == {"zoho:e1"}, "the Moodle enrolment is absorbed, not kept apart"
    assert (rows["zoho:e1"]["status"], rows["zoho:e1"]["moodle_user_id"], rows["zoho:e1"]["moodle_course_id"]) == (
        expected,
        41,
        7,
    )


def test_moodle_only_enrolments_are_kept_and_staff_are_not_enrollments(merge):
    rows = merge([], [moodle_enrolment(7, 41), moodle_enrolment(7, 99, role="editingteacher")])
    assert set(rows) == {"moodle:7:41"}
    assert (rows["moodle:7:41"]["student_key"], rows["moodle:7:41"]["class_key"]) == ("zoho:s1", "zoho:c1")
    assert rows["moodle:7:41"]["source_modified_at"] == NOW


def test_a_deleted_zoho_enrollment_still_claims_its_moodle_enrolment(merge):
    rows = merge([zoho_enrollment("e1", "active", deleted_at=NOW)], [moodle_enrolment(7, 41)])
    assert set(rows) == {"zoho:e1"}
    assert rows["zoho:e1"]["deleted_at"] == NOW


def test_a_moodle_enrolment_is_claimed_once_across_batches_and_the_unclaimed_stay_moodle_only(merge):
    # Every Zoho row below places student s1 (Moodle user 41) in course 7: only the first claims the
    # suspended enrolment there, whichever batch the others fall in; the course-8 enrolment no Zoho
    # enrollment claims comes back on its own.
    zoho = [zoho_enrollment(f"e{i}", "active") for i in range(LOOKUP_BATCH + 3)]
    rows = merge(zoho, [moodle_enrolment(7, 41, suspended=True), moodle_enrolment(8, 41)])
    assert [rows[f"zoho:e{i}"]["status"] for i in (0, 1, LOOKUP_BATCH + 2)] == ["suspended", "active", "active"]
    assert sum(r["status"] == "suspended" for r in rows.values()) == 1
    assert "moodle:7:41" not in rows
    assert (rows["moodle:8:41"]["class_key"], rows["moodle:8:41"]["status"]) == ("zoho:c2", "active")


def convert(raw, grade_max, scale):
    return btec.grade_from_scale(raw) if scale else btec.grade_from_numeric(raw, grade_max)


def grade(item: GradeItem, raw: float):
    return moodle_grade_row(
        tenant_id="t",
        item=item,
        user_id=41,
        raw_grade=raw,
        graded_at=NOW,
        student=StudentLink("zoho:s1", "s1"),
        unit_of_code={"U1": "u1"},
        convert=convert,
    )


def test_a_btec_scale_grade_is_awarded_as_such():
    row = grade(GradeItem(assignment_id=3, item_id=55, course_id=7, idnumber="U1", grade_max=4, scale=True), 3.0)
    assert (row["btec_grade"], row["btec_equivalent"], row["unit_zoho_id"]) == ("Merit", "Merit", "u1")
    assert row["percentage"] == pytest.approx(66.6667, abs=1e-3)  # Moodle's own: (3 - 1) / (4 - 1)
    assert row["grade_key"] == "moodle:3:41"


def test_a_numeric_grade_has_an_equivalent_but_awards_no_btec_grade():
    row = grade(GradeItem(assignment_id=4, item_id=56, course_id=7, idnumber=None, grade_max=20, scale=False), 12.0)
    assert (row["btec_grade"], row["btec_equivalent"], row["percentage"]) == (None, "Merit", 60.0)
    assert row["unit_zoho_id"] is None
