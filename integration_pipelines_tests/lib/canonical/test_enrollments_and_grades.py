"""The enrollment merge and Moodle grades, as SQL over the raw layer, on both backends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from integration_pipelines_tests.lib.canonical.college import T0, RawCollege, enrolment, moodle_user, zoho_student

COURSE, OTHER_COURSE = 7, 8


@pytest.fixture
def college(warehouse) -> RawCollege:
    """Student s1 linked to Moodle account 41; classes c1 (course 7) and c2 (course 8)."""
    college = RawCollege(warehouse)
    college.zoho("Students", zoho_student("s1", "S1", "s1@x.ac.uk"))
    college.users(moodle_user(41, email="s1@x.ac.uk"), moodle_user(42, email="staff@x.ac.uk"))
    college.zoho(
        "Classes",
        *(
            {
                "id": cid,
                "Name": cid,
                "Programme": {"id": "p"},
                "Moodle_Course_ID": course,
                "Modified_Time": T0.isoformat(),
            }
            for cid, course in (("c1", COURSE), ("c2", OTHER_COURSE))
        ),
    )
    college.zoho(
        "Units",
        {
            "id": "u1",
            "Name": "U1",
            "Unit_Code": "U1",
            "Programme": {"id": "p"},
            "Credits": 10,
            "Modified_Time": T0.isoformat(),
        },
    )
    return college


def zoho_enrollment(zid: str, status: str, klass: str = "c1") -> dict:
    return {
        "id": zid,
        "Student": {"name": "s1", "id": "s1"},
        "Class": {"name": klass, "id": klass},
        "Status": status,
        "Modified_Time": T0.isoformat(),
    }


@pytest.mark.parametrize(
    ("zoho_status", "moodle_suspended", "expected"),
    [
        ("Active", False, "active"),
        ("Active", True, "suspended"),
        ("Suspended", False, "suspended"),
        ("Withdrawn", True, "withdrawn"),
    ],
)
def test_a_withdrawal_wins_then_a_suspension_on_either_side(college, zoho_status, moodle_suspended, expected):
    college.zoho("Enrollments", zoho_enrollment("e1", zoho_status))
    college.enrolments(enrolment(COURSE, 41, suspended=moodle_suspended))
    college.apply_all()
    rows = college.rows("enrollments")
    assert set(rows) == {"zoho:e1"}, "the Moodle enrolment is absorbed"
    assert (rows["zoho:e1"]["status"], rows["zoho:e1"]["moodle_user_id"], rows["zoho:e1"]["moodle_course_id"]) == (
        expected,
        41,
        COURSE,
    )


def test_moodle_only_enrolments_are_kept_and_staff_are_not_enrollments(college):
    college.enrolments(enrolment(OTHER_COURSE, 41, suspended=True), enrolment(COURSE, 42, role="editingteacher"))
    college.apply_all()
    rows = college.rows("enrollments")
    assert set(rows) == {f"moodle:{OTHER_COURSE}:41"}
    row = rows[f"moodle:{OTHER_COURSE}:41"]
    assert (row["student_key"], row["class_key"], row["status"]) == ("zoho:s1", "zoho:c2", "suspended")


def test_a_deleted_zoho_enrollment_still_absorbs_its_moodle_enrolment(college):
    college.zoho("Enrollments", zoho_enrollment("e1", "Active"))
    college.enrolments(enrolment(COURSE, 41))
    college.apply_all()
    college.soft_delete("zoho", "Enrollments", "e1")
    college.apply_all()
    assert college.rows("enrollments") == {}
    assert college.rows("enrollments", live=False)["zoho:e1"]["deleted_at"] is not None


def test_one_moodle_enrolment_is_absorbed_once_and_the_lower_zoho_id_absorbs_it(college):
    college.zoho("Enrollments", zoho_enrollment("e2", "Active"), zoho_enrollment("e1", "Active"))
    college.enrolments(enrolment(COURSE, 41, suspended=True))
    college.apply_all()
    rows = college.rows("enrollments")
    assert set(rows) == {"zoho:e1", "zoho:e2"}
    assert (rows["zoho:e1"]["status"], rows["zoho:e2"]["status"]) == ("suspended", "active")


def test_by_key_a_new_zoho_enrollment_absorbs_a_moodle_only_row(college):
    college.enrolments(enrolment(COURSE, 41))
    college.apply_all()
    assert set(college.rows("enrollments")) == {f"moodle:{COURSE}:41"}
    college.landed = []
    college.zoho("Enrollments", zoho_enrollment("e1", "Active"))
    results = college.apply_landed()
    assert set(college.rows("enrollments")) == {"zoho:e1"}
    assert results["enrollments"].counts.deleted == 1


def grade_item(item: int, assignment: int, *, grade_max: float, scale: bool, unit: str | None = None) -> dict:
    return {
        "id": item,
        "itemname": f"A{assignment}",
        "itemtype": "mod",
        "itemmodule": "assign",
        "iteminstance": assignment,
        "idnumber": unit or "",
        "grademin": 1 if scale else 0,
        "grademax": grade_max,
        "scaleid": 3 if scale else None,
        "cmid": 900 + assignment,
        "courseid": COURSE,
    }


def report_grade(item: int, assignment: int, user: int, raw: float, at) -> dict:
    return {
        "itemid": item,
        "iteminstance": assignment,
        "courseid": COURSE,
        "userid": user,
        "graderaw": raw,
        "gradedategraded": int(at.timestamp()),
    }


def assign_grade(assignment: int, user: int, grade: str, at) -> dict:
    return {"assignmentid": assignment, "userid": user, "grade": grade, "timemodified": int(at.timestamp())}


def land_grades(college: RawCollege, *report, assign=()):
    college.land("moodle", "grades", [(f"{g['itemid']}:{g['userid']}", g) for g in report])
    college.land("moodle", "assign_grades", [(f"{g['assignmentid']}:{g['userid']}", g) for g in assign])


def test_a_btec_scale_grade_is_awarded_and_a_numeric_one_has_an_equivalent_only(college):
    college.land(
        "moodle",
        "grade_items",
        [
            ("55", grade_item(55, 3, grade_max=4, scale=True, unit="U1")),
            ("56", grade_item(56, 4, grade_max=20, scale=False)),
        ],
    )
    land_grades(college, report_grade(55, 3, 41, 3.0, T0), report_grade(56, 4, 41, 12.0, T0))
    college.apply_all()
    rows = college.rows("grades")
    scale, numeric = rows["moodle:55:41"], rows["moodle:56:41"]
    assert (scale["btec_grade"], scale["btec_equivalent"], scale["unit_zoho_id"]) == ("Merit", "Merit", "u1")
    assert scale["percentage"] == pytest.approx(66.6667, abs=1e-3)  # Moodle's own: (3 - 1) / (4 - 1)
    assert (numeric["btec_grade"], numeric["btec_equivalent"], numeric["percentage"]) == (None, "Merit", 60.0)
    assert (scale["student_key"], scale["student_zoho_id"], scale["graded_at"]) == ("zoho:s1", "s1", T0)


@pytest.mark.parametrize(("raw", "expected"), [(7.99, "Refer"), (8.0, "Pass"), (12.0, "Merit"), (14.0, "Distinction")])
def test_a_numeric_boundary_belongs_to_the_higher_grade(college, raw, expected):
    college.land("moodle", "grade_items", [("56", grade_item(56, 4, grade_max=20, scale=False))])
    land_grades(college, report_grade(56, 4, 41, raw, T0))
    college.apply_all()
    assert college.rows("grades")["moodle:56:41"]["btec_equivalent"] == expected


def test_an_assignment_grade_never_overrides_the_gradebook_and_grades_of_non_students_are_left_out(college):
    # As on a real site: graded 64, overridden to 77 in the gradebook, regraded 30 in the assignment.
    college.land("moodle", "grade_items", [("56", grade_item(56, 4, grade_max=100, scale=False))])
    later = T0 + timedelta(days=2)
    land_grades(
        college,
        report_grade(56, 4, 41, 77, T0),
        report_grade(56, 4, 999, 8.0, T0),  # no such student
        assign=[assign_grade(4, 41, "30.00000", later)],
    )
    college.apply_all()
    rows = college.rows("grades")
    assert set(rows) == {"moodle:56:41"}
    assert (rows["moodle:56:41"]["raw_grade"], rows["moodle:56:41"]["graded_at"]) == (77.0, T0)
    assert rows["moodle:56:41"]["btec_equivalent"] == "Distinction"


def real_site_item(item: int, *, itemtype: str, module: str | None, instance: int | None, unit: str | None, **range_):
    """A grade item as a real Moodle 5.1 site reports it: `scaleid` null even on a scale."""
    return {
        "id": item,
        "itemtype": itemtype,
        "itemmodule": module,
        "iteminstance": instance,
        "idnumber": unit,
        "scaleid": None,
        "courseid": COURSE,
        **range_,
    }


def test_a_scale_item_is_recognised_by_its_range_and_every_kind_of_item_is_graded(college):
    college.land(
        "moodle",
        "grade_items",
        [
            # Landed as `source_reads.grade_records` lands them: the range read, a scale marked.
            (
                "21",
                real_site_item(
                    21,
                    itemtype="mod",
                    module="assign",
                    instance=11,
                    unit="U1",
                    grademin=1,
                    grademax=4,
                    rangeformatted="Refer&ndash;Distinction",
                    scale=True,
                ),
            ),
            (
                "20",
                real_site_item(
                    20,
                    itemtype="manual",
                    module=None,
                    instance=None,
                    unit=None,
                    grademin=0,
                    grademax=10,
                    rangeformatted="0&ndash;10",
                    scale=False,
                ),
            ),
            (
                "17",
                real_site_item(
                    17,
                    itemtype="course",
                    module=None,
                    instance=5,
                    unit=None,
                    grademin=0,
                    grademax=34,
                    rangeformatted="0&ndash;34",
                    scale=False,
                ),
            ),
        ],
    )
    merit = {**report_grade(21, 11, 41, 3, T0), "gradeformatted": "Merit"}
    land_grades(college, merit, report_grade(20, None, 41, 5, T0), report_grade(17, 5, 41, 12, T0))
    college.apply_all()
    rows = college.rows("grades")
    assert set(rows) == {"moodle:21:41", "moodle:20:41"}  # a course total is no unit's grade
    scale, manual = rows["moodle:21:41"], rows["moodle:20:41"]
    assert (scale["btec_grade"], scale["unit_zoho_id"], scale["moodle_assignment_id"]) == ("Merit", "u1", 11)
    assert scale["percentage"] == pytest.approx(66.6667, abs=1e-4)
    assert (manual["btec_grade"], manual["btec_equivalent"], manual["percentage"]) == (None, "Pass", 50.0)
    assert (manual["unit_zoho_id"], manual["moodle_assignment_id"]) == (None, None)


def test_a_grade_points_at_the_live_student_of_its_account_not_a_tombstone(college):
    # Account 43 was a Moodle-only student, then linked to a Zoho student: its old row is a tombstone.
    college.users(moodle_user(43, email="late@x.ac.uk"))
    college.enrolments(enrolment(COURSE, 43))
    college.apply_all()
    college.zoho("Students", zoho_student("s3", "S3", "late@x.ac.uk", at=T0 + timedelta(days=1)))
    college.land("moodle", "grade_items", [("56", grade_item(56, 4, grade_max=20, scale=False))])
    land_grades(college, report_grade(56, 4, 43, 10.0, T0))
    college.apply_all()
    assert college.rows("students", live=False)["moodle:43"]["deleted_at"] is not None
    assert college.rows("grades")["moodle:56:43"]["student_key"] == "zoho:s3"


def test_a_grade_gone_from_the_snapshot_is_soft_deleted_by_key(college):
    college.land("moodle", "grade_items", [("56", grade_item(56, 4, grade_max=20, scale=False))])
    land_grades(college, report_grade(56, 4, 41, 10.0, T0))
    college.apply_all()
    college.landed = []
    college.soft_delete("moodle", "grades", "56:41")
    results = college.apply_landed()
    assert college.rows("grades") == {} and results["grades"].counts.deleted == 1
