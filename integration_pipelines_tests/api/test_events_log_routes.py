"""`GET /v1/events` (filters, cursor paging, CSV) and `POST /v1/events/{event_id}/retry`, for an
admin key and of its tenant only, over real HTTP on both backends; the CLI and the job that
requeue dead events."""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, select, update

from integration_pipelines.api import create_app
from integration_pipelines.lib.events import log
from integration_pipelines.lib.events.models import InboxEvent
from integration_pipelines.lib.serving import serve_in_thread
from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
from integration_pipelines.lib.warehouse.api_keys import create_key
from integration_pipelines.lib.warehouse.schema import integration_events_log, students
from integration_pipelines.settings import Settings

TENANT = "t"
OTHER = "other-college"
STUDENT = "moodle:100"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
STATUSES = ("processed", "ignored", "failed", "dead")


def seed_log(engine, count: int = 30, *, tenant_id: str = TENANT, prefix: str = "evt") -> None:
    """`count` events of a tenant, `<prefix>-000` onwards, one an hour: statuses in turn
    (processed, ignored, failed, dead), user_updated and user_graded in turn."""
    rows = []
    for i in range(count):
        event = InboxEvent(
            event_id=f"{prefix}-{i:03d}",
            tenant_id=tenant_id,
            sender="local_webhooks",
            received_at=T0 + timedelta(hours=i),
            body={"eventname": "\\core\\event\\user_graded"},
        )
        rows.append(
            log.log_row(
                event,
                event_type="user_graded" if i % 2 else "user_updated",
                record_id=str(i),
                user_id=100 + i % 3,
                time=T0,
                file_name=f"{i}.json",
            )
        )
    with engine.begin() as conn:
        log.insert_new(conn, rows)
        for i in range(count):
            conn.execute(
                update(integration_events_log)
                .where(integration_events_log.c.event_id == f"{prefix}-{i:03d}")
                .values(status=STATUSES[i % 4], retry_count=i % 4)
            )


@dataclass
class Keys:
    admin: str
    student: str
    other_admin: str  # an admin key of another tenant


@pytest.fixture
def api(warehouse_url, tmp_path, monkeypatch):
    """The API over a log holding 30 events of tenant `t` and 8 of another tenant; an admin key
    of `t` on the client."""
    monkeypatch.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    engine = create_warehouse_engine(warehouse_url)
    ensure_schema(engine)
    seed_log(engine)
    seed_log(engine, 8, tenant_id=OTHER, prefix="oth")
    with engine.begin() as conn:
        conn.execute(
            insert(students).values(
                tenant_id=TENANT,
                student_key=STUDENT,
                moodle_user_id=100,
                fingerprint="f",
                source_modified_at=T0,
                created_at=T0,
                updated_at=T0,
            )
        )
        keys = Keys(
            admin=create_key(conn, TENANT, "admin")[1],
            student=create_key(conn, TENANT, "student", student_key=STUDENT)[1],
            other_admin=create_key(conn, OTHER, "admin")[1],
        )
    with serve_in_thread(create_app(Settings()), name="api") as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys.admin}"}) as http:
            yield http, engine, keys
    engine.dispose()


def logged(engine, event_id: str) -> tuple[str, int]:
    c = integration_events_log.c
    with engine.connect() as conn:
        return tuple(conn.execute(select(c.status, c.retry_count).where(c.event_id == event_id)).one())


def test_the_log_routes_need_an_admin_key(api):
    http, engine, keys = api
    for headers in ({}, {"Authorization": "Bearer ipk_0_wrong"}, {"Authorization": keys.admin}, {"Authorization": ""}):
        for response in (
            httpx.get(f"{http.base_url}/v1/events", headers=headers),
            httpx.post(f"{http.base_url}/v1/events/evt-003/retry", headers=headers),
        ):
            assert response.status_code == 401, (headers, response.text)
            assert response.headers["content-type"] == "application/problem+json"
    student = {"Authorization": f"Bearer {keys.student}"}
    for response in (
        httpx.get(f"{http.base_url}/v1/events", headers=student),
        httpx.post(f"{http.base_url}/v1/events/evt-003/retry", headers=student),
    ):
        assert response.status_code == 403 and response.json()["title"] == "Admin key required", response.text
    assert logged(engine, "evt-003") == ("dead", 3)


