"""The Moodle and Zoho clients against the real sandbox, over HTTP on loopback.

These run the clients exactly as production does (pooled httpx, real sockets, retries),
with tiny retry waits so the suite stays fast.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

from integration_pipelines.lib.http import RetryPolicy
from integration_pipelines.lib.moodle import MoodleAuthError, MoodleClient
from integration_pipelines.lib.source_reads import RecordsWithResult, read_moodle_snapshot
from integration_pipelines.lib.zoho import (
    ZohoClient,
    ZohoClientCredentialsError,
    ZohoRefreshTokenError,
)
from integration_pipelines.sandbox import SandboxConfig, run_sandbox

FAST = RetryPolicy(max_attempts=8, initial_wait=0.001, max_wait=0.02, jitter=0.001, max_retry_after=0.02)


def zoho_client(sb: Any, **kwargs: Any) -> ZohoClient:
    cfg = sb.config
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("timeout", 10.0)
    return ZohoClient(
        sb.zoho_api_domain,
        sb.zoho_accounts_url,
        kwargs.pop("client_id", cfg.zoho_client_id),
        kwargs.pop("client_secret", cfg.zoho_client_secret),
        kwargs.pop("refresh_token", cfg.zoho_refresh_token),
        bulk_poll_interval=0.005,
        **kwargs,
    )


def moodle_client(sb: Any, **kwargs: Any) -> MoodleClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("timeout", 10.0)
    return MoodleClient(sb.moodle_url, kwargs.pop("token", sb.config.moodle_token), **kwargs)


@contextmanager
def sandbox(**config: Any) -> Iterator[Any]:
    with run_sandbox(SandboxConfig(**config)) as sb:
        yield sb


def live_ids(sb: Any, module: str) -> set[str]:
    with sb.lock:
        return {str(zid) for zid, rec in sb.college.zoho[module].records.items() if rec.deleted is None}


def read_all_zoho(client: ZohoClient) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for module in client.list_modules():
        name = module["api_name"]
        fields = [f["api_name"] for f in client.list_fields(name)]
        out[name] = list(client.iter_records(name, fields))
    return out


# --------------------------------------------------------------------------------------
# Zoho
# --------------------------------------------------------------------------------------


def test_zoho_reads_the_whole_college() -> None:
    with sandbox(students=300, seed=3) as sb, zoho_client(sb) as client:
        assert client.configure_concurrency_from_org() == 20  # the sandbox runs an enterprise org
        data = read_all_zoho(client)
        assert set(data) >= {"Students", "Programs", "Registrations"}
        for module, rows in data.items():
            ids = [r["id"] for r in rows]
            assert len(ids) == len(set(ids)), f"{module}: duplicates"
            assert set(ids) == live_ids(sb, module), module
        assert len(data["Registrations"]) > 2000, "the college should exercise page_token"
        assert client.token_refreshes == 1
        assert client.counter.retries == 0


def test_zoho_5000_record_module_through_page_token() -> None:
    with sandbox(students=5200, seed=5) as sb, zoho_client(sb) as client:
        fields = [f["api_name"] for f in client.list_fields("Students")]
        rows = list(client.iter_records("Students", fields))
        assert len(rows) >= 5000
        assert {r["id"] for r in rows} == live_ids(sb, "Students")
        times = [r["Modified_Time"] for r in rows]
        assert times == sorted(times), "sort_by=Modified_Time asc across page and page_token pages"
        assert client.counter["GET /crm/v8/Students"] == math.ceil(len(rows) / 200)


def test_zoho_more_than_50_fields_against_the_sandbox() -> None:
    # The sandbox modules have fewer than 50 fields, so force batches by asking for
    # fields repeatedly in small batches through the same merge path.
    import integration_pipelines.lib.zoho.client as zoho_mod

    with sandbox(students=400, seed=4) as sb, zoho_client(sb) as client:
        fields = [f["api_name"] for f in client.list_fields("Students")]
        whole = {r["id"]: r for r in client.iter_records("Students", fields)}
        old = zoho_mod.MAX_FIELDS_PER_CALL
        zoho_mod.MAX_FIELDS_PER_CALL = 5
        try:
            before = client.counter["GET /crm/v8/Students"]
            merged = {r["id"]: r for r in client.iter_records("Students", fields)}
            batches = math.ceil((len(set(fields) - {"id", "Modified_Time"})) / 3)
            assert client.counter["GET /crm/v8/Students"] - before == batches * math.ceil(len(whole) / 200)
        finally:
            zoho_mod.MAX_FIELDS_PER_CALL = old
        assert merged == whole


def test_zoho_incremental_304_and_deleted() -> None:
    with sandbox(students=200, seed=6) as sb, zoho_client(sb) as client:
        rows = list(client.iter_records("Students", ["Email", "Modified_Time"]))
        newest = max(r["Modified_Time"] for r in rows)
        from datetime import datetime, timedelta

        later = datetime.fromisoformat(newest) + timedelta(seconds=1)
        assert list(client.iter_records("Students", ["Email"], modified_since=later)) == []
        deleted = list(client.iter_deleted("Students"))
        with sb.lock:
            expected = {str(z) for z, r in sb.college.zoho["Students"].records.items() if r.deleted is not None}
        assert {d["id"] for d in deleted} == expected


@pytest.mark.parametrize("kinds", [("429", "5xx", "timeout", "drop")])
def test_zoho_faults_change_nothing_read(kinds: tuple[str, ...]) -> None:
    with sandbox(students=250, seed=8) as clean_sb, zoho_client(clean_sb) as clean:
        expected = read_all_zoho(clean)
        clean_requests = clean.counter.total
    with (
        sandbox(students=250, seed=8, fault_rate=0.1, fault_kinds=kinds, fault_delay_seconds=1.0) as sb,
        zoho_client(sb, timeout=0.5) as faulty,
    ):
        got = read_all_zoho(faulty)
        faults = dict(sb.app.fault_count)
    assert got == expected
    assert sum(faults.values()) > 0, "the sandbox should have injected faults"
    assert faulty.counter.retries == sum(faults.values())
    assert faulty.counter.total == clean_requests + sum(faults.values())


def test_zoho_tokens_expiring_every_100_calls() -> None:
    with sandbox(students=1500, seed=9, token_ttl_calls=100) as sb, zoho_client(sb) as client:
        rows = list(client.iter_records("Registrations", ["Modified_Time"], per_page=50))
        assert {r["id"] for r in rows} == live_ids(sb, "Registrations")
        rejected = client.counter.by_status["401"]
        accepted = client.counter.total - client.counter["POST /oauth/v2/token"] - rejected
        assert accepted == math.ceil(len(rows) / 50) > 200
        assert client.token_refreshes == sb.app.zoho_auth.refresh_count
        # one refresh up front, then one per 100 accepted calls, each after one rejected call
        assert client.token_refreshes == 1 + (accepted - 1) // 100
        assert rejected == client.token_refreshes - 1


def test_zoho_concurrency_stays_within_the_edition_limit() -> None:
    import threading

    with (
        sandbox(students=400, seed=2, zoho_edition="free", response_delay_seconds=0.005) as sb,
        zoho_client(sb) as client,
    ):
        assert client.configure_concurrency_from_org() == 5
        results: dict[int, int] = {}

        def read(i: int) -> None:
            results[i] = sum(1 for _ in client.iter_records("Registrations", ["Modified_Time"]))

        threads = [threading.Thread(target=read, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(results.values()) == {len(live_ids(sb, "Registrations"))}
        assert client.counter.by_status.get("429", 0) == 0, "the sandbox refuses calls beyond the edition's limit"
        assert 1 < client.limiter.peak <= 5


def test_zoho_bad_refresh_token_is_one_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "1000.not-the-refresh-token-0123456789"
    with sandbox(students=20, seed=1) as sb, zoho_client(sb, refresh_token=bad) as client:
        with pytest.raises(ZohoRefreshTokenError) as info:
            list(client.iter_records("Students", ["Email"]))
        assert "ZOHO_REFRESH_TOKEN" in str(info.value)
        assert client.counter["POST /oauth/v2/token"] == 1
        assert client.counter.total == 1
        assert sb.app.request_count == 0, "no API call without a token"
    for text in [str(info.value), repr(client)] + [r.getMessage() for r in caplog.records]:
        assert bad not in text and sb.config.zoho_client_secret not in text


def test_zoho_and_moodle_secrets_never_reach_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore debug logs included
    with sandbox(students=60, seed=1, fault_rate=0.3, fault_kinds=("429", "5xx", "drop")) as sb:
        with zoho_client(sb) as zoho, moodle_client(sb) as moodle:
            assert read_all_zoho(zoho)["Students"]
            assert list(moodle.crawl_snapshot(grades=False))
            with sb.lock:
                access_tokens = list(sb.app.zoho_auth.tokens)
            texts = [repr(zoho), repr(moodle)] + [r.getMessage() for r in caplog.records]
            assert zoho.counter.retries and moodle.counter.retries, "faults should have caused logged retries"
        cfg = sb.config
    secrets = [cfg.moodle_token, cfg.zoho_client_secret, cfg.zoho_refresh_token, *access_tokens]
    assert access_tokens
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_zoho_bad_client_secret_names_client_settings() -> None:
    with sandbox(students=20, seed=1) as sb, zoho_client(sb, client_secret="wrong-secret-xyz") as client:
        with pytest.raises(ZohoClientCredentialsError) as info:
            client.org()
        assert "ZOHO_CLIENT_ID" in str(info.value) and sb.zoho_accounts_url in str(info.value)
        assert client.counter.total == 1


def test_zoho_bulk_read_pages_match_the_record_api() -> None:
    with sandbox(students=300, seed=2, bulk_read_page_size=100) as sb, zoho_client(sb) as client:
        fields = ["Email", "Last_Name", "Modified_Time"]
        rows = list(client.bulk_read("Students", fields))
        assert {r["Id"] for r in rows} == live_ids(sb, "Students")
        assert client.counter["POST /crm/bulk/v8/read"] == math.ceil(len(rows) / 100)
        by_id = {r["id"]: r for r in client.iter_records("Students", fields)}
        assert all(by_id[r["Id"]]["Email"] == r["Email"] for r in rows)


def test_zoho_upsert_against_the_sandbox_is_idempotent() -> None:
    with (
        sandbox(students=250, seed=2, fault_rate=0.2, fault_kinds=("5xx", "drop", "429")) as sb,
        zoho_client(sb) as client,
    ):
        rows = list(client.iter_records("Students", ["Email", "Phone"]))[:150]
        updates = [{"Email": r["Email"], "Phone": "+44 7700 900000"} for r in rows]
        results = client.upsert("Students", updates, ["Email"])
        assert len(results) == len(rows)
        assert all(r.ok and r.action == "update" for r in results), [r for r in results if not r.ok][:3]
        assert {r.id for r in results} == {r["id"] for r in rows}
        again = client.upsert("Students", updates, ["Email"])
        assert all(r.action == "update" for r in again)
        assert len(live_ids(sb, "Students")) == len(list(client.iter_records("Students", ["Email"])))
        assert client.counter["POST /crm/v8/Students/upsert"] >= 2 * math.ceil(len(rows) / 100)


# --------------------------------------------------------------------------------------
# Moodle
# --------------------------------------------------------------------------------------


def moodle_truth(sb: Any) -> dict[str, Any]:
    """What the crawl should find, asked of the sandbox's own Moodle service."""
    client = moodle_client(sb)
    with client:
        courses = [c.id for c in client.iter_courses()]
        enrolments = {
            (e.course_id, e.user_id) for cid in courses for e in client.iter_enrolled_users(cid, page_size=100000)
        }
    return {"courses": set(courses), "enrolments": enrolments, "users": {u for _, u in enrolments}}


