"""The write-back as Dagster runs it, against the sandbox over HTTP, on both backends: full_sync,
a dry run, a write-back under faults, a second one, another full_sync (no echo), a third one;
then a grade staff edit in Zoho, reported as a conflict and resolved by the job."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.schema import grade_outbox, grades
from integration_pipelines_tests.conftest import BACKENDS, empty_warehouse_url
from integration_pipelines_tests.e2e import materializations, running_pipeline
from integration_pipelines_tests.lib.outbound.truth import expected_zoho_grades, faults, zoho_grade_records

pytestmark = pytest.mark.slow

METADATA = ("sent", "unchanged", "conflicts", "parked", "credits_used")


def _defs():
    from integration_pipelines.definitions import defs

    return defs


def write_back(pipeline, *, dry_run: bool = False) -> dict:
    result = (
        _defs()
        .resolve_job_def("grade_writeback")
        .execute_in_process(
            instance=pipeline.instance,
            run_config={"ops": {"zoho_grade_writeback": {"config": {"dry_run": dry_run}}}},
            raise_on_error=True,
        )
    )
    return materializations(result)["zoho_grade_writeback"]


def live_grades(engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(grades.c.source, func.count()).where(grades.c.deleted_at.is_(None)).group_by(grades.c.source)
        )
        return dict(rows.all())


def echoes(engine) -> int:
    """Live Zoho grade rows that are our own writes come back (should be none)."""
    with engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(grades.join(grade_outbox, grade_outbox.c.zoho_id == grades.c.zoho_id))
            .where(grades.c.deleted_at.is_(None), grades.c.btec_grade == grade_outbox.c.btec_grade)
        ).scalar_one()


@pytest.fixture(scope="module", params=BACKENDS)
def flow(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    with (
        empty_warehouse_url(request.param, request, directory) as url,
        running_pipeline(url, directory, students=60) as pipeline,
    ):
        sb = pipeline.sandbox
        engine = create_warehouse_engine(url)
        out: dict = {"pipeline": pipeline}
        pipeline.run("full_sync")
        out["live_before"] = live_grades(engine)
        out["zoho_before"] = zoho_grade_records(sb)
        out["dry"] = write_back(pipeline, dry_run=True)
        out["zoho_after_dry"] = zoho_grade_records(sb)
        with faults(sb, rate=0.1, write_rate=0.1, token_calls=100):
            out["first"] = write_back(pipeline)
        out["zoho_after_first"] = zoho_grade_records(sb)
        out["expected"] = expected_zoho_grades(sb)
        out["second"] = write_back(pipeline)
        pipeline.run("full_sync")
        out["live_after"] = live_grades(engine)
        out["echoes"] = echoes(engine)
        out["third"] = write_back(pipeline)

        # Staff change one of the grades we wrote, in Zoho, after the Moodle grade.
        with engine.connect() as conn:
            record_key, zoho_id, ours = conn.execute(
                select(grade_outbox.c.record_key, grade_outbox.c.zoho_id, grade_outbox.c.btec_grade).limit(1)
            ).one()
        staff = "Distinction" if ours != "Distinction" else "Pass"
        with sb.lock:
            record = sb.college.zoho["BTEC_Grades"].records[int(zoho_id)]
            record.grade = staff
            sb.college.zoho["BTEC_Grades"].touch(record, sb.college.clock())
        pipeline.run("full_sync")
        out["conflicted"] = write_back(pipeline)
        out["zoho_grade_in_conflict"] = sb.college.zoho["BTEC_Grades"].records[int(zoho_id)].grade
        resolved = (
            _defs()
            .resolve_job_def("resolve_grade_conflicts")
            .execute_in_process(
                instance=pipeline.instance,
                run_config={
                    "ops": {
                        "resolve_grade_conflicts_op": {
                            "config": {"resolution": "force_moodle", "record_keys": [record_key]}
                        }
                    }
                },
            )
        )
        (step,) = [e for e in resolved.all_events if e.event_type_value == "STEP_OUTPUT"]
        out["resolved"] = {k: v.value for k, v in step.event_specific_data.metadata.items()}
        out["conflict"] = (record_key, staff, ours, sb.college.zoho["BTEC_Grades"].records[int(zoho_id)].grade)
        out["after_force"] = write_back(pipeline)
        engine.dispose()
        yield out


def test_the_write_back_is_not_part_of_the_syncs_and_follows_the_grades():
    defs = _defs()
    for job in ("full_sync", "incremental_sync"):
        keys = defs.resolve_job_def(job).asset_layer.executable_asset_keys
        assert "zoho_grade_writeback" not in {k.to_user_string() for k in keys}
    node = defs.resolve_asset_graph().get(_asset_key())
    assert node.automation_condition is not None
    assert defs.resolve_assets_def(_asset_key()).op.pool == "zoho_api"
    assert defs.resolve_schedule_def("grade_writeback_retries").job_name == "grade_writeback"


def test_the_write_back_is_requested_once_the_canonical_grades_change():
    import dagster as dg

    defs, only = _defs(), dg.AssetSelection.assets(_asset_key())
    with dg.DagsterInstance.ephemeral() as instance:
        quiet = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=only)
        assert quiet.total_requested == 0
        instance.report_runless_asset_event(dg.AssetMaterialization("grades"))
        changed = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=only, cursor=quiet.cursor
        )
        assert changed.total_requested == 1
        again = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, asset_selection=only, cursor=changed.cursor
        )
        assert again.total_requested == 0  # requested once per change


def _asset_key():
    from dagster import AssetKey

    return AssetKey("zoho_grade_writeback")


def test_a_dry_run_says_what_it_would_send_and_sends_nothing(flow):
    dry, first = flow["dry"], flow["first"]
    assert dry["dry_run"] is True and dry["would_send"] == first["sent"] > 0
    assert (dry["sent"], dry["requests"], dry["credits_used"]) == (0, 0, 0)
    assert flow["zoho_after_dry"] == flow["zoho_before"]


def test_each_eligible_grade_arrives_once_with_its_btec_value_and_metadata_says_so(flow):
    first, expected, held = flow["first"], flow["expected"], flow["zoho_after_first"]
    assert {key: held.get(key) for key in expected} == {key: [grade] for key, grade in expected.items()}
    assert all(name in first for name in METADATA)
    assert first["sent"] == sum(1 for key, grade in expected.items() if flow["zoho_before"].get(key) != [grade])
    assert first["unchanged"] == first["considered"] - first["sent"]
    assert (first["conflicts"], first["parked"], first["failed"]) == (0, 0, 0)
    # One credit per batch of up to 100 answered; more only for a batch resent after a lost answer.
    assert first["batches"] == (first["sent"] + 99) // 100 <= first["credits_used"]


def test_a_second_run_sends_nothing(flow):
    second = flow["second"]
    assert (second["sent"], second["requests"], second["credits_used"]) == (0, 0, 0)
    assert second["unchanged"] == second["considered"]


def test_after_a_full_sync_the_canonical_grades_hold_each_grade_once_and_a_third_run_sends_nothing(flow):
    # Our writes came back and added no rows. A Zoho record we overwrote (it held another grade,
    # older than Moodle's: a gradebook override made after it) is ours now, one grade with its
    # Moodle original, so it leaves the canonical grades.
    before, expected = flow["zoho_before"], flow["expected"]
    overwritten = sum(1 for key, grade in expected.items() if key in before and before[key] != [grade])
    live_before = flow["live_before"]
    assert flow["live_after"] == {**live_before, "zoho": live_before["zoho"] - overwritten}
    assert flow["echoes"] == 0
    assert (flow["third"]["sent"], flow["third"]["requests"]) == (0, 0)


def test_a_grade_staff_changed_in_zoho_is_a_conflict_until_the_job_resolves_it(flow):
    record_key, staff, ours, final = flow["conflict"]
    conflicted = flow["conflicted"]
    assert (conflicted["conflicts"], conflicted["sent"]) == (1, 0)
    assert conflicted["conflict_records"] == [record_key]
    assert flow["zoho_grade_in_conflict"] == staff  # not overwritten
    resolved = flow["resolved"]
    assert (resolved["resolved"], resolved["writeback_sent"]) == (1, 1)
    assert final == ours  # forced: Moodle's grade written over it
    assert (flow["after_force"]["sent"], flow["after_force"]["conflicts"]) == (0, 0)
