"""Replays every captured Moodle query (fixtures/moodle_ws/INDEX.tsv) against a sandbox college.

Ids in the captured queries belong to the real capture site, so each is mapped onto the
sandbox college's equivalent (the first course, a student of it who completed it, ...).
Successful answers must have the reference sample's key sets and JSON types; error answers
must equal the captured error body byte for byte (as JSON).
"""

from __future__ import annotations

import pytest

from .conftest import MOODLE_WS, load_reference
from .shapes import shape_problems

ROWS = [line.split("\t") for line in (MOODLE_WS / "INDEX.tsv").read_text().splitlines() if line.strip()]

# What Moodle adds when a site has custom profile fields (the sandbox has "crmid"), and the
# BTEC scale the sandbox grades with (the capture site graded numerically only).
EXTRA_KEYS = {
    "$.users[]": {"customfields"},
    "$[]": {"customfields"},
    "__subtrees__": {"$.users[].customfields", "$[].customfields"},
}
EXTRA_TYPES = {"$.usergrades[].gradeitems[].scaleid": {"number"}}
# user_get_user_details() leaves these out when empty (the reference's admin user has none of
# them); sandbox users matched by email only have no idnumber.
MAY_OMIT = frozenset({"idnumber", "institution", "city", "country"})


@pytest.fixture(scope="module")
def ids(sandbox):
    """Sandbox ids standing in for the capture site's ids."""
    col = sandbox.college
    course = next(
        c
        for c in col.courses.values()
        if any((c.id, e.user_id) in col.completions for e in c.enrolments)
        and any(e.user_id and (c.id, e.user_id) not in col.completions and not e.m_deleted for e in c.enrolments)
    )
    done = next(e.user_id for e in course.enrolments if (course.id, e.user_id) in col.completions)
    not_done = next(e.user_id for e in course.enrolments if e.user_id and (course.id, e.user_id) not in col.completions)
    first_courses = sorted(col.courses)[:5]
    if course.id in first_courses:
        first_courses.remove(course.id)
    return {
        "course": course,
        "student": col.users[done],
        "other": col.users[not_done],
        "teacher": col.users[course.teacher_id],
        "courses": [course.id] + first_courses[:4],
    }


def translate(name: str, query: str, ids: dict) -> list[tuple[str, str]]:
    import httpx

    course, student = ids["course"], ids["student"]
    out = []
    for key, value in httpx.QueryParams(query).multi_items():
        if key == "courseid" and value.isdigit() and value != "9999":
            value = str(course.id)
        elif key == "userid":
            value = str(ids["other"].id if name.endswith("__not_completed") else student.id)
        elif key.startswith("courseids["):
            value = str(ids["courses"][int(key[10:-1])])
        elif key.startswith("assignmentids["):
            value = str(course.assignments[int(key[14:-1])].id)
        elif key == "criteria[0][value]" and value.endswith("@example.com"):
            value = "%@student.example.ac.uk"
        elif key.startswith("values[") and "field=id" in query:
            value = str([student.id, ids["other"].id, ids["teacher"].id][int(key[7:-1])])
        elif key.startswith("values[") and "field=username" in query:
            value = student.username if value.startswith("student") else ids["teacher"].username
        elif key == "value" and value == "MATH101":
            value = course.shortname
        out.append((key, value))
    return out


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_replay_matches_reference(row, moodle, ids):
    name, _status, kind, _size, query = row
    # INDEX.tsv leaves tokens out: error_bad_token was a wrong one, error_missing_token none.
    token = None if "(no wstoken)" in query else "not-the-token" if name == "error_bad_token" else "default"
    query = query.replace(" (no wstoken)", "")
    answer = moodle(translate(name, query, ids), token=token)
    reference = load_reference(name)
    if kind.startswith("error") or name.startswith("error_"):
        assert answer == reference
        return
    assert answer, f"{name}: empty answer cannot show the reference shape"
    if name.startswith("core_completion_get_course_completion_status"):
        # Two captures of one function (a user who completed, one who did not): pool them.
        reference = [
            load_reference("core_completion_get_course_completion_status"),
            load_reference("core_completion_get_course_completion_status__not_completed"),
        ]
        answer = [answer]
    assert shape_problems(reference, answer, EXTRA_KEYS, EXTRA_TYPES, MAY_OMIT) == []


def test_replay_answers_are_not_trivially_empty(moodle, ids):
    """The shape test above is only meaningful if the lists it compares have items."""
    course = ids["course"]
    users = moodle(f"wsfunction=core_enrol_get_enrolled_users&courseid={course.id}")
    assert len(users) == len([e for e in course.enrolments if not e.m_deleted]) + 1  # + the teacher
    grades = moodle(f"wsfunction=mod_assign_get_grades&assignmentids[0]={course.assignments[0].id}")
    assert grades["assignments"][0]["grades"]