def crawl(client: MoodleClient) -> dict[str, list]:
    out: dict[str, list] = {}
    for record in client.crawl_snapshot():
        out.setdefault(record.kind, []).append(record)
    return out


def test_moodle_snapshot_crawl_of_the_whole_college() -> None:
    with sandbox(students=300, seed=3) as sb:
        truth = moodle_truth(sb)
        with moodle_client(sb) as client:
            got = crawl(client)
            n_courses, n_users = len(truth["courses"]), len(truth["users"])
            assert {c.id for c in got["course"]} == truth["courses"]
            assert {(e.course_id, e.user_id) for e in got["enrolment"]} == truth["enrolments"]
            user_ids = [u.id for u in got["user"]]
            assert len(user_ids) == len(set(user_ids)) and set(user_ids) == truth["users"]
            assert {(g.course_id, g.user_id) for g in got.get("grade", [])} <= truth["enrolments"]
            assert got.get("grade"), "grades should be read"
            assert client.counter.total <= 3 * n_courses + math.ceil(n_users / 100)
            assert client.counter["core_user_get_users_by_field"] == math.ceil(n_users / 100)
            assert client.counter["gradereport_user_get_grade_items"] <= n_courses


def test_moodle_faults_change_nothing_read() -> None:
    def canon(records: dict[str, list], base_url: str) -> dict[str, list]:
        # Profile image URLs embed the sandbox's (random) port; nothing else may differ.
        return {k: sorted(repr(r).replace(base_url, "BASE") for r in v) for k, v in records.items()}

    with sandbox(students=200, seed=8) as sb, moodle_client(sb) as client:
        expected = canon(crawl(client), sb.base_url)
        clean_requests = client.counter.total
    with (
        sandbox(students=200, seed=8, fault_rate=0.1, fault_delay_seconds=1.0) as sb,
        moodle_client(sb, timeout=0.5) as client,
    ):
        got = canon(crawl(client), sb.base_url)
        faults = sum(sb.app.fault_count.values())
    assert got == expected
    assert faults > 0
    assert client.counter.total == clean_requests + faults


