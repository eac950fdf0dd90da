"""End to end: the sandbox's Moodle emits webhooks to a running receiver; the events_inbox sensor
hands the files to process_events runs; the change reaches the canonical tables and the profile
API without a sync (after the first full_sync that built the college). Then the sensor's claims,
run keys and recovery of a batch whose run died."""

from __future__ import annotations

import json

import httpx
import pytest
from dagster import DagsterRunStatus, build_sensor_context
from sqlalchemy import create_engine, inspect, select, text

from integration_pipelines.api import create_app
from integration_pipelines.lib.serving import serve_in_thread
from integration_pipelines.lib.warehouse.api_keys import create_key
from integration_pipelines.lib.warehouse.schema import grades, integration_events_log
from integration_pipelines.settings import Settings
from integration_pipelines_tests.e2e import running_pipeline

SECRET = "sandbox-webhook-token"


def run_sensor_requests(pipeline, cursor=None):
    from integration_pipelines.definitions import defs

    sensor = defs.resolve_sensor_def("events_inbox_sensor")
    context = build_sensor_context(instance=pipeline.instance, cursor=cursor, definitions=defs)
    result = sensor.evaluate_tick(context)
    return result


def launch(pipeline, request):
    from integration_pipelines.definitions import defs

    job = defs.resolve_job_def("process_events")
    result = job.execute_in_process(
        run_config=request.run_config,
        instance=pipeline.instance,
        tags={**request.tags, "dagster/run_key": request.run_key},
    )
    assert result.success
    return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("events-e2e")
    url = f"sqlite:///{tmp / 'warehouse.db'}"
    with running_pipeline(url, tmp, students=60, seed=5) as pipeline, pytest.MonkeyPatch.context() as env:
        env.setenv("EVENTS_WEBHOOK_SECRETS", json.dumps({"default": SECRET}))
        settings = Settings()
        with serve_in_thread(create_app(settings), name="api") as api_url:
            pipeline.sandbox.config.webhook_url = f"{api_url}/v1/events/moodle"
            pipeline.sandbox.config.tenant_id = "default"
            pipeline.run("full_sync")
            with create_engine(url).begin() as conn:
                _, admin_key = create_key(conn, "default", "admin", label="events e2e")
            yield pipeline, (api_url, admin_key), settings


def test_a_grade_and_a_new_student_reach_the_warehouse_and_the_profile_without_a_sync(pipeline):
    pipeline, (api_url, admin_key), settings = pipeline
    sandbox = pipeline.sandbox
    summary = sandbox.mutate(advance_seconds=600, moodle_new_grades=3, zoho_new_students=1)
    sandbox.app.events.wait_delivered(30)
    assert sandbox.app.events.failed == 0
    emitted = summary["events"]["to"] - summary["events"]["from"]
    assert len(list(settings.events_inbox_dir.glob("*.json"))) == emitted

    new_user = max(sandbox.college.users)
    admin = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=api_url, headers=admin) as http:
        assert http.get("/v1/students/profile", params={"moodle_user_id": new_user}).status_code == 404

    result = run_sensor_requests(pipeline)
    assert len(result.run_requests) == 1
    (request,) = result.run_requests
    assert request.run_key == request.tags["integration_pipelines/events_batch"]
    runs_before = len(pipeline.instance.get_runs())
    engine = create_engine(pipeline.warehouse_url)
    with engine.begin() as conn:
        # A staging table the refreshed marts read, missing (as in a warehouse whose first events
        # come before its first full dbt build): the run builds it again.
        conn.execute(text("DROP TABLE stg_unit_courses"))
    launch(pipeline, request)
    assert len(pipeline.instance.get_runs()) == runs_before + 1  # the event batch, and no sync

    assert inspect(engine).has_table("stg_unit_courses")
    graded = [
        e
        for e in sandbox.app.events.events[summary["events"]["from"] :]
        if e["eventname"].endswith("submission_graded")
    ]
    with engine.connect() as conn:
        logged = {r.status for r in conn.execute(select(integration_events_log.c.status))}
        users = {int(e["relateduserid"]) for e in graded}
        found = set(conn.execute(select(grades.c.moodle_user_id).where(grades.c.moodle_user_id.in_(users))).scalars())
    assert logged <= {"processed", "ignored"}
    assert found == users
    # The new student's Moodle account is in the profile API (the marts were refreshed by the run).
    with httpx.Client(base_url=api_url, headers=admin) as http:
        profile = http.get("/v1/students/profile", params={"moodle_user_id": new_user})
    assert profile.status_code == 200, profile.text
    assert profile.json()["student"]["moodle_user_id"] == new_user
    engine.dispose()


