"""Replays every captured Moodle query (fixtures/moodle_ws/INDEX.tsv) against a sandbox college.

Ids in the captured queries belong to the real capture site, so each is mapped onto the
sandbox college's equivalent (the first course, a student of it who completed it, ...).
Successful answers must have the reference sample's key sets and JSON types, and show every
key the sample shows somewhere (not only the keys it shows on every item); error answers must
equal the captured error body byte for byte (as JSON).
"""

from __future__ import annotations

import json
import re

import pytest

from .conftest import MOODLE_WS, load_reference
from .shapes import json_type, shape_problems, unshown_keys

ROWS = [line.split("\t") for line in (MOODLE_WS / "INDEX.tsv").read_text().splitlines() if line.strip()]

# What Moodle adds when a site has custom profile fields (the sandbox has "crmid"), and the
# BTEC scale the sandbox grades with (the capture site graded numerically only).
EXTRA_KEYS = {
    "$.users[]": {"customfields"},
    "$[]": {"customfields", "institution"},  # the deleted-user capture's site set no institution
    "__subtrees__": {"$.users[].customfields", "$[].customfields"},
}
# The later captures' items were graded with no submission (gradedatesubmitted null); the
# sandbox's students submit first.
# core_enrol_get_users_courses answers `completed` and `progress` null in a course that tracks no
# completion (enrol/externallib.php leaves them null unless `enablecompletion`); every course of the
# capture tracked completion, some of the sandbox's do not.
EXTRA_TYPES = {
    "$.usergrades[].gradeitems[].scaleid": {"number"},
    "$.usergrades[].gradeitems[].gradedatesubmitted": {"number"},
    "$[].completed": {"null"},
    "$[].progress": {"null"},
}
# user_get_user_details() leaves these out when empty (the reference's admin user has none of
# them); sandbox users matched by email only have no idnumber.
MAY_OMIT = frozenset({"idnumber", "institution", "city", "country", "description", "descriptionformat"})
# Keys a sample shows that the replayed answer may never show. core_user_get_users returns
# "preferences" only for the calling user: the capture's criteria matched the admin, the
# replay's (students' email domain) match students only.
# The deleted-user capture's live user had a (blank) description, which the sandbox's users lack.
UNSHOWN_OK = {
    "core_user_get_users": {"$.users[]": {"preferences"}},
    "core_user_get_users_by_field__deleted_user": {"$[]": {"description", "descriptionformat"}},
}


@pytest.fixture(scope="module")
def ids(sandbox):
    """Sandbox ids standing in for the capture site's ids."""
    col = sandbox.college

    def ungraded(c):  # live students of c with an assignment not graded yet (grade items' "status")
        return [
            e.user_id
            for e in c.enrolments
            if e.user_id and not e.m_deleted and any(e.user_id not in a.grades for a in c.assignments)
        ]

    course = next(
        c
        for c in col.courses.values()
        if any((c.id, e.user_id) in col.completions for e in c.enrolments)
        and any(e.user_id and (c.id, e.user_id) not in col.completions and not e.m_deleted for e in c.enrolments)
        and ungraded(c)
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
        # The capture's user 3 had one assignment still ungraded, which is what shows "status".
        "ungraded": col.users[ungraded(course)[0]],
        "teacher": col.users[course.teacher_id],
        "courses": [course.id] + first_courses[:4],
        "service_user": col.admin_id,
        "overridden": _overridden(col, course, done),
        "deleted": next(u.id for u in col.users.values() if u.deleted),
    }


def _overridden(col, course, user_id: int) -> int:
    """The capture's user 4: graded in every item, one grade overridden in the gradebook. The
    student who completed the course (graded in every assignment) is made so."""
    a = next(a for a in course.assignments if not a.scale)
    g = a.grades[user_id]
    g.override, g.overridden_at = (77 if g.raw != 77 else 76) * a.grademax / 100, g.timemodified + 60
    for item in course.manual_items:
        item.grades.setdefault(user_id, (2, g.timemodified))
    return user_id