def test_moodle_bad_token_is_one_clear_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "definitely-not-the-moodle-token-42"
    with sandbox(students=20, seed=1) as sb, moodle_client(sb, token=bad) as client:
        with pytest.raises(MoodleAuthError) as info:
            list(client.crawl_snapshot())
        assert "MOODLE_TOKEN" in str(info.value)
        assert client.counter.total == 1
        assert sb.app.request_count == 1
    for text in [str(info.value), repr(client)] + [r.getMessage() for r in caplog.records]:
        assert bad not in text


def completion_snapshot(sb: Any, known: dict[tuple[int, int], Any]) -> tuple[dict, list, dict[str, int]]:
    """A snapshot as `moodle_snapshot` reads it, knowing the completions `known` (those an earlier
    one landed, as `known_completions` reads them): its completions by (course, user), the
    (course, user) pairs it asked `core_completion_get_course_completion_status`, and its
    requests."""
    asked: list[tuple[int, int]] = []

    def make_client() -> MoodleClient:
        client = moodle_client(sb)
        status = client.course_completion_status

        def spied(course_id: int, user_id: int) -> dict[str, Any]:
            asked.append((course_id, user_id))
            return status(course_id, user_id)

        client.course_completion_status = spied  # type: ignore[method-assign]
        return client

    completed = {pair for pair, c in known.items() if c["completed"]}
    reading = RecordsWithResult(
        read_moodle_snapshot(make_client, 4, known_completed=completed, known_open=set(known) - completed)
    )
    completions = {}
    for entity, record_id, payload, _at in reading:
        if entity == "completions":
            course, user = record_id.split(":")
            completions[(int(course), int(user))] = json.loads(payload)
    assert reading.result is not None
    return completions, asked, reading.result


