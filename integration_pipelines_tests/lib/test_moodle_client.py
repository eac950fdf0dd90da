"""Unit tests for the Moodle WS client, against an in-process fake (httpx.MockTransport)."""

from __future__ import annotations

import json
import logging
import math
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from integration_pipelines.lib.http import ClientError, RetryPolicy, TransportFailure
from integration_pipelines.lib.moodle import (
    MoodleAccessError,
    MoodleAuthError,
    MoodleClient,
    MoodleCompletion,
    MoodleCourse,
    MoodleEnrolment,
    MoodleError,
    MoodleGrade,
    MoodleHTTPError,
    MoodleInvalidParameter,
    MoodleNotFound,
    MoodlePermissionError,
    MoodleResponseError,
    MoodleServerError,
    MoodleTransportError,
    MoodleUser,
    MoodleWSError,
    encode_params,
    parse_assign_grade,
)

REFERENCE = Path("/work/shared/reference/moodle_ws")
TOKEN = "tok-5ecr3t-moodle-0123456789abcdef"
BASE = "https://lms.example.test"


class Sleeps(list):
    """A ``sleep`` that records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(handler, **kwargs: Any) -> tuple[MoodleClient, Sleeps]:
    sleeps = Sleeps()
    kwargs.setdefault(
        "retry", RetryPolicy(max_attempts=4, initial_wait=0.01, max_wait=0.05, jitter=0.0, max_retry_after=60)
    )
    client = MoodleClient(BASE, TOKEN, transport=httpx.MockTransport(handler), sleep=sleeps, **kwargs)
    return client, sleeps


def form(request: httpx.Request) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(request.content.decode(), keep_blank_values=True))


# --------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------


def test_bracket_encoding_matches_moodle_examples() -> None:
    assert encode_params({"criteria": [{"key": "email", "value": "%"}]}) == [
        ("criteria[0][key]", "email"),
        ("criteria[0][value]", "%"),
    ]
    assert encode_params({"options": {"ids": [7]}}) == [("options[ids][0]", "7")]
    assert encode_params({"assignmentids": [3, 4]}) == [("assignmentids[0]", "3"), ("assignmentids[1]", "4")]
    assert encode_params({"options": [{"name": "limitnumber", "value": 100}]}) == [
        ("options[0][name]", "limitnumber"),
        ("options[0][value]", "100"),
    ]
    assert encode_params({"a": True, "b": False, "c": None, "d": 0}) == [("a", "1"), ("b", "0"), ("d", "0")]


@given(
    st.dictionaries(
        st.from_regex(r"[a-z]{1,6}", fullmatch=True),
        st.recursive(
            st.integers(-5, 5) | st.booleans() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.from_regex(r"[a-z]{1,4}", fullmatch=True), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=4,
    )
)
def test_bracket_encoding_keeps_every_leaf_at_its_path(params: dict) -> None:
    def leaves(prefix: str, value: Any) -> list[tuple[str, str]]:
        if isinstance(value, dict):
            return [p for k, v in value.items() for p in leaves(f"{prefix}[{k}]", v)]
        if isinstance(value, list):
            return [p for i, v in enumerate(value) for p in leaves(f"{prefix}[{i}]", v)]
        if isinstance(value, bool):
            return [(prefix, "1" if value else "0")]
        return [(prefix, str(value))]

    expected = [p for k, v in params.items() for p in leaves(k, v)]
    assert encode_params(params) == expected


def test_parse_assign_grade() -> None:
    assert parse_assign_grade("3.00000") == 3.0
    assert parse_assign_grade("-1.00000") is None
    assert parse_assign_grade("") is None
    assert parse_assign_grade(None) is None


# --------------------------------------------------------------------------------------
# the call: transport, token placement, errors
# --------------------------------------------------------------------------------------


def test_call_posts_form_body_with_token_out_of_url() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"sitename": "X"})

    client, _ = make_client(handler)
    assert client.call("core_webservice_get_site_info", options={"ids": [7]}) == {"sitename": "X"}
    (req,) = seen
    assert req.method == "POST"
    assert str(req.url) == BASE + "/webservice/rest/server.php"
    assert TOKEN not in str(req.url)
    body = form(req)
    assert body["wstoken"] == TOKEN
    assert body["wsfunction"] == "core_webservice_get_site_info"
    assert body["moodlewsrestformat"] == "json"
    assert body["options[ids][0]"] == "7"
    assert client.counter.total == 1
    assert client.counter["core_webservice_get_site_info"] == 1


ERROR_CASES = [
    ("error_bad_token.json", MoodleAuthError),
    ("error_missing_token.json", MoodleAuthError),
    ("error_function_not_in_service.json", MoodleAccessError),
    ("error_bad_parameter.json", MoodleInvalidParameter),
    ("error_missing_parameter.json", MoodleInvalidParameter),
    ("error_nonexistent_course.json", MoodleNotFound),
    ("error_unknown_function.json", MoodleNotFound),
]


@pytest.mark.parametrize(("capture", "error_cls"), ERROR_CASES)
def test_captured_errors_with_http_200_map_to_typed_errors_without_retry(capture: str, error_cls: type) -> None:
    payload = json.loads((REFERENCE / capture).read_text())

    client, sleeps = make_client(lambda r: httpx.Response(200, json=payload))
    with pytest.raises(error_cls) as info:
        client.call("core_enrol_get_enrolled_users", courseid=2)
    err = info.value
    assert isinstance(err, MoodleWSError)
    assert err.errorcode == payload["errorcode"]
    assert err.exception == payload["exception"]
    assert client.counter.total == 1, "a Moodle-level error must not be retried"
    assert sleeps == []


def test_invalidtoken_names_the_setting_and_hides_the_token() -> None:
    payload = json.loads((REFERENCE / "error_bad_token.json").read_text())
    client, _ = make_client(lambda r: httpx.Response(200, json=payload))
    with pytest.raises(MoodleAuthError) as info:
        client.site_info()
    text = str(info.value)
    assert "MOODLE_TOKEN was rejected by Moodle (invalidtoken" in text
    assert TOKEN not in text and TOKEN not in repr(info.value)
    assert client.counter.total == 1


def test_capability_error_is_a_permission_error() -> None:
    payload = {
        "exception": "required_capability_exception",
        "errorcode": "nopermissions",
        "message": "Sorry, but you do not currently have permissions to do that (View all grades).",
    }
    client, _ = make_client(lambda r: httpx.Response(200, json=payload))
    with pytest.raises(MoodlePermissionError):
        client.iter_course_grades(2).__next__()


def test_an_error_object_is_an_error_even_for_array_functions() -> None:
    client, _ = make_client(
        lambda r: httpx.Response(
            200, json={"exception": "moodle_exception", "errorcode": "somethingelse", "message": "m"}
        )
    )
    with pytest.raises(MoodleWSError) as info:
        list(client.iter_courses())
    assert info.value.errorcode == "somethingelse"
    assert not info.value.retryable


def test_rest_disabled_403_is_an_access_error_not_retried() -> None:
    client, _ = make_client(lambda r: httpx.Response(403, content=b""))
    with pytest.raises(MoodleAccessError) as info:
        client.site_info()
    assert info.value.status_code == 403
    assert client.counter.total == 1


def test_404_names_moodle_url() -> None:
    client, _ = make_client(lambda r: httpx.Response(404, text="Not found"))
    with pytest.raises(MoodleHTTPError, match="MOODLE_URL"):
        client.site_info()
    assert client.counter.total == 1


def scripted(*responses: Any):
    """A handler answering from a script; an Exception in the script is raised."""
    script = list(responses)
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        item = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(item, Exception):
            raise item
        return item

    handler.calls = calls  # type: ignore[attr-defined]
    return handler


def test_5xx_and_transport_errors_are_retried_then_succeed() -> None:
    handler = scripted(
        httpx.Response(503),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        httpx.Response(200, json=[{"id": 2, "format": "topics"}]),
    )
    client, sleeps = make_client(handler)
    courses = list(client.iter_courses())
    assert [c.id for c in courses] == [2]
    assert client.counter.total == 4
    assert client.counter.retries == 3
    assert len(sleeps) == 3
    assert client.counter.by_status["transport"] == 2


def test_retry_after_is_honoured() -> None:
    handler = scripted(
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, json={"sitename": "S"}),
    )
    client, sleeps = make_client(handler)
    assert client.site_info() == {"sitename": "S"}
    assert sleeps == [7.0]


def test_retry_after_is_capped() -> None:
    handler = scripted(httpx.Response(503, headers={"Retry-After": "100000"}), httpx.Response(200, json={}))
    client, sleeps = make_client(handler, retry=RetryPolicy(max_attempts=2, max_retry_after=3.0))
    client.site_info()
    assert sleeps == [3.0]


def test_attempts_run_out_with_a_typed_error() -> None:
    client, sleeps = make_client(scripted(httpx.Response(500)))
    with pytest.raises(MoodleServerError) as info:
        client.site_info()
    assert info.value.status_code == 500
    assert client.counter.total == 4
    assert len(sleeps) == 3


def test_call_once_does_not_retry() -> None:
    client, sleeps = make_client(scripted(httpx.Response(503)))
    with pytest.raises(MoodleServerError):
        client.call_once("core_user_create_users", users=[{"username": "x"}])
    assert client.counter.total == 1 and sleeps == []


def test_non_json_body_is_retried_then_reported() -> None:
    client, _ = make_client(scripted(httpx.Response(200, text=f"<html>Notice: wstoken={TOKEN}</html>")))
    with pytest.raises(MoodleResponseError) as info:
        client.site_info()
    assert TOKEN not in str(info.value)
    assert client.counter.total == 4


def test_transport_error_text_cannot_leak_the_token() -> None:
    # Even if an httpx error message quoted a URL with the token, the client's error would not.
    leaky = httpx.ConnectError(f"cannot connect to {BASE}/webservice/rest/server.php?wstoken={TOKEN}")
    client, _ = make_client(scripted(leaky), retry=RetryPolicy(max_attempts=2, initial_wait=0, jitter=0))
    with pytest.raises(MoodleTransportError) as info:
        client.site_info()
    err = info.value
    assert isinstance(err, TransportFailure) and isinstance(err, MoodleError) and isinstance(err, ClientError)
    assert TOKEN not in str(err) and TOKEN not in repr(err)
    assert "wstoken=***" in str(err)
    assert err.__context__ is None and err.__cause__ is None


def test_secrets_absent_from_repr_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    handler = scripted(
        httpx.Response(503),
        httpx.Response(
            200, json={"users": [], "warnings": [{"item": "x", "warningcode": "w", "message": f"token {TOKEN}"}]}
        ),
    )
    client, _ = make_client(handler)
    client.call("core_user_get_users", criteria=[{"key": "email", "value": "%"}])
    assert TOKEN not in repr(client)
    assert TOKEN not in str(vars(client).get("_token"))
    assert caplog.records, "the client should have logged the retry and the warning"
    for record in caplog.records:
        assert TOKEN not in record.getMessage()


# --------------------------------------------------------------------------------------
# warnings
# --------------------------------------------------------------------------------------


def test_warnings_are_kept_logged_and_passed_to_the_callback(caplog: pytest.LogCaptureFixture) -> None:
    answer = json.loads((REFERENCE / "mod_assign_get_assignments__course_without_includenotenrolled.json").read_text())
    got = []
    client, _ = make_client(lambda r: httpx.Response(200, json=answer), on_warning=got.append)
    with caplog.at_level(logging.WARNING, logger="integration_pipelines.lib.moodle"):
        assert list(client.iter_assignments([3])) == []
    assert len(client.warnings) == 1 and got == list(client.warnings)
    w = client.warnings[0]
    assert (w.wsfunction, w.item, w.itemid, w.warningcode) == ("mod_assign_get_assignments", "course", 3, "2")
    assert any("not enrolled" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------------------
# typed helpers
# --------------------------------------------------------------------------------------


def test_iter_courses_skips_the_front_page_and_sends_ids() -> None:
    captured = json.loads((REFERENCE / "core_course_get_courses.json").read_text())
    handler = scripted(httpx.Response(200, json=captured))
    client, _ = make_client(handler)
    courses = list(client.iter_courses(ids=[2, 3]))
    assert all(isinstance(c, MoodleCourse) and c.kind == "course" for c in courses)
    assert 1 not in {c.id for c in courses}
    assert len(courses) == len(captured) - 1
    body = form(handler.calls[0])
    assert body["options[ids][0]"] == "2" and body["options[ids][1]"] == "3"


@pytest.mark.parametrize(("n_users", "page_size", "expected_requests"), [(5, 2, 3), (4, 2, 3), (3, 10, 1), (0, 10, 1)])
def test_enrolled_users_are_paged(n_users: int, page_size: int, expected_requests: int) -> None:
    users = [{"id": 100 + i, "roles": [{"shortname": "student"}]} for i in range(n_users)]
    offsets = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = form(request)
        opts = {body[f"options[{i}][name]"]: body[f"options[{i}][value]"] for i in range(4)}
        assert opts["sortby"] == "id"
        start, limit = int(opts["limitfrom"]), int(opts["limitnumber"])
        offsets.append(start)
        return httpx.Response(200, json=users[start : start + limit])

    client, _ = make_client(handler, page_size=page_size)
    got = list(client.iter_enrolled_users(7))
    assert [e.user_id for e in got] == [u["id"] for u in users]
    assert all(isinstance(e, MoodleEnrolment) and e.course_id == 7 and e.roles == ("student",) for e in got)
    assert client.counter.total == expected_requests
    assert offsets == [i * page_size for i in range(expected_requests)]


def test_users_by_id_batches_and_dedupes() -> None:
    batches = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = form(request)
        assert body["field"] == "id"
        ids = [int(v) for k, v in body.items() if k.startswith("values[")]
        batches.append(ids)
        return httpx.Response(200, json=[{"id": i, "email": f"u{i}@x"} for i in ids])

    client, _ = make_client(handler)
    ids = list(range(1, 251)) + list(range(1, 50))
    users = list(client.iter_users_by_id(ids))
    assert [len(b) for b in batches] == [100, 100, 50]
    assert sorted(u.id for u in users) == list(range(1, 251))
    assert all(isinstance(u, MoodleUser) for u in users)


def test_course_grades_all_users_in_one_call() -> None:
    captured = json.loads((REFERENCE / "gradereport_user_get_grade_items__all_users.json").read_text())
    handler = scripted(httpx.Response(200, json=captured))
    client, _ = make_client(handler)
    grades = list(client.iter_course_grades(2))
    body = form(handler.calls[0])
    assert body["courseid"] == "2" and body["userid"] == "0"
    assert client.counter.total == 1
    expected = sum(len(u["gradeitems"]) for u in captured["usergrades"])
    assert len(grades) == expected
    assert len({g.user_id for g in grades}) == len(captured["usergrades"])
    assert all(isinstance(g, MoodleGrade) and g.course_id == 2 for g in grades)
    assert any(g.data["itemtype"] == "course" for g in grades)


def test_assign_grades_since_and_parsing() -> None:
    answer = {
        "assignments": [
            {
                "assignmentid": 3,
                "grades": [
                    {"id": 1, "userid": 42, "timemodified": 1716900000, "grade": "3.00000"},
                    {"id": 2, "userid": 43, "timemodified": 1716900001, "grade": "-1.00000"},
                ],
            }
        ],
        "warnings": [{"item": "assignment", "itemid": 4, "warningcode": "3", "message": "No grades found"}],
    }
    handler = scripted(httpx.Response(200, json=answer))
    client, _ = make_client(handler)
    grades = list(client.iter_assign_grades([3, 4, 3], since=1716000000))
    body = form(handler.calls[0])
    assert body["since"] == "1716000000"
    assert (body["assignmentids[0]"], body["assignmentids[1]"]) == ("3", "4") and "assignmentids[2]" not in body
    assert [(g.assignment_id, g.user_id, g.grade) for g in grades] == [(3, 42, 3.0), (3, 43, None)]
    assert client.warnings[-1].warningcode == "3"


def test_assignments_send_includenotenrolledcourses() -> None:
    captured = json.loads((REFERENCE / "mod_assign_get_assignments.json").read_text())
    handler = scripted(httpx.Response(200, json=captured))
    client, _ = make_client(handler)
    assignments = list(client.iter_assignments([2, 3, 4, 5, 6]))
    body = form(handler.calls[0])
    assert body["includenotenrolledcourses"] == "1"
    assert len(assignments) == sum(len(c["assignments"]) for c in captured["courses"])
    assert {a.course_id for a in assignments} <= {2, 3, 4, 5, 6}


# --------------------------------------------------------------------------------------
# the crawl
# --------------------------------------------------------------------------------------


class FakeSite:
    """A tiny Moodle: courses with enrolments, users, grades and completion."""

    def __init__(self, n_courses: int, n_users: int, per_course: int) -> None:
        self.courses = [{"id": 10 + c, "format": "topics", "enablecompletion": 1} for c in range(n_courses)]
        self.users = {1000 + u: {"id": 1000 + u, "email": f"s{u}@college.test"} for u in range(n_users)}
        uids = sorted(self.users)
        self.enrol = {
            c["id"]: [uids[(i + k * 7) % n_users] for k in range(per_course)] for i, c in enumerate(self.courses)
        }
        for cid in self.enrol:
            self.enrol[cid] = sorted(set(self.enrol[cid]))
        # Every fifth enrolment is suspended (Moodle's enrolment status, not the account's).
        self.suspended = {(cid, u) for cid, us in self.enrol.items() for u in us[::5]}
        # Even users completed their courses, suspended enrolments included.
        self.completed = {(cid, u) for cid, us in self.enrol.items() for u in us if u % 2 == 0}
        self.calls: list[str] = []
        self.asked: list[tuple[int, int]] = []  # core_completion_get_course_completion_status's pairs

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = form(request)
        fn = body["wsfunction"]
        self.calls.append(fn)
        if fn == "core_course_get_courses":
            return httpx.Response(200, json=[{"id": 1, "format": "site"}, *self.courses])
        if fn == "core_enrol_get_enrolled_users":
            cid = int(body["courseid"])
            opts = {body[k]: body[k.replace("[name]", "[value]")] for k in body if k.endswith("[name]")}
            start, limit = int(opts["limitfrom"]), int(opts["limitnumber"])
            rows = [u for u in self.enrol[cid] if opts.get("onlysuspended") != "1" or (cid, u) in self.suspended]
            rows = rows[start : start + limit]
            return httpx.Response(200, json=[{"id": u, "roles": [{"shortname": "student"}]} for u in rows])
        if fn == "core_user_get_users_by_field":
            ids = [int(v) for k, v in body.items() if k.startswith("values[")]
            return httpx.Response(200, json=[self.users[i] for i in ids])
        if fn == "gradereport_user_get_grade_items":
            cid = int(body["courseid"])
            return httpx.Response(
                200,
                json={
                    "usergrades": [
                        {"courseid": cid, "userid": u, "gradeitems": [{"id": 1, "itemtype": "course", "graderaw": 50}]}
                        for u in self.enrol[cid]
                    ],
                    "warnings": [],
                },
            )
        if fn == "core_enrol_get_users_courses":
            # Active enrolments only, as Moodle lists them.
            uid = int(body["userid"])
            return httpx.Response(
                200,
                json=[
                    {
                        "id": cid,
                        "enablecompletion": True,
                        "completionusertracked": True,
                        "completed": (cid, uid) in self.completed,
                        "progress": 100.0 if (cid, uid) in self.completed else 50.0,
                    }
                    for cid, us in self.enrol.items()
                    if uid in us and (cid, uid) not in self.suspended
                ],
            )
        if fn == "core_completion_get_course_completion_status":
            pair = (int(body["courseid"]), int(body["userid"]))
            self.asked.append(pair)
            if pair in self.suspended:  # core Moodle tracks active enrolments only
                return httpx.Response(
                    200, json={"exception": "moodle_exception", "errorcode": "usernotenroled", "message": "?"}
                )
            done = pair in self.completed
            criterion = {"complete": done, "timecompleted": 1_700_000_000 + pair[1] if done else None}
            return httpx.Response(
                200,
                json={
                    "completionstatus": {"completed": done, "aggregation": 1, "completions": [criterion]},
                    "warnings": [],
                },
            )
        return httpx.Response(200, json={"exception": "x", "errorcode": "invalidrecordunknown", "message": "?"})


def test_snapshot_crawl_streams_every_kind_within_the_request_budget() -> None:
    site = FakeSite(n_courses=6, n_users=230, per_course=60)
    client, _ = make_client(site, page_size=25)
    records = list(client.crawl_snapshot())
    by_kind: dict[str, list] = {}
    for r in records:
        by_kind.setdefault(r.kind, []).append(r)
    enrolled_users = {u for us in site.enrol.values() for u in us}
    assert len(by_kind["course"]) == 6
    assert len(by_kind["enrolment"]) == sum(len(v) for v in site.enrol.values())
    assert sorted(u.id for u in by_kind["user"]) == sorted(enrolled_users), "each distinct user exactly once"
    assert len(by_kind["grade"]) == len(by_kind["enrolment"])
    assert "completion" not in by_kind
    n_courses, n_users = 6, len(enrolled_users)
    assert site.calls.count("core_user_get_users_by_field") == math.ceil(n_users / 100)
    assert client.counter.total == len(site.calls)
    pages = sum(len(v) // 25 + 1 for v in site.enrol.values())
    assert client.counter.total == 1 + pages + n_courses + math.ceil(n_users / 100)


def test_a_concurrent_crawl_yields_what_a_sequential_one_does_in_the_same_order() -> None:
    sequential_site, concurrent_site = (FakeSite(n_courses=12, n_users=330, per_course=45) for _ in range(2))
    sequential, _ = make_client(sequential_site, page_size=20)
    concurrent, _ = make_client(concurrent_site, page_size=20)
    expected = list(sequential.crawl_snapshot(enrolment_status=True, completions="per_user"))
    assert list(concurrent.crawl_snapshot(enrolment_status=True, completions="per_user", concurrency=4)) == expected
    assert {r.kind for r in expected} == {"course", "enrolment", "user", "grade", "completion"}
    assert Counter(concurrent_site.calls) == Counter(sequential_site.calls)
    assert concurrent.counter.total == sequential.counter.total


def test_enrolment_status_marks_suspended_enrolments_for_one_request_per_course() -> None:
    site = FakeSite(n_courses=4, n_users=50, per_course=12)
    client, _ = make_client(site)
    without = [r for r in client.crawl_snapshot(grades=False) if r.kind == "enrolment"]
    assert {e.suspended for e in without} == {None}
    before = site.calls.count("core_enrol_get_enrolled_users")
    enrolments = [r for r in client.crawl_snapshot(grades=False, enrolment_status=True) if r.kind == "enrolment"]
    assert {(e.course_id, e.user_id) for e in enrolments if e.suspended} == site.suspended
    assert all(e.suspended is False for e in enrolments if (e.course_id, e.user_id) not in site.suspended)
    assert site.calls.count("core_enrol_get_enrolled_users") - before == 2 * len(site.courses)


def test_snapshot_crawl_meets_the_budget_with_default_page_size() -> None:
    site = FakeSite(n_courses=8, n_users=300, per_course=40)
    client, _ = make_client(site)
    records = list(client.crawl_snapshot())
    users = len({u for us in site.enrol.values() for u in us})
    assert client.counter.total <= 3 * 8 + math.ceil(users / 100)
    assert {r.kind for r in records} == {"course", "enrolment", "user", "grade"}


def test_snapshot_users_stream_before_the_crawl_ends() -> None:
    site = FakeSite(n_courses=5, n_users=400, per_course=80)
    client, _ = make_client(site)
    kinds = [r.kind for r in client.crawl_snapshot()]
    last_course = max(i for i, k in enumerate(kinds) if k == "course")
    assert kinds.index("user") < last_course, "user batches must be yielded as they fill, not at the end"


def test_completions_cost_one_request_per_user_and_one_per_newly_completed_enrolment() -> None:
    site = FakeSite(n_courses=3, n_users=20, per_course=10)
    client, _ = make_client(site)
    records = list(client.crawl_snapshot(enrolment_status=True, completions="per_user"))
    comps = {(c.course_id, c.user_id): c for c in records if isinstance(c, MoodleCompletion)}
    pairs = {(cid, u) for cid, us in site.enrol.items() for u in us}
    active = pairs - site.suspended
    assert site.calls.count("core_enrol_get_users_courses") == len({u for _, u in active})
    # The completed active enrolments are asked their time; the suspended ones one by one, and
    # Moodle answers usernotenroled for them: they land as unknown, not to be asked again.
    assert sorted(site.asked) == sorted((active & site.completed) | site.suspended)
    assert set(comps) == pairs
    for pair, c in comps.items():
        if pair in site.suspended:
            assert c.completed is None and c.source == "core_completion_get_course_completion_status"
        elif pair in site.completed:
            assert c.completed is True and c.source == "core_completion_get_course_completion_status"
            assert c.data["completions"][0]["timecompleted"] == 1_700_000_000 + pair[1]
        else:
            assert c.completed is False and c.source == "core_enrol_get_users_courses" and c.progress == 50.0

    # A completion is for good, and a suspended enrolment's has landed: the next crawl asks the
    # users with an open enrolment their courses, and no completion status at all.
    site.calls.clear()
    site.asked.clear()
    known = {p for p, c in comps.items() if c.completed}
    again = [
        r
        for r in client.crawl_snapshot(
            enrolment_status=True, completions="per_user", known_completed=known, known_open=set(comps) - known
        )
        if isinstance(r, MoodleCompletion)
    ]
    open_ = active - known
    assert site.calls.count("core_enrol_get_users_courses") == len({u for _, u in open_})
    assert site.asked == []
    assert {(c.course_id, c.user_id) for c in again} == open_
    # A suspended enrolment whose completion never landed is asked again.
    site.asked.clear()
    list(client.crawl_snapshot(enrolment_status=True, completions="per_user", known_completed=known))
    assert sorted(site.asked) == sorted(site.suspended - known)
    with pytest.raises(ValueError):
        list(client.crawl_snapshot(completions="per_enrolment"))  # type: ignore[arg-type]


def test_a_suspended_enrolment_is_asked_its_completion_and_lands_where_the_site_answers() -> None:
    """A site whose completion report counts suspended enrolments (as the sandbox does) answers."""
    site = FakeSite(n_courses=2, n_users=12, per_course=6)

    def handler(request: httpx.Request) -> httpx.Response:
        body = form(request)
        if body["wsfunction"] == "core_completion_get_course_completion_status":
            pair = (int(body["courseid"]), int(body["userid"]))
            site.asked.append(pair)
            done = pair in site.completed
            return httpx.Response(200, json={"completionstatus": {"completed": done, "completions": []}})
        return site(request)

    client, _ = make_client(handler)
    comps = [r for r in client.crawl_snapshot(enrolment_status=True, completions="per_user") if r.kind == "completion"]
    suspended = {(c.course_id, c.user_id): c.completed for c in comps if (c.course_id, c.user_id) in site.suspended}
    assert suspended == {p: p in site.completed for p in site.suspended}
    assert len(comps) == len({(c.course_id, c.user_id) for c in comps}), "each enrolment once"


def test_untracked_users_and_courses_without_completion_land_nothing_and_cost_nothing() -> None:
    site = FakeSite(n_courses=3, n_users=12, per_course=6)
    site.courses[0]["enablecompletion"] = 0
    no_completion, teacher_course = site.courses[0]["id"], site.courses[1]["id"]

    def handler(request: httpx.Request) -> httpx.Response:
        response = site(request)
        if form(request)["wsfunction"] == "core_enrol_get_users_courses":
            listed = response.json()
            for course in listed:
                if course["id"] == no_completion:
                    course.update(enablecompletion=False, completionusertracked=False, completed=None, progress=None)
                elif course["id"] == teacher_course:  # the user is not in its completion report
                    course.update(completionusertracked=False, completed=False, progress=None)
            return httpx.Response(200, json=listed)
        return response

    client, _ = make_client(handler)
    comps = [r for r in client.crawl_snapshot(enrolment_status=True, completions="per_user") if r.kind == "completion"]
    assert comps and not [c for c in comps if c.course_id == no_completion]
    # In the other course, only its suspended enrolments land (as unknown: usernotenroled).
    assert {(c.course_id, c.user_id) for c in comps if c.course_id == teacher_course} == {
        p for p in site.suspended if p[0] == teacher_course
    }
    assert not [p for p in site.asked if p[0] == no_completion]
    assert {p for p in site.asked if p[0] == teacher_course} == {p for p in site.suspended if p[0] == teacher_course}
    # Only users with an active enrolment in a course tracking completion are asked their courses.
    tracked = {u for c, us in site.enrol.items() if c != no_completion for u in us if (c, u) not in site.suspended}
    assert tracked < {u for us in site.enrol.values() for u in us}
    assert site.calls.count("core_enrol_get_users_courses") == len(tracked)


def test_completions_the_service_user_may_not_see_are_a_permission_error() -> None:
    """Without report/completion:view, core_enrol_get_users_courses answers `completed` null."""
    site = FakeSite(n_courses=1, n_users=5, per_course=5)

    def handler(request: httpx.Request) -> httpx.Response:
        response = site(request)
        if form(request)["wsfunction"] == "core_enrol_get_users_courses":
            listed = [
                {**c, "completed": None, "completionusertracked": False, "progress": None} for c in response.json()
            ]
            return httpx.Response(200, json=listed)
        return response

    client, _ = make_client(handler)
    with pytest.raises(MoodlePermissionError, match="report/completion:view"):
        list(client.crawl_snapshot(completions="per_user"))


def test_a_course_without_criteria_is_asked_once_for_its_suspended_enrolments() -> None:
    site = FakeSite(n_courses=1, n_users=10, per_course=10)

    def handler(request: httpx.Request) -> httpx.Response:
        fn = form(request)["wsfunction"]
        if fn == "core_completion_get_course_completion_status":
            site.calls.append(fn)
            return httpx.Response(
                200,
                json={
                    "exception": "moodle_exception",
                    "errorcode": "nocriteriaset",
                    "message": "No completion criteria set for this course",
                },
            )
        response = site(request)
        if fn == "core_enrol_get_users_courses":  # no criteria: nobody completes it
            return httpx.Response(200, json=[{**c, "completed": False} for c in response.json()])
        return response

    client, _ = make_client(handler)
    records = list(client.crawl_snapshot(enrolment_status=True, completions="per_user"))
    assert len(site.suspended) > 1
    assert site.calls.count("core_completion_get_course_completion_status") == 1
    comps = {(r.course_id, r.user_id) for r in records if r.kind == "completion"}
    assert comps == {(site.courses[0]["id"], u) for u in site.enrol[site.courses[0]["id"]]} - site.suspended


def test_crawl_skips_a_course_that_vanished() -> None:
    site = FakeSite(n_courses=2, n_users=10, per_course=5)
    gone = site.courses[0]["id"]

    def handler(request: httpx.Request) -> httpx.Response:
        body = form(request)
        if body["wsfunction"] == "core_enrol_get_enrolled_users" and int(body["courseid"]) == gone:
            return httpx.Response(200, json=json.loads((REFERENCE / "error_nonexistent_course.json").read_text()))
        return site(request)

    client, _ = make_client(handler)
    records = list(client.crawl_snapshot())
    assert {r.course_id for r in records if r.kind == "enrolment"} == {site.courses[1]["id"]}
    client2, _ = make_client(handler)
    with pytest.raises(MoodleNotFound):
        list(client2.crawl_snapshot(skip_missing_courses=False))


def test_injected_httpx_client_is_used_and_not_closed() -> None:
    http = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"sitename": "I"})))
    with MoodleClient(BASE + "/webservice/rest/server.php", TOKEN, client=http) as client:
        assert client.site_info()["sitename"] == "I"
        assert client.endpoint_url == BASE + "/webservice/rest/server.php"
    assert not http.is_closed
    http.close()