def translate(name: str, query: str, ids: dict) -> list[tuple[str, str]]:
    import httpx

    course, student = ids["course"], ids["student"]
    out = []
    for key, value in httpx.QueryParams(query).multi_items():
        if key == "courseid" and value.isdigit() and value != "9999":
            value = str(course.id)
        elif key == "userid" and name.endswith("__service_user_not_enrolled"):
            value = str(ids["service_user"])
        elif key == "userid" and value == "0":
            pass  # every user
        elif key == "userid" and name.endswith("__gradebook_override"):
            value = str(ids["overridden"])  # a user graded in every item, one of them overridden
        elif key == "userid" and name.startswith("gradereport_user_get_grade_items"):
            value = str(ids["ungraded"].id)
        elif key == "userid":
            value = str(ids["other"].id if name.endswith("__not_completed") else student.id)
        elif key.startswith("courseids["):
            value = str(ids["courses"][int(key[10:-1])])
        elif key.startswith("assignmentids["):
            value = str(course.assignments[int(key[14:-1])].id)
        elif key == "criteria[0][value]" and value.endswith("@example.com"):
            value = "%@student.example.ac.uk"
        elif key == "values[]":  # "3,48,99999": a user, a deleted user, an id Moodle does not know
            out += [(f"values[{i}]", str(v)) for i, v in enumerate([student.id, ids["deleted"], 99999])]
            continue
        elif key.startswith("values[") and "field=id" in query:
            value = str([student.id, ids["other"].id, ids["teacher"].id][int(key[7:-1])])
        elif key.startswith("values[") and "field=username" in query:
            value = student.username if value.startswith("student") else ids["teacher"].username
        elif key == "value" and value == "MATH101":
            value = course.shortname
        out.append((key, value))
    return out


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_replay_matches_reference(row, moodle, ids, sandbox):
    name, _status, kind, _size, query = row
    # INDEX.tsv leaves tokens out: error_bad_token was a wrong one, error_missing_token none, and
    # the `__without_*_capabilities` captures a service user with too few capabilities (the
    # sandbox's limited token).
    token = None if "(no wstoken)" in query else "not-the-token" if name == "error_bad_token" else "default"
    if " as a service user" in query or " as the same service user" in query:
        token = sandbox.config.moodle_limited_token
    query = query.replace(" (no wstoken)", "").split(" (")[0].split(" as ")[0]
    answer = moodle(translate(name, query, ids), token=token)
    reference = load_reference(name)
    if kind.startswith("error") or name.startswith("error_"):
        # A context error names the course: the capture site's id, or the sandbox's.
        assert re.sub(r"course id:\d+", "course id:N", json.dumps(answer)) == re.sub(
            r"course id:\d+", "course id:N", json.dumps(reference)
        )
        return
    assert answer, f"{name}: empty answer cannot show the reference shape"
    assert unshown_keys(reference, answer, UNSHOWN_OK.get(name)) == []
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


def keyed(d: dict) -> list[tuple[str, str]]:
    """A dict's keys in order, each with the JSON type of its value."""
    return [(k, json_type(v)) for k, v in d.items()]


def test_page_module_carries_contents_as_captured(moodle, sandbox, ids):
    """A page exports its content: its module ends with contents and contentsinfo, keyed, typed
    and ordered as the capture's page; assignments export nothing, as on the capture site."""
    reference = load_reference("core_course_get_contents")
    [ref_page] = [m for s in reference for m in s["modules"] if m["modname"] == "page"]
    answer = moodle(f"wsfunction=core_course_get_contents&courseid={ids['course'].id}")
    assert [list(s) for s in answer] == [list(reference[0])] * len(answer)
    general = answer[0]
    assert (general["section"], general["name"]) == (0, "General")
    [page] = [m for m in general["modules"] if m["modname"] == "page"]
    assert keyed(page) == keyed(ref_page)
    assert [keyed(c) for c in page["contents"]] == [keyed(c) for c in ref_page["contents"]]
    assert keyed(page["contentsinfo"]) == keyed(ref_page["contentsinfo"])
    [content] = page["contents"]
    assert content["fileurl"] == (
        f"{sandbox.moodle_url}/webservice/pluginfile.php/{page['contextid']}"
        "/mod_page/content/index.html?forcedownload=1"
    )
    info = page["contentsinfo"]
    assert info["filescount"] == len(page["contents"])
    assert info["filessize"] == sum(c["filesize"] for c in page["contents"])
    assert info["lastmodified"] == max(c["timemodified"] for c in page["contents"])
    assignments = [m for s in answer for m in s["modules"] if m["modname"] == "assign"]
    assert len(assignments) == len(ids["course"].assignments)
    assert not [m["id"] for m in assignments if "contents" in m or "contentsinfo" in m]
    module_ids = [m["id"] for s in answer for m in s["modules"]]
    assert len(set(module_ids)) == len(module_ids)


def test_ungraded_items_carry_status_as_captured(moodle, ids):
    """An item without a grade says status "novalue" (its aggregation hint), placed after
    weightformatted as in the capture; graded items and the course total have no status."""
    [ref_user] = load_reference("gradereport_user_get_grade_items")["usergrades"]
    ref_items = ref_user["gradeitems"]
    ref_novalue = next(i for i in ref_items if i["itemtype"] == "mod" and "status" in i)
    ref_graded = next(i for i in ref_items if i["itemtype"] == "mod" and "status" not in i)
    ref_total = next(i for i in ref_items if i["itemtype"] == "course")
    assert ref_novalue["status"] == "novalue"
    user = ids["ungraded"]
    answer = moodle(f"wsfunction=gradereport_user_get_grade_items&courseid={ids['course'].id}&userid={user.id}")
    [usergrades] = answer["usergrades"]
    items = usergrades["gradeitems"]
    ungraded = [i for i in items if i["itemtype"] == "mod" and i["graderaw"] is None]
    assert ungraded, "the chosen user has an ungraded assignment"
    assert {i["itemtype"] for i in items} == {"mod", "manual", "course"}

    def keys(ref: dict, item: dict) -> list[str]:
        # A manual item is a module's item without a course module (as captured: no cmid).
        return [k for k in ref if item["itemtype"] == "mod" or k != "cmid"]

    for item in items:
        if item["itemtype"] == "course":
            assert list(item) == list(ref_total)
        elif item["graderaw"] is None:
            assert list(item) == keys(ref_novalue, item)
            assert item["status"] == "novalue"
        else:
            assert list(item) == keys(ref_graded, item)