def test_a_snapshot_asks_completion_status_only_for_enrolments_completed_since_the_last() -> None:
    """One request per user with an open enrolment tells which enrolments are completed; only those
    completed since the last snapshot are asked their time, and a suspended enrolment, which Moodle
    leaves out of a user's courses, is asked until its completion has landed (the sandbox answers
    it; core Moodle answers usernotenroled). The next snapshot, knowing the first one's
    completions, asks no completion status at all."""
    with sandbox(students=150, seed=6) as sb:
        col = sb.college
        with sb.lock:
            tracked = [c for c in col.courses.values() if c.completion_enabled]
            live = [
                (c, e)
                for c in tracked
                for e in c.enrolments
                if e.user_id and not e.m_deleted and not col.users[e.user_id].deleted
            ]
            active = {(c.id, e.user_id) for c, e in live if e.m_status == 0}
            suspended = {(c.id, e.user_id) for c, e in live if e.m_status == 1}
            done = {pair for pair in active | suspended if pair in col.completions}
            criteria = {
                (c.id, e.user_id): max((a.grades[e.user_id].timemodified for a in c.assignments), default=None)
                for c, e in live
                if (c.id, e.user_id) in done
            }
            teachers = {(c.id, c.teacher_id) for c in tracked if not col.users[c.teacher_id].deleted}
        assert active & done and active - done and suspended & done and suspended - done

        first, asked, requests = completion_snapshot(sb, {})
        users = {u for _, u in active | teachers}
        assert requests["core_enrol_get_users_courses"] == len(users)
        assert sorted(asked) == sorted((active & done) | suspended)
        assert requests["core_completion_get_course_completion_status"] == len(asked)
        # Every student enrolment of a course tracking completion, as the truth has it; a teacher
        # is not in the completion report.
        assert set(first) == active | suspended
        assert {pair for pair, c in first.items() if c["completed"]} == done
        assert {pair: c["timecompleted"] for pair, c in first.items() if c["completed"]} == criteria
        assert all(c["timecompleted"] is None for pair, c in first.items() if pair not in done)

        again, asked_again, requests_again = completion_snapshot(sb, first)
        assert asked_again == [] and "core_completion_get_course_completion_status" not in requests_again
        assert requests_again["core_enrol_get_users_courses"] == len({u for _, u in (active - done) | teachers})
        assert set(again) == active - done, "what the users' courses say of their open enrolments"
        assert not [c for c in again.values() if c["completed"]]


