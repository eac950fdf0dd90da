"""The grade write-back against the sandbox's Zoho over real HTTP, on both warehouse backends.

Each test syncs a generated college with `full_sync` (the real job), then calls the write-back
(lib/outbound/) with a real client, and compares what Zoho holds with the generator's truth.
"""

from __future__ import annotations

from importlib import resources

import pytest
from sqlalchemy import select

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.lib.mapping import load_mapping
from integration_pipelines.lib.outbound import outbox
from integration_pipelines.lib.outbound.payload import GradeRecordShape, WritebackMappingError
from integration_pipelines.lib.outbound.selection import grade_states
from integration_pipelines.lib.outbound.writeback import WritebackReport, plan, write_back
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.warehouse.schema import grade_outbox
from integration_pipelines.lib.zoho.writes import upsert_batch
from integration_pipelines_tests.e2e import running_pipeline
from integration_pipelines_tests.lib.outbound.truth import (
    conflict_keys,
    expected_zoho_grades,
    faults,
    record_counts,
    sandbox_client,
    zoho_grade_records,
)

pytestmark = pytest.mark.slow

TENANT = "default"


@pytest.fixture
def synced(warehouse_url, tmp_path, request):
    """A sandbox college synced into an empty warehouse by full_sync; yields (pipeline, engine)."""
    students = getattr(request, "param", 30)
    with running_pipeline(warehouse_url, tmp_path, students=students) as pipeline:
        pipeline.run("full_sync", marts=False)
        engine = create_warehouse_engine(warehouse_url)
        try:
            yield pipeline, engine
        finally:
            engine.dispose()


def run(pipeline, engine, **kwargs) -> WritebackReport:
    sb = pipeline.sandbox
    return write_back(engine, lambda: sandbox_client(sb), TENANT, FIELD_MAPPING, **kwargs)


def outbox_rows(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["record_key"]: dict(r) for r in conn.execute(select(grade_outbox)).mappings()}


def assert_zoho_holds_the_truth(sb) -> None:
    expected = expected_zoho_grades(sb)
    held = zoho_grade_records(sb)
    wrong = {key: (grade, held.get(key)) for key, grade in expected.items() if held.get(key) != [grade]}
    assert not wrong, f"{len(wrong)} of {len(expected)} grades not held exactly once with their value: {wrong}"


@pytest.mark.parametrize("synced", [80], indirect=True)
def test_every_grade_arrives_once_under_faults_and_token_expiry_and_a_second_run_sends_nothing(synced):
    pipeline, engine = synced
    sb = pipeline.sandbox
    before = zoho_grade_records(sb)
    # Small batches, so that the run makes a few hundred calls: faults and token deaths hit many
    # batches, and lost answers make the client resend batches Zoho had already applied.
    with faults(sb, rate=0.1, write_rate=0.1, token_calls=100):
        first = run(pipeline, engine, batch_size=2)
    assert sb.app.zoho.lost_answers > 0 and sum(sb.app.fault_count.values()) > 0
    assert sb.app.zoho_auth.refresh_count >= 3  # the token died every 100 calls
    assert first.sent > 0 and first.failed == 0 and first.parked == 0 and first.conflicts == 0
    assert_zoho_holds_the_truth(sb)
    # Records created: exactly the grades Zoho lacked; sent: those and the ones it held otherwise.
    expected = expected_zoho_grades(sb)
    lacking = [key for key in expected if key not in before]
    assert sum(record_counts(sb).values()) - sum(map(len, before.values())) == len(lacking)
    assert first.sent == sum(1 for key, grade in expected.items() if before.get(key) != [grade])
    statuses = {row["status"] for row in outbox_rows(engine).values()}
    assert statuses == {outbox.SENT}

    second = run(pipeline, engine)
    assert (second.sent, second.requests, second.batches) == (0, 0, 0)
    assert second.unchanged == second.considered == first.considered


def test_a_dry_run_reports_what_it_would_send_and_sends_nothing(synced):
    pipeline, engine = synced
    sb = pipeline.sandbox
    before = record_counts(sb)
    dry = run(pipeline, engine, dry_run=True)
    assert dry.dry_run and dry.would_send > 0
    assert (dry.sent, dry.requests) == (0, 0)
    assert record_counts(sb) == before
    assert outbox_rows(engine) == {}
    real = run(pipeline, engine)
    assert real.sent == dry.would_send


def test_a_record_zoho_rejects_is_parked_with_its_message_and_the_rest_of_its_batch_lands(synced):
    pipeline, engine = synced
    sb = pipeline.sandbox
    with engine.connect() as conn:
        states = list(grade_states(conn, TENANT))
    to_send = plan(states, GradeRecordShape.of(FIELD_MAPPING), WritebackReport()).send
    # A student Zoho deleted after the sync: every grade of theirs now names a record Zoho no
    # longer has, and Zoho refuses it (INVALID_DATA on the Student lookup).
    victim = to_send[0].student_zoho_id
    with sb.lock:
        students = sb.college.zoho["Students"]
        students.delete(students.records[int(victim)], sb.college.clock())
    rejected = {e.record_key for e in to_send if e.student_zoho_id == victim}

    report = run(pipeline, engine)
    assert report.parked == len(rejected) and report.sent == len(to_send) - len(rejected)
    assert report.batches == (len(to_send) + 99) // 100  # the rejected records shared a batch with others
    rows = outbox_rows(engine)
    for key in rejected:
        assert rows[key]["status"] == outbox.PARKED
        assert "INVALID_DATA" in rows[key]["last_error"] and "api_name=Student" in rows[key]["last_error"]
    assert set(report.parked_errors) == rejected
    assert all(rows[e.record_key]["status"] == outbox.SENT for e in to_send if e.record_key not in rejected)

    again = run(pipeline, engine)
    assert (again.sent, again.requests, again.parked) == (0, 0, len(rejected))  # parked: not resent


