"""Events applied to a synced sandbox college reach what a fresh full sync of the changed college
reaches, over real HTTP to the sandbox and on both backends; repeats, hand-dropped and malformed
files, out-of-order events and failures each do what the events log promises."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from integration_pipelines.lib.events.inbox import EventsInbox
from integration_pipelines.lib.events.process import RetryPolicy
from integration_pipelines.lib.mapping import load_mapping
from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
from integration_pipelines.lib.warehouse.schema import integration_events_log, raw_records
from integration_pipelines.sandbox.config import SandboxConfig
from integration_pipelines.sandbox.server import run_sandbox
from integration_pipelines_tests.conftest import empty_warehouse_url
from integration_pipelines_tests.lib.events.helpers import events_bench, rows, sync_college

TENANT = "sandbox"
MAPPING = load_mapping()
COMPARED = ("students", "enrollments", "grades")
MOODLE_CHANGES = {
    "moodle_new_grades": 6,
    "moodle_regrades": 4,
    "moodle_suspend_enrolments": 3,
    "moodle_user_updates": 3,
    "moodle_completions": 2,
    "moodle_delete_users": 1,
}


def log_rows(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["event_id"]: dict(r) for r in conn.execute(select(integration_events_log)).mappings()}


@pytest.fixture
def college(warehouse_url, tmp_path):
    with run_sandbox(SandboxConfig(students=40, seed=3)) as sandbox:
        engine = create_warehouse_engine(warehouse_url)
        ensure_schema(engine)
        sync_college(engine, sandbox, TENANT, MAPPING)
        yield sandbox, engine, events_bench(engine, sandbox, tmp_path, TENANT, MAPPING)
        engine.dispose()


def test_moodle_events_reach_what_a_fresh_full_sync_of_the_changed_college_reaches(college, request, tmp_path):
    sandbox, engine, bench = college
    summary = sandbox.mutate(advance_seconds=3600, **MOODLE_CHANGES)
    emitted = sandbox.app.events.events[summary["events"]["from"] : summary["events"]["to"]]
    assert len(emitted) > 20
    before = {table: rows(engine, table, TENANT) for table in COMPARED}
    for body in emitted:
        bench.drop(body)
    results = bench.process_all(batch_size=500)
    processed = sum(r.outcomes["processed"] for r in results)
    ignored = sum(r.outcomes["ignored"] for r in results)
    assert processed + ignored == len(emitted)
    assert not any(r.outcomes["failed"] for r in results)

    backend = engine.dialect.name
    with empty_warehouse_url(backend, request, tmp_path / "fresh") as fresh_url:
        (tmp_path / "fresh").mkdir(exist_ok=True)
        fresh = create_warehouse_engine(fresh_url)
        ensure_schema(fresh)
        sync_college(fresh, sandbox, TENANT, MAPPING)
        for table in COMPARED:
            ours = {
                k: {c: v for c, v in r.items() if c != "source_modified_at"}
                for k, r in rows(engine, table, TENANT).items()
            }
            truth = {
                k: {c: v for c, v in r.items() if c != "source_modified_at"}
                for k, r in rows(fresh, table, TENANT).items()
            }
            assert ours == truth, table
        # The events changed what they had to (the comparison is not of two unchanged colleges).
        assert rows(engine, "grades", TENANT) != before["grades"]
        assert rows(engine, "enrollments", TENANT) != before["enrollments"]
        fresh.dispose()
    # Every event is logged once, and its file archived; the inbox and the claims are empty.
    logged = log_rows(engine)
    assert len(logged) == len(emitted)
    assert list(bench.inbox.inbox.iterdir()) == [] and bench.inbox.batches() == []
    assert len(list(bench.inbox.archive.iterdir())) == len(emitted)


def test_repeats_are_applied_once_and_a_malformed_file_is_quarantined_with_its_reason(college):
    sandbox, engine, bench = college
    summary = sandbox.mutate(advance_seconds=60, moodle_new_grades=2)
    emitted = sandbox.app.events.events[summary["events"]["from"] : summary["events"]["to"]]
    first = [bench.drop(body) for body in emitted]
    bench.process_all()
    before = log_rows(engine)
    # The same events again: by hand under other names (the receiver would refuse them).
    for i, body in enumerate(emitted):
        bench.drop(body, name=f"by-hand-{i}.json")
    (bench.inbox.inbox / "garbage.json").write_bytes(b'{"event_id": "x", "sender": "moodle"')
    (bench.inbox.inbox / "wrong-shape.json").write_text(json.dumps({"event_id": "y", "body": {}}))
    results = bench.process_all()
    assert sum(r.duplicates for r in results) == len(emitted)
    assert sum(r.quarantined for r in results) == 2
    after = log_rows(engine)
    assert after.keys() == before.keys() == set(first)
    assert all(after[k]["processed_at"] == before[k]["processed_at"] for k in first)  # not applied again
    reasons = {p.name: p.read_text() for p in bench.inbox.quarantine.glob("*.reason")}
    assert set(reasons) == {"garbage.json.reason", "wrong-shape.json.reason"}
    assert "not JSON" in reasons["garbage.json.reason"]
    assert "sender" in reasons["wrong-shape.json.reason"] and "tenant_id" in reasons["wrong-shape.json.reason"]
    assert (bench.inbox.quarantine / "garbage.json").exists()


def test_an_older_grade_event_arriving_late_never_overwrites_a_newer_one(college):
    sandbox, engine, bench = college
    summary = sandbox.mutate(advance_seconds=60, moodle_new_grades=1)
    graded = [
        e for e in sandbox.app.events.events[summary["events"]["from"] :] if e["eventname"].endswith("user_graded")
    ]
    item_event = next(e for e in graded if e["userid"] != -1)
    newer = {
        **item_event,
        "timecreated": item_event["timecreated"] + 100,
        "other": {**item_event["other"], "finalgrade": 11},
    }
    older = {
        **item_event,
        "timecreated": item_event["timecreated"] + 50,
        "other": {**item_event["other"], "finalgrade": 22},
    }
    bench.drop(newer)
    bench.process_all()
    bench.drop(older)
    bench.process_all()
    key = f"{item_event['other']['itemid']}:{item_event['relateduserid']}"
    with engine.connect() as conn:
        payload = conn.execute(
            select(raw_records.c.payload).where(raw_records.c.entity == "grades", raw_records.c.record_id == key)
        ).scalar_one()
    assert payload["graderaw"] == 11


def test_a_failing_source_is_retried_with_backoff_then_dead_and_requeued(warehouse, tmp_path):
    """Moodle unreachable: the re-fetch fails, the event is failed with its next attempt, then dead."""
    from datetime import UTC, datetime, timedelta

    from integration_pipelines.lib.events import log
    from integration_pipelines.lib.events.process import EventProcessor

    clock = [datetime(2026, 12, 1, tzinfo=UTC)]
    inbox = EventsInbox.at(tmp_path / "events" / "inbox")
    from functools import partial

    from integration_pipelines.lib.moodle import MoodleClient

    unreachable = partial(MoodleClient, "http://127.0.0.1:9", "token", max_attempts=1)
    processor = EventProcessor(
        warehouse,
        inbox,
        MAPPING,
        moodle_client=unreachable,
        retry=RetryPolicy(max_attempts=3, base_seconds=10),
        clock=lambda: clock[0],
    )
    bench = events_bench(warehouse, None, tmp_path, TENANT, MAPPING)
    bench.processor = processor
    user_updated = json.loads(
        (Path(__file__).parents[2] / "fixtures" / "moodle_events" / "user_updated.json").read_text()
    )
    event_id = bench.drop({**user_updated, "host": "h", "extra": ""})
    result = bench.process_all()[0]
    assert result.outcomes["failed"] == 1
    row = log_rows(warehouse)[event_id]
    assert (row["status"], row["retry_count"]) == ("failed", 1)
    assert row["next_attempt_at"] == clock[0] + timedelta(seconds=10)
    assert "MoodleTransportError" in row["last_error"]
    assert processor.process_due().outcomes == {}  # not due yet
    clock[0] += timedelta(seconds=10)
    assert processor.process_due().outcomes["failed"] == 1
    assert log_rows(warehouse)[event_id]["next_attempt_at"] == clock[0] + timedelta(seconds=20)  # doubled
    clock[0] += timedelta(seconds=20)
    assert processor.process_due().outcomes["dead"] == 1
    assert log_rows(warehouse)[event_id]["status"] == "dead"
    clock[0] += timedelta(days=1)
    assert processor.process_due().outcomes == {}  # dead events wait for an engineer
    with warehouse.begin() as conn:
        assert log.requeue(conn, clock[0], tenant_id="another-college", event_ids=[event_id]) == 0
        assert log.status_of(conn, event_id, "another-college") is None
        assert log.status_of(conn, event_id, TENANT) == "dead"
        assert log.requeue(conn, clock[0], tenant_id=TENANT, event_ids=[event_id]) == 1
    row = log_rows(warehouse)[event_id]
    assert (row["status"], row["retry_count"]) == ("failed", 0)


def test_zoho_notifications_from_the_sandbox_reach_what_the_nightly_sync_reaches(college, request, tmp_path):
    """The sandbox's watch channel notifies the receiver of changed and deleted Zoho records;
    processing re-reads each notified module's change window. The result equals a twin warehouse
    that saw the same college before the changes and then synced it whole (the same history: a
    record seen alive and then deleted is a tombstone, which one never seen is not)."""
    from integration_pipelines.api import create_app
    from integration_pipelines.lib.serving import serve_in_thread
    from integration_pipelines.settings import Settings

    sandbox, engine, bench = college
    with empty_warehouse_url(engine.dialect.name, request, tmp_path / "twin") as twin_url:
        (tmp_path / "twin").mkdir(exist_ok=True)
        twin = create_warehouse_engine(twin_url)
        ensure_schema(twin)
        sync_college(twin, sandbox, TENANT, MAPPING)
        token = sandbox.config.zoho_notify_token
        with pytest.MonkeyPatch.context() as env:
            env.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
            env.setenv("EVENTS_WEBHOOK_SECRETS", json.dumps({TENANT: token}))
            settings = Settings()
            with serve_in_thread(create_app(settings), name="api") as url:
                sandbox.config.zoho_notify_url = f"{url}/v1/events/zoho?tenant={TENANT}"
                sandbox.mutate(
                    advance_seconds=600,
                    zoho_change_share=0.1,
                    zoho_delete_share=0.05,
                    zoho_modules=["Students", "Enrollments", "Payments"],
                )
                sandbox.app.events.wait_delivered(30)
                sandbox.config.zoho_notify_url = None
        notifications = sandbox.app.events.zoho_notifications
        assert {n["operation"] for n in notifications} == {"update", "delete"}
        assert sandbox.app.events.failed == 0
        before = {t: rows(engine, t, TENANT) for t in ("students", "enrollments", "payments")}
        bench.inbox = EventsInbox.at(settings.events_inbox_dir)  # type: ignore[arg-type]
        bench.processor.inbox = bench.inbox
        results = bench.process_all()
        assert sum(r.outcomes["processed"] for r in results) == len(notifications)
        sync_college(twin, sandbox, TENANT, MAPPING)
        for table in ("students", "enrollments", "payments"):
            ours = rows(engine, table, TENANT)
            assert ours != before[table], table  # the notifications changed it
            strip = lambda rs: {k: {c: v for c, v in r.items() if c != "source_modified_at"} for k, r in rs.items()}  # noqa: E731
            assert strip(ours) == strip(rows(twin, table, TENANT)), table
        twin.dispose()


def test_one_event_that_cannot_be_applied_fails_alone(warehouse, tmp_path):
    """A batch whose application fails is applied event by event: the others are processed."""
    from integration_pipelines.lib.events.models import InboxEvent

    bench = events_bench(warehouse, None, tmp_path, TENANT, MAPPING)  # no source clients at all
    fixtures = Path(__file__).parents[2] / "fixtures" / "moodle_events"
    for name in ("user_graded", "course_completed", "grade_deleted"):
        bench.drop({**json.loads((fixtures / f"{name}.json").read_text()), "host": "h", "extra": ""})
    notification = {"server_time": 1717236922000, "module": "Students", "ids": ["1"], "operation": "update"}
    zoho = InboxEvent(
        event_id="zoho-1",
        tenant_id=TENANT,
        sender="zoho",
        received_at=datetime.now(UTC),
        body={**notification, "channel_id": "c"},
    )
    bench.inbox.accept(zoho)
    (result,) = bench.process_all()
    assert (result.outcomes["processed"], result.outcomes["failed"]) == (3, 1)
    logged = log_rows(warehouse)
    assert logged["zoho-1"]["status"] == "failed"
    assert "need the Zoho client" in logged["zoho-1"]["last_error"]
    assert {r["status"] for k, r in logged.items() if k != "zoho-1"} == {"processed"}
