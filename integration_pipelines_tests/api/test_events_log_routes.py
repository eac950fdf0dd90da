"""`GET /v1/events` (filters, cursor paging, CSV) and `POST /v1/events/{event_id}/retry`, admin
only, over real HTTP on both backends."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update

from integration_pipelines.api import create_app
from integration_pipelines.lib.events import log
from integration_pipelines.lib.events.models import InboxEvent
from integration_pipelines.lib.serving import serve_in_thread
from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
from integration_pipelines.lib.warehouse.schema import integration_events_log
from integration_pipelines.settings import Settings

ADMIN = "admin-secret-for-tests"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
STATUSES = ("processed", "ignored", "failed", "dead")


def seed_log(engine, count: int = 30) -> None:
    rows = []
    for i in range(count):
        event = InboxEvent(
            event_id=f"evt-{i:03d}",
            tenant_id="t",
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
                .where(integration_events_log.c.event_id == f"evt-{i:03d}")
                .values(status=STATUSES[i % 4], retry_count=i % 4)
            )


@pytest.fixture
def api(warehouse_url, tmp_path, monkeypatch):
    monkeypatch.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("API_ADMIN_SECRET", ADMIN)
    engine = create_warehouse_engine(warehouse_url)
    ensure_schema(engine)
    seed_log(engine)
    with serve_in_thread(create_app(Settings()), name="api") as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
            yield http, engine
    engine.dispose()


def test_the_admin_routes_need_the_admin_secret(api):
    http, _ = api
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": ADMIN}, {"Authorization": ""}):
        response = httpx.get(f"{http.base_url}/v1/events", headers=headers)
        assert response.status_code == 401 and response.json()["detail"] == "The request is not authenticated."
    assert httpx.post(f"{http.base_url}/v1/events/evt-002/retry").status_code == 401


def test_filters_and_cursor_paging_walk_every_matching_event_once(api):
    http, _ = api
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
    http, _ = api
    for params, name in (
        ({"status": "nope"}, "status"),
        ({"since": "yesterday"}, "since"),
        ({"cursor": "%%%"}, "cursor"),
    ):
        response = http.get("/v1/events", params=params)
        assert response.status_code == 422 and name in json.dumps(response.json()), response.text


def test_csv_export(api):
    http, _ = api
    response = http.get("/v1/events", params={"format": "csv", "status": "failed", "limit": 1000})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == 7 and {r["status"] for r in rows} == {"failed"}
    assert set(rows[0]) == set(log.LISTED_COLUMNS)


def test_retry_requeues_a_dead_event_and_refuses_others(api):
    http, engine = api
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


def test_the_cli_requeues_dead_events_by_filter_and_by_id(warehouse_url, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from integration_pipelines.cli import main

    monkeypatch.setenv("WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
    engine = create_warehouse_engine(warehouse_url)
    ensure_schema(engine)
    seed_log(engine)
    runner = CliRunner()
    # Dead events are evt-003, 007, ..., 027 (7), all of type user_graded.
    assert runner.invoke(main, ["events", "requeue", "--type", "user_updated"]).output.strip() == "Requeued 0 event(s)."
    result = runner.invoke(main, ["events", "requeue", "--type", "user_graded", "--until", "2026-11-01 12:00:00"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "Requeued 3 event(s)."  # 003, 007, 011
    by_id = runner.invoke(main, ["events", "requeue", "evt-000", "evt-002"])
    assert by_id.output.strip() == "Requeued 1 event(s)."  # evt-000 was processed: left alone
    engine.dispose()