def _a_grade_zoho_also_holds(engine):
    """A student x unit whose Moodle grade Zoho holds already (with the same value)."""
    with engine.connect() as conn:
        return next(s for s in grade_states(conn, TENANT) if s.zoho_grade == s.btec_grade)


def test_a_grade_edited_in_zoho_after_the_moodle_grade_is_a_conflict_resolved_by_config(synced):
    pipeline, engine = synced
    sb = pipeline.sandbox
    state = _a_grade_zoho_also_holds(engine)
    natural = conflict_keys(sb)  # the college's own: Zoho records set after a different Moodle grade
    assert state.record_key not in natural
    staff_grade = next(g for g in ("Refer", "Pass", "Merit", "Distinction") if g != state.btec_grade)
    with sb.lock:
        col = sb.college
        record = col.zoho["BTEC_Grades"].records[int(state.zoho_id)]
        record.grade = staff_grade
        col.zoho["BTEC_Grades"].touch(record, col.clock())
    pipeline.run("full_sync", marts=False)

    report = run(pipeline, engine)
    assert report.conflicts == len(natural) + 1 and set(report.conflict_keys) == natural | {state.record_key}
    assert zoho_grade_records(sb)[(int(state.student_zoho_id), int(state.unit_zoho_id))] == [staff_grade]
    row = outbox_rows(engine)[state.record_key]
    assert (row["status"], row["zoho_grade"], row["btec_grade"]) == (outbox.CONFLICT, staff_grade, state.btec_grade)
    assert staff_grade in row["last_error"]

    with begin_write(engine) as conn:
        assert outbox.resolve_conflicts(conn, TENANT, "keep_zoho", [state.record_key], row["updated_at"]) == [
            state.record_key
        ]
    kept = run(pipeline, engine)
    assert (kept.conflicts, kept.kept_zoho, kept.sent) == (len(natural), 1, 0)

    with begin_write(engine) as conn:
        # The same conflict again (as if a new one), this time resolved the other way.
        conn.execute(
            grade_outbox.update().where(grade_outbox.c.record_key == state.record_key).values(status=outbox.CONFLICT)
        )
        outbox.resolve_conflicts(conn, TENANT, "force_moodle", [state.record_key], row["updated_at"])
    forced = run(pipeline, engine)
    assert (forced.sent, forced.updated) == (1, 1)
    assert zoho_grade_records(sb)[(int(state.student_zoho_id), int(state.unit_zoho_id))] == [state.btec_grade]
    # Until the next sync the warehouse still shows the value the forced write replaced: older
    # than our write by Zoho's clock, so neither a conflict nor a reason to send again.
    after = run(pipeline, engine)
    assert (after.sent, after.conflicts, after.unchanged) == (0, len(natural), after.considered - len(natural))
    pipeline.run("full_sync", marts=False)
    synced_again = run(pipeline, engine)
    assert (synced_again.sent, synced_again.conflicts) == (0, len(natural))


def test_a_moodle_regrade_updates_the_record_written_before(synced):
    pipeline, engine = synced
    sb = pipeline.sandbox
    first = run(pipeline, engine)
    natural = conflict_keys(sb)
    sb.mutate(moodle_regrades=40, advance_seconds=3600)
    pipeline.run("full_sync", marts=False)
    second = run(pipeline, engine)
    assert second.updated > 0 and second.inserted == 0 and second.conflicts == len(natural)
    assert second.sent <= 40 and first.sent > 0
    assert_zoho_holds_the_truth(sb)


def test_a_crash_between_sending_and_recording_the_answer_resends_as_an_update(synced):
    pipeline, engine = synced
    sb = pipeline.sandbox
    shape = GradeRecordShape.of(FIELD_MAPPING)
    with engine.connect() as conn:
        batch = plan(list(grade_states(conn, TENANT)), shape, WritebackReport()).send[:50]
    # What a run does up to the crash: the batch recorded in flight, sent, and the answer lost
    # with the process (never recorded).
    with begin_write(engine) as conn:
        outbox.mark_in_flight(conn, TENANT, batch, batch[0].moodle_graded_at)
    with sandbox_client(sb) as client:
        assert all(o.written for o in upsert_batch(client, shape.module, [e.payload for e in batch], ["Grade_Key"]))

    report = run(pipeline, engine)
    keys = {e.record_key for e in batch}
    rows = outbox_rows(engine)
    assert all(rows[k]["status"] == outbox.SENT and rows[k]["attempts"] == 2 for k in keys)
    # The in-flight ones were found by Grade_Key and updated, not created a second time.
    assert (report.updated, report.inserted) == (len(keys), report.sent - len(keys))
    assert_zoho_holds_the_truth(sb)


def test_a_mapping_whose_grade_field_cannot_be_written_back_is_refused(tmp_path):
    text = (resources.files("integration_pipelines") / "mappings" / "default.yaml").read_text()
    broken = tmp_path / "college.yaml"
    broken.write_text(text.replace("btec_grade: Grade ", "btec_grade: {source: Grade, transform: lower} "))
    with pytest.raises(WritebackMappingError, match="transform 'lower' cannot be reversed to write Grade back"):
        GradeRecordShape.of(load_mapping(broken))
