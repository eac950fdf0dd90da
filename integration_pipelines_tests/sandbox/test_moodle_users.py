"""Milestone-1 Moodle behaviour: site info, users, users by field, errors."""

from __future__ import annotations

from .conftest import load_reference
from .shapes import shape_problems

# Moodle adds "customfields" to a USER when a custom profile field holds a value (API_NOTES
# A3); the reference site had no custom profile fields, so the key is allowed on top of it.
USER_EXTRAS = {
    "$.users[]": {"customfields"},
    "$[]": {"customfields"},
    "__subtrees__": {"$.users[].customfields", "$[].customfields"},
}


def test_get_users_has_reference_shape(moodle):
    answer = moodle("wsfunction=core_user_get_users&criteria[0][key]=email&criteria[0][value]=%25")
    assert answer["warnings"] == []
    assert len(answer["users"]) > 50
    assert shape_problems(load_reference("core_user_get_users"), answer, USER_EXTRAS) == []


def test_get_users_like_is_case_insensitive_ordered_and_skips_deleted(moodle, sandbox):
    answer = moodle("wsfunction=core_user_get_users&criteria[0][key]=email&criteria[0][value]=%25STUDENT.EXAMPLE%25")
    ids = [u["id"] for u in answer["users"]]
    assert ids == sorted(ids)
    live_students = [
        u for u in sandbox.college.users.values() if not u.deleted and "student.example" in u.email.lower()
    ]
    assert len(ids) == len(live_students)
    deleted = [u.id for u in sandbox.college.users.values() if u.deleted]
    assert deleted and not set(deleted) & set(ids)


def test_get_users_criteria_are_anded_and_unknown_key_warns(moodle, sandbox):
    user = next(u for u in sandbox.college.users.values() if u.idnumber.startswith("S") and not u.deleted)
    answer = moodle(
        [
            ("wsfunction", "core_user_get_users"),
            ("criteria[0][key]", "lastname"),
            ("criteria[0][value]", user.lastname[:2] + "%"),
            ("criteria[1][key]", "idnumber"),
            ("criteria[1][value]", user.idnumber),
            ("criteria[2][key]", "shoesize"),
            ("criteria[2][value]", "9"),
        ]
    )
    assert [u["id"] for u in answer["users"]] == [user.id]
    assert answer["warnings"][0]["warningcode"] == "invalidfieldparameter"


def test_users_by_field_is_a_bare_array_with_reference_shape(moodle, sandbox):
    ids = sorted(u.id for u in sandbox.college.users.values() if not u.deleted)[1:4]
    answer = moodle(
        "wsfunction=core_user_get_users_by_field&field=id" + "".join(f"&values[{i}]={v}" for i, v in enumerate(ids))
    )
    assert isinstance(answer, list)
    assert [u["id"] for u in answer] == ids
    assert shape_problems(load_reference("core_user_get_users_by_field"), answer, USER_EXTRAS) == []


def test_crmid_custom_field_carries_the_zoho_id(moodle, sandbox):
    user = next(u for u in sandbox.college.users.values() if u.crmid)
    [answer] = moodle(f"wsfunction=core_user_get_users_by_field&field=username&values[0]={user.username}")
    assert answer["customfields"] == [
        {"type": "text", "value": user.crmid, "displayvalue": user.crmid, "name": "CRM ID", "shortname": "crmid"}
    ]


def test_site_info_shape(moodle, sandbox):
    answer = moodle("wsfunction=core_webservice_get_site_info")
    assert answer["siteurl"] == sandbox.moodle_url
    assert shape_problems(load_reference("core_webservice_get_site_info"), answer) == []


def test_errors_are_http_200_with_reference_bodies(moodle):
    assert moodle("wsfunction=core_webservice_get_site_info", token="wrong") == load_reference("error_bad_token")
    assert moodle("wsfunction=core_webservice_get_site_info", token=None) == load_reference("error_missing_token")
    assert moodle("wsfunction=core_user_create_users") == load_reference("error_function_not_in_service")
    assert moodle("wsfunction=no_such_function") == load_reference("error_unknown_function")
    assert moodle("wsfunction=core_user_get_users_by_field&field=id&values[0]=abc") == load_reference(
        "error_bad_parameter"
    )


def test_post_form_is_accepted(moodle):
    answer = moodle(
        [("wsfunction", "core_user_get_users_by_field"), ("field", "username"), ("values[0]", "admin")], method="POST"
    )
    assert answer[0]["username"] == "admin"


def test_users_courses_lists_active_enrolments_only(moodle, sandbox):
    """As enrol_get_all_users_courses($userid, true): a suspended enrolment is left out, a suspended
    account's active enrolments are not; completion fields are null where completion is not tracked."""
    col = sandbox.college

    def listed(user_id: int) -> dict[int, dict]:
        answer = moodle(f"wsfunction=core_enrol_get_users_courses&userid={user_id}&returnusercount=0")
        return {c["id"]: c for c in answer}

    def live(user_id: int) -> list:
        return [e for e in col.user_enrolments.get(user_id, ()) if not e.m_deleted]

    mixed = next(
        u
        for u in col.users.values()
        if not u.deleted and {e.m_status for e in live(u.id)} == {0, 1} and not u.is_teacher
    )
    assert set(listed(mixed.id)) == {e.course_id for e in live(mixed.id) if e.m_status == 0}
    suspended_account = next(
        u for u in col.users.values() if u.suspended and not u.deleted and any(e.m_status == 0 for e in live(u.id))
    )
    assert set(listed(suspended_account.id)) == {e.course_id for e in live(suspended_account.id) if e.m_status == 0}

    untracked = next(
        (u.id, e.course_id)
        for u in col.users.values()
        if not u.deleted
        for e in live(u.id)
        if e.m_status == 0 and not col.courses[e.course_id].completion_enabled
    )
    course = listed(untracked[0])[untracked[1]]
    assert course["enablecompletion"] is False and course["completionusertracked"] is False
    assert course["completed"] is None and course["progress"] is None


def test_users_courses_leave_out_what_the_service_user_may_not_see(moodle, sandbox):
    """A token that cannot enter the courses (no moodle/course:view) gets no course, and no error."""
    student = next(e.user_id for c in sandbox.college.courses.values() for e in c.enrolments if e.m_status == 0)
    query = f"wsfunction=core_enrol_get_users_courses&userid={student}"
    assert moodle(query)
    assert moodle(query, token=sandbox.config.moodle_limited_token) == []