def test_moodle_incremental_assignment_grades() -> None:
    with sandbox(students=100, seed=4) as sb, moodle_client(sb) as client:
        courses = [c.id for c in client.iter_courses()]
        assignments = list(client.iter_assignments(courses))
        assert assignments
        grades = list(client.iter_assign_grades([a.id for a in assignments]))
        assert grades
        newest = max(g.timemodified or 0 for g in grades)
        later = list(client.iter_assign_grades([a.id for a in assignments], since=newest + 1))
        assert later == []
        assert client.counter["mod_assign_get_grades"] == 2 * math.ceil(len(assignments) / client.id_batch_size)


def test_zoho_deleted_list_past_2000_records_continues_by_deleted_time() -> None:
    """/deleted takes no page_token: past 2,000 records the client moves If-Modified-Since on."""
    with sandbox(students=400, seed=4) as sb:
        since = sb.mutate(advance_seconds=60)["now_iso"]
        sb.mutate(zoho_change_share=0.0, zoho_delete_share=0.8, zoho_modules=["Registrations"], advance_seconds=60)
        with sb.lock:
            expected = {
                str(r.zid)
                for r in sb.college.zoho["Registrations"].deleted_records()
                if r.deleted >= int(datetime.fromisoformat(since).timestamp())
            }
        assert len(expected) > 2000, "the case needs more deletions than one page run can hold"
        with zoho_client(sb) as client:
            got = [r["id"] for r in client.iter_deleted("Registrations", since=since)]
    assert len(got) == len(set(got)), "no record twice across the continuation"
    assert set(got) == expected
