"""The client against the sandbox answering as the real Moodle 5.1 site did (issue 14, point 7):
deleted users returned by id, and `notenroled` for the service user itself."""

from __future__ import annotations

import pytest

from integration_pipelines.lib.moodle import MoodleClient, MoodleWSError
from integration_pipelines.lib.moodle.crawl import NOT_ENROLLED, _course_status_completions
from integration_pipelines.sandbox import SandboxConfig, run_sandbox


@pytest.fixture(scope="module")
def sandbox():
    with run_sandbox(SandboxConfig(students=60, seed=11)) as sb:
        yield sb


@pytest.fixture
def client(sandbox):
    with MoodleClient(sandbox.moodle_url, sandbox.config.moodle_token, max_attempts=1) as c:
        yield c


def test_a_deleted_user_returned_by_id_is_recognised_and_left_out(sandbox, client):
    college = sandbox.college
    deleted = next(u for u in college.users.values() if u.deleted)
    live = next(u for u in college.users.values() if not u.deleted and u.id != college.admin_id)
    answer = client.call("core_user_get_users_by_field", field="id", values=[live.id, deleted.id, 99999])
    # Moodle answers the deleted account, anonymised, with no deleted flag (the capture's user 48).
    assert [u["id"] for u in answer] == sorted([live.id, deleted.id])
    anonymised = next(u for u in answer if u["id"] == deleted.id)
    assert "deleted" not in anonymised and len(anonymised["email"]) == 32
    assert [u.id for u in client.iter_users_by_id([live.id, deleted.id, 99999])] == [live.id]


def test_the_service_user_not_enrolled_answers_notenroled_and_the_crawl_skips_it(sandbox, client):
    course = min(c.id for c in sandbox.college.courses.values() if c.completion_enabled)
    with pytest.raises(MoodleWSError) as raised:
        client.course_completion_status(course, sandbox.college.admin_id)
    assert raised.value.errorcode == "notenroled" and "notenroled" in NOT_ENROLLED
    # Asked among enrolled users, the service user is skipped, the others answered.
    enrolled = next(e.user_id for e in sandbox.college.courses[course].enrolments if e.user_id and not e.m_deleted)
    statuses = list(_course_status_completions(client, course, [sandbox.college.admin_id, enrolled]))
    assert [s.user_id for s in statuses] == [enrolled]