def test_another_tenants_admin_key_sees_none_of_these_events_and_cannot_retry_them(api):
    http, engine, keys = api
    other = {"Authorization": f"Bearer {keys.other_admin}"}
    # Asking for this tenant by name changes nothing: the key's tenant is the only one.
    for params in ({"limit": 1000}, {"limit": 1000, "tenant": TENANT}, {"limit": 1000, "status": "dead"}):
        seen = httpx.get(f"{http.base_url}/v1/events", params=params, headers=other).json()["events"]
        assert seen and {e["tenant_id"] for e in seen} == {OTHER}, params
        assert all(e["event_id"].startswith("oth-") for e in seen)
    exported = httpx.get(f"{http.base_url}/v1/events", params={"format": "csv", "limit": 1000}, headers=other)
    assert {r["tenant_id"] for r in csv.DictReader(io.StringIO(exported.text))} == {OTHER}
    mine = http.get("/v1/events", params={"limit": 1000, "tenant": OTHER}).json()["events"]
    assert len(mine) == 30 and {e["tenant_id"] for e in mine} == {TENANT}

    # Retrying this tenant's dead event with the other key: the answer an unknown id gets.
    theirs = httpx.post(f"{http.base_url}/v1/events/evt-003/retry", headers=other)
    unknown = httpx.post(f"{http.base_url}/v1/events/evt-999/retry", headers=other)
    assert theirs.status_code == unknown.status_code == 404
    assert {k: v for k, v in theirs.json().items() if k not in ("detail", "instance", "event_id")} == {
        k: v for k, v in unknown.json().items() if k not in ("detail", "instance", "event_id")
    }
    assert theirs.json()["detail"] == "No event 'evt-003' in the events log."
    assert logged(engine, "evt-003") == ("dead", 3)
    # And the other way round: its own dead event is its to retry, not this tenant's.
    assert http.post("/v1/events/oth-003/retry").status_code == 404
    assert httpx.post(f"{http.base_url}/v1/events/oth-003/retry", headers=other).status_code == 202
    assert logged(engine, "oth-003") == ("failed", 0)


def test_filters_and_cursor_paging_walk_every_matching_event_once(api):
    http, _, _ = api
    seen, cursor = [], None
    while True:
        params = {"type": "user_graded", "limit": 4, **({"cursor": cursor} if cursor else {})}
        page = http.get("/v1/events", params=params).json()
        seen += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    expected = [f"evt-{i:03d}" for i in reversed(range(30)) if i % 2]  # newest received first
    assert seen == expected
    dead = http.get("/v1/events", params={"status": "dead"}).json()["events"]
    assert {e["event_id"] for e in dead} == {f"evt-{i:03d}" for i in range(30) if i % 4 == 3}
    ranged = http.get("/v1/events", params={"since": "2026-11-01T05:00:00", "until": "2026-11-01T08:00:00"}).json()
    assert [e["event_id"] for e in ranged["events"]] == ["evt-007", "evt-006", "evt-005"]
    by_user = http.get("/v1/events", params={"user": 101}).json()["events"]
    assert by_user and all(e["user_id"] == 101 for e in by_user)
    assert "payload" not in by_user[0]
    with_payload = http.get("/v1/events", params={"user": 101, "payload": "true", "limit": 1}).json()["events"]
    assert with_payload[0]["payload"]["event_id"] == with_payload[0]["event_id"]


def test_bad_parameters_are_422s_naming_them(api):
    http, _, _ = api
    naive_cursor = base64.urlsafe_b64encode(json.dumps(["2026-11-01T05:00:00", "evt-005"]).encode()).decode()
    for params, name in (
        ({"status": "nope"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": naive_cursor}, "cursor"),
        # Valid ISO 8601, but with no UTC instant in the calendar (the log is kept in UTC).
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"until": "9999-12-31T23:59:59-01:00"}, "until"),
        ({"user": 2**63}, "user"),  # beyond the 64-bit column
        ({"type": "user\x00graded"}, "type"),  # PostgreSQL text cannot hold NUL
    ):
        response = http.get("/v1/events", params=params)
        assert response.status_code == 422 and response.json()["parameter"] == name, (params, response.text)
    assert http.post("/v1/events/evt%00003/retry").status_code == 422


