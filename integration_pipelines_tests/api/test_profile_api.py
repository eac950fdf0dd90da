"""The profile API over a synced sandbox college, on both backends: auth, lookups, search,
receipts, sync history, errors and the served OpenAPI schema."""

from __future__ import annotations

import concurrent.futures
import io
import re

import httpx
import pytest
from click.testing import CliRunner
from pypdf import PdfReader
from sqlalchemy import event, select

from integration_pipelines.api import create_app
from integration_pipelines.cli import main
from integration_pipelines.lib.canonical.apply import canonical_tables
from integration_pipelines.lib.serving import serve_in_thread
from integration_pipelines.lib.warehouse.schema import api_keys
from integration_pipelines.settings import Settings

PROFILE = "/v1/students/profile"


def _linked_students(synced, n: int = 2) -> list[dict]:
    rows = [
        r for r in synced.college.iter_truth("students") if not r["deleted"] and r["zoho_id"] and r["moodle_user_id"]
    ]
    return rows[:n]


# -- auth ----------------------------------------------------------------------------------------


def test_no_key_or_a_malformed_or_unknown_key_is_401(synced):
    student = _linked_students(synced)[0]
    for key in (None, "not-a-key", "ipk_000000000000_" + "x" * 43):
        answer = synced.get(PROFILE, key, zoho_id=student["zoho_id"])
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    # A valid key under another scheme, or the scheme without a key, is no key at all.
    key = synced.key("admin")
    for authorization in (f"Basic {key}", "Bearer", "Bearer "):
        answer = synced.client.get(
            PROFILE, params={"zoho_id": student["zoho_id"]}, headers={"Authorization": authorization}
        )
        assert answer.status_code == 401, (authorization, answer.text)
        assert answer.json()["title"] == "Authentication required"


def test_a_student_key_reads_its_own_profile_and_gets_403_for_another(synced):
    me, other = _linked_students(synced)
    key = synced.key("student", f"zoho:{me['zoho_id']}")
    mine = synced.get(PROFILE, key, moodle_user_id=me["moodle_user_id"])
    assert mine.status_code == 200 and mine.json()["student"]["zoho_id"] == me["zoho_id"]
    theirs = synced.get(PROFILE, key, zoho_id=other["zoho_id"])
    assert theirs.status_code == 403, theirs.text
    assert theirs.json()["title"] == "Not your profile"
    # Admin-only routes refuse a student key.
    assert synced.get("/v1/students/search", key, q="a").status_code == 403
    assert synced.get("/v1/sync/history", key).status_code == 403


def test_a_key_of_another_tenant_finds_no_student(synced):
    student = _linked_students(synced)[0]
    foreign = synced.key("admin", tenant_id="another-college")
    answer = synced.get(PROFILE, foreign, zoho_id=student["zoho_id"])
    assert answer.status_code == 404, answer.text
    assert synced.get("/v1/students/search", foreign, q=student["last_name"][:3]).json()["items"] == []


def test_a_revoked_key_fails_on_the_next_request(synced, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_URL", synced.warehouse_url)
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--scope", "admin", "--label", "revocation test"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    student = _linked_students(synced)[0]
    assert synced.get(PROFILE, key, zoho_id=student["zoho_id"]).status_code == 200
    key_id = key.split("_")[1]
    listed = runner.invoke(main, ["keys", "list"])
    assert key_id in listed.stdout and key not in listed.stdout
    revoked = runner.invoke(main, ["keys", "revoke", key_id])
    assert revoked.exit_code == 0, revoked.output
    assert synced.get(PROFILE, key, zoho_id=student["zoho_id"]).status_code == 401
    assert "revoked" in runner.invoke(main, ["keys", "list"]).stdout


def test_a_student_key_needs_a_student_of_its_tenant(synced, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_URL", synced.warehouse_url)
    answer = CliRunner().invoke(main, ["keys", "create", "--scope", "student", "--student", "zoho:1"])
    assert answer.exit_code == 2 and "has no student 'zoho:1'" in answer.output


def test_keys_are_stored_only_as_hashes(synced):
    student = _linked_students(synced)[0]
    plain = synced.key("student", f"zoho:{student['zoho_id']}")
    secret = plain.rsplit("_", 1)[1]
    with synced.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(api_keys)).mappings()]
    assert rows
    stored = " ".join(str(v) for row in rows for v in row.values())
    assert plain not in stored and secret not in stored
    assert all(re.fullmatch(r"[0-9a-f]{64}", row["key_hash"]) for row in rows)