def test_a_batch_whose_run_died_is_requested_again_under_a_new_key(pipeline):
    pipeline, _, settings = pipeline
    sandbox = pipeline.sandbox
    sandbox.mutate(advance_seconds=60, moodle_user_updates=2)
    sandbox.app.events.wait_delivered(30)
    (request,) = run_sensor_requests(pipeline).run_requests
    # The run never happens (the tick's run failed to launch, or it was killed): a failed run stands for it.
    from integration_pipelines.definitions import defs

    job = defs.resolve_job_def("process_events")
    dead = pipeline.instance.create_run_for_job(job, run_config=request.run_config, tags=request.tags)
    pipeline.instance.report_run_failed(dead)
    assert pipeline.instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
    (again,) = run_sensor_requests(pipeline).run_requests
    batch = request.tags["integration_pipelines/events_batch"]
    assert again.run_key == f"{batch}.1" and again.tags["integration_pipelines/events_batch"] == batch
    launch(pipeline, again)
    assert run_sensor_requests(pipeline).run_requests == []  # nothing left
    inbox_root = settings.events_inbox_dir.parent
    assert list((inbox_root / "claimed").iterdir()) == []


def test_the_same_file_dropped_again_by_hand_gets_a_run_of_its_own(pipeline):
    """Its batch is named as the first one was (the same names), so it runs as `<batch>.1`."""
    pipeline, _, settings = pipeline
    fixtures = __import__("pathlib").Path(__file__).parents[2] / "fixtures" / "moodle_events"
    data = json.loads((fixtures / "course_completed.json").read_text())
    envelope = {
        "event_id": "by-hand-1",
        "tenant_id": "default",
        "sender": "local_webhooks",
        "received_at": "2026-12-02T00:00:00+00:00",
        "body": {**data, "host": "h", "extra": ""},
    }
    keys = []
    for _ in range(2):
        (settings.events_inbox_dir / "by-hand.json").write_text(json.dumps(envelope))
        (request,) = run_sensor_requests(pipeline).run_requests
        keys.append(request.run_key)
        launch(pipeline, request)
    batch = keys[0]
    assert keys == [batch, f"{batch}.1"]
    engine = create_engine(pipeline.warehouse_url)
    with engine.connect() as conn:
        statuses = list(
            conn.execute(
                select(integration_events_log.c.status).where(integration_events_log.c.event_id == "by-hand-1")
            ).scalars()
        )
    engine.dispose()
    assert statuses == ["processed"]  # once, though its file came twice


def test_the_sensor_is_due_on_every_loop_of_the_daemon():
    """The daemon evaluates sensors every MIN_INTERVAL_LOOP_TIME seconds and skips one whose last
    tick started less than its minimum interval ago. A tick's start is stamped a moment after its
    loop's, so a minimum equal to the loop's period is found short on the next loop: the sensor
    would tick on every other loop (every 10 s instead of 5)."""
    from dagster._daemon.sensor import MIN_INTERVAL_LOOP_TIME

    from integration_pipelines.defs.events.sensors import SENSOR_INTERVAL_SECONDS, events_inbox_sensor

    assert SENSOR_INTERVAL_SECONDS == MIN_INTERVAL_LOOP_TIME
    loop_later = MIN_INTERVAL_LOOP_TIME - 0.01  # the next loop, as the last tick's stamp sees it
    assert events_inbox_sensor.minimum_interval_seconds <= loop_later