def test_csv_export(api):
    http, _, _ = api
    response = http.get("/v1/events", params={"format": "csv", "status": "failed", "limit": 1000})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 7 and {r["status"] for r in rows} == {"failed"}
    assert set(rows[0]) == set(log.LISTED_COLUMNS)


def test_retry_requeues_a_dead_event_and_refuses_others(api):
    http, engine, _ = api
    response = http.post("/v1/events/evt-003/retry")
    assert response.status_code == 202 and response.json() == {"status": "requeued", "event_id": "evt-003"}
    (event,) = [
        e for e in http.get("/v1/events", params={"limit": 1000}).json()["events"] if e["event_id"] == "evt-003"
    ]
    assert (event["status"], event["retry_count"]) == ("failed", 0)
    with engine.connect() as conn:
        # Due now (the seeded failed events have no next attempt, so only the requeued one is due).
        assert [e.event.event_id for e in log.due(conn, datetime.now(UTC), 100)] == ["evt-003"]
    assert http.post("/v1/events/evt-000/retry").status_code == 409  # processed
    missing = http.post("/v1/events/nope/retry")
    assert missing.status_code == 404 and missing.json()["event_id"] == "nope"
    assert missing.headers["content-type"] == "application/problem+json"


def test_the_cli_requeues_dead_events_by_filter_and_by_id(warehouse_url, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from integration_pipelines.cli import main

    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TENANT_ID", TENANT)
    engine = create_warehouse_engine(warehouse_url)
    ensure_schema(engine)
    seed_log(engine)
    seed_log(engine, 8, tenant_id=OTHER, prefix="oth")
    runner = CliRunner()
    # Dead events are evt-003, 007, ..., 027 (7), all of type user_graded.
    assert runner.invoke(main, ["events", "requeue", "--type", "user_updated"]).output.strip() == "Requeued 0 event(s)."
    result = runner.invoke(main, ["events", "requeue", "--type", "user_graded", "--until", "2026-11-01 12:00:00"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Requeued 3 event(s)."  # 003, 007, 011
    by_id = runner.invoke(main, ["events", "requeue", "evt-000", "evt-002"])
    assert by_id.output.strip() == "Requeued 1 event(s)."  # evt-000 was processed: left alone
    # It acts for TENANT_ID: the other tenant's dead events, by id or by filter, wait for --tenant.
    assert runner.invoke(main, ["events", "requeue", "oth-003"]).output.strip() == "Requeued 0 event(s)."
    assert logged(engine, "oth-007") == ("dead", 3)
    other = runner.invoke(main, ["events", "requeue", "--tenant", OTHER])
    assert other.output.strip() == "Requeued 2 event(s)."  # oth-003, oth-007
    assert logged(engine, "oth-007") == ("failed", 0)
    engine.dispose()


def test_the_requeue_events_job_requeues_dead_events_of_every_tenant(warehouse_url, tmp_path, monkeypatch):
    from integration_pipelines.defs.events.jobs import requeue_events
    from integration_pipelines.defs.resources import WarehouseResource

    monkeypatch.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
    engine = create_warehouse_engine(warehouse_url)
    ensure_schema(engine)
    seed_log(engine, 8)
    seed_log(engine, 8, tenant_id=OTHER, prefix="oth")
    resources = {"warehouse": WarehouseResource(url=warehouse_url)}

    def run(**config) -> int:
        result = requeue_events.execute_in_process(
            run_config={"ops": {"requeue_dead_events": {"config": config}}}, resources=resources
        )
        assert result.success
        return result.output_for_node("requeue_dead_events")

    assert run(event_ids=["evt-003", "oth-007", "evt-000"]) == 2  # evt-000 was processed
    assert logged(engine, "oth-007") == ("failed", 0)
    assert run(event_type="user_graded") == 2  # evt-007 and oth-003, the dead ones left
    assert logged(engine, "evt-007") == logged(engine, "oth-003") == ("failed", 0)
    engine.dispose()