# -- connections ---------------------------------------------------------------------------------


def test_a_profile_read_checks_its_key_and_reads_on_one_connection(synced):
    checkouts = []
    engine = synced.client.app.state.engine
    listener = lambda *_: checkouts.append(1)  # noqa: E731
    event.listen(engine, "checkout", listener)
    try:
        student = _linked_students(synced)[0]
        assert synced.get(PROFILE, synced.admin_key, zoho_id=student["zoho_id"]).status_code == 200
        assert synced.get("/v1/students/search", synced.admin_key, q="a").status_code == 200
    finally:
        event.remove(engine, "checkout", listener)
    assert len(checkouts) == 2  # one a request: the key's check and the route's reads share it


def test_fifty_concurrent_profile_reads_all_answer(synced, tmp_path):
    """Fifty requests at once hold the pool's few connections in turn: none waits for a connection
    on a read thread that a request holding one needs (on PostgreSQL's two threads, that deadlocked)."""
    settings = Settings(WAREHOUSE_URL=synced.warehouse_url, INTEGRATION_DATA_DIR=str(tmp_path))
    students = _linked_students(synced, 10)
    headers = {"Authorization": f"Bearer {synced.admin_key}"}
    with (
        serve_in_thread(create_app(settings), name="concurrent-api") as url,
        httpx.Client(base_url=url, headers=headers, timeout=30, limits=httpx.Limits(max_connections=50)) as http_client,
    ):

        def read(i: int) -> int:
            return http_client.get(PROFILE, params={"zoho_id": students[i % len(students)]["zoho_id"]}).status_code

        with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(read, range(200)))
    assert answers == [200] * 200


# -- lookups and errors --------------------------------------------------------------------------


def test_every_identifier_finds_the_same_student(synced):
    student = _linked_students(synced)[0]
    answers = [
        synced.get(PROFILE, synced.admin_key, **{name: value})
        for name, value in (
            ("moodle_user_id", student["moodle_user_id"]),
            ("zoho_id", student["zoho_id"]),
            ("student_number", student["student_number"].lower()),
            ("email", "  " + student["email"].upper()),
        )
    ]
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert len({a.json()["student"]["student_key"] for a in answers}) == 1


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({}, "moodle_user_id, zoho_id, student_number, email"),
        ({"moodle_user_id": 5, "email": "a@b.c"}, "moodle_user_id, email"),
        ({"moodle_user_id": "9223372036854775808"}, "moodle_user_id"),
        ({"moodle_user_id": "0"}, "moodle_user_id"),
        ({"moodle_user_id": "abc"}, "moodle_user_id"),
        ({"zoho_id": "12a"}, "zoho_id"),
    ],
)
def test_a_bad_lookup_is_a_422_naming_the_parameter(synced, params, parameter):
    answer = synced.get(PROFILE, synced.admin_key, **params)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["parameter"] == parameter


def test_an_unknown_student_is_a_404_problem(synced):
    answer = synced.get(PROFILE, synced.admin_key, moodle_user_id=9223372036854775807)
    assert answer.status_code == 404
    assert answer.json()["parameter"] == "moodle_user_id"


def test_405_keeps_allow_and_head_answers_like_get(synced):
    posted = synced.client.post(PROFILE)
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET"
    assert posted.headers["content-type"] == "application/problem+json"
    student = _linked_students(synced)[0]
    head = synced.client.head(PROFILE, params={"zoho_id": student["zoho_id"]}, headers=_auth(synced.admin_key))
    get = synced.client.get(PROFILE, params={"zoho_id": student["zoho_id"]}, headers=_auth(synced.admin_key))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert synced.client.head("/v1/health").status_code == 200


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


# -- search --------------------------------------------------------------------------------------


def test_search_finds_by_the_start_of_any_field_and_pages(synced):
    student = _linked_students(synced)[0]
    for q in (
        student["last_name"][:3].upper(),
        student["email"][:6],
        student["student_number"].lower(),
        student["first_name"],
    ):
        keys = [
            h["student_key"]
            for h in synced.get("/v1/students/search", synced.admin_key, q=q, limit=100).json()["items"]
        ]
        assert f"zoho:{student['zoho_id']}" in keys, q
    # Paging: pages of 7 students, in name order, add up to the whole result without repeats.
    whole = synced.get("/v1/students/search", synced.admin_key, q="s24000", limit=100).json()
    assert whole["next_cursor"] is None and len(whole["items"]) > 7
    paged, cursor = [], None
    while True:
        page = synced.get(
            "/v1/students/search", synced.admin_key, q="s24000", limit=7, **({"cursor": cursor} if cursor else {})
        ).json()
        paged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == whole["items"]
    assert synced.get("/v1/students/search", synced.admin_key, q="s", cursor="bogus").status_code == 422


# -- receipts ------------------------------------------------------------------------------------


def test_a_receipt_names_the_student_amount_currency_and_date(synced):
    student = next(
        s
        for s in _linked_students(synced, 40)
        if any(
            p["status"] == "paid" for p in synced.college.iter_truth("payments") if p["student_zoho_id"] == s["zoho_id"]
        )
    )
    profile = synced.get(PROFILE, synced.admin_key, zoho_id=student["zoho_id"]).json()
    payment = next(p for p in profile["payments"] if p["status"] == "paid")
    own_key = synced.key("student", f"zoho:{student['zoho_id']}")
    for key in (synced.admin_key, own_key):
        answer = synced.client.get(payment["receipt_url"], headers=_auth(key))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/pdf"
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(answer.content)).pages)
    assert f"{student['first_name']} {student['last_name']}" in text
    amount = f"{float(payment['amount']['amount']):,.2f}"
    assert f"{payment['amount']['currency']} {amount}" in text
    assert payment["paid_on"] in text
    unpaid = next((p for p in profile["payments"] if p["status"] != "paid"), None)
    if unpaid is not None:
        path = f"/v1/students/zoho:{student['zoho_id']}/payments/{unpaid['zoho_id']}/receipt"
        assert synced.client.get(path, headers=_auth(synced.admin_key)).status_code == 409
    other = _linked_students(synced)[1]
    assert (
        synced.client.get(
            payment["receipt_url"], headers=_auth(synced.key("student", f"zoho:{other['zoho_id']}"))
        ).status_code
        == 403
    )


# -- sync history --------------------------------------------------------------------------------


def test_sync_history_shows_the_full_sync_with_its_tables_and_outcome(synced):
    from dagster import DagsterRunStatus, build_run_status_sensor_context

    from integration_pipelines.defs.resources import WarehouseResource
    from integration_pipelines.defs.sync.sensors import sync_history_success

    assert synced.get("/v1/sync/history").status_code == 401
    run_id = synced.full_sync_run_id
    before = synced.get("/v1/sync/history", synced.admin_key, kind="full_sync").json()["items"]
    assert [r["run_id"] for r in before] == [run_id]
    assert before[0]["status"] == "started"  # the steps wrote their counts; the run's end is the sensor's
    tables = {t["table"]: t for t in before[0]["tables"]}
    assert set(tables) == set(canonical_tables())  # every canonical step, course results included
    live_students = sum(1 for s in synced.college.iter_truth("students") if not s["deleted"])
    assert tables["students"]["inserted"] >= live_students
    instance = synced.pipeline.instance
    with build_run_status_sensor_context(
        sensor_name="sync_history_success",
        dagster_event=next(
            e
            for e in instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_SUCCESS"
        ).dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        resources={"warehouse": WarehouseResource(url=synced.warehouse_url)},
    ) as context:
        sync_history_success(context)
    after = synced.get("/v1/sync/history", synced.admin_key).json()["items"]
    assert after[0]["status"] == "success" and after[0]["finished_at"] is not None and after[0]["error"] is None
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.SUCCESS
    paged = synced.get("/v1/sync/history", synced.admin_key, limit=1).json()
    assert paged["next_cursor"] is None
    assert synced.get("/v1/sync/history", synced.admin_key, cursor="x").status_code == 422
