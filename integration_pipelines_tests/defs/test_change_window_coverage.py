"""After a full_sync, the change windows its snapshots covered read as materialized in the partition grid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterEventType,
    DagsterInstance,
    DailyPartitionsDefinition,
    SensorResult,
    SkipReason,
    asset,
    build_run_status_sensor_context,
    materialize,
)

from integration_pipelines.defs.sync.sensors import (
    COVERING_SNAPSHOTS,
    coverage_events,
    full_sync_covers_change_windows,
)

MOODLE = AssetKey("moodle_grade_changes")
ZOHO_STUDENTS = AssetKey("zoho_students_changes")
ZOHO_UNITS = AssetKey("zoho_units_changes")


@asset(name="raw_moodle_grades")
def moodle_grades_snapshot() -> None: ...


@asset(name="raw_zoho_students")
def zoho_students_snapshot() -> None: ...


@pytest.fixture
def instance():
    with DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def snapshot_run(instance):
    """A run that read Moodle's grades and Zoho's students whole (and no other Zoho module)."""
    started = datetime.now(UTC)
    result = materialize([moodle_grades_snapshot, zoho_students_snapshot], instance=instance)
    assert result.success
    return result.run_id, started


def last_days(n: int) -> DailyPartitionsDefinition:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return DailyPartitionsDefinition(start_date=today - timedelta(days=n), end_offset=1, timezone="UTC")


def by_asset(events: list[AssetMaterialization]) -> dict[AssetKey, set[str]]:
    out: dict[AssetKey, set[str]] = {}
    for event in events:
        assert isinstance(event.partition, str)
        out.setdefault(event.asset_key, set()).add(event.partition)
    return out


def test_the_covered_windows_are_every_finished_window_of_the_assets_whose_snapshot_ran(instance, snapshot_run):
    run_id, _ = snapshot_run
    windows = last_days(5)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    covered = by_asset(coverage_events(instance, run_id, partitions_def=windows))
    finished = {k for k in windows.get_partition_keys() if k != today}
    assert len(finished) == 5
    assert covered == {MOODLE: finished, ZOHO_STUDENTS: finished}  # not today's, not zoho_units'


def test_the_events_say_which_run_and_snapshot_covered_them(instance, snapshot_run):
    run_id, started = snapshot_run
    events = coverage_events(instance, run_id, partitions_def=last_days(2))
    event = next(e for e in events if e.asset_key == ZOHO_STUDENTS)
    assert event.metadata["covered_by_run"].value == run_id
    assert event.metadata["covered_by_job"].value == "full_sync"
    assert event.metadata["covered_by_snapshot"].value == AssetKey("raw_zoho_students")
    assert event.metadata["snapshot_started_at"].value >= started.timestamp() - 1
    assert event.metadata["window_end"].value <= datetime.now(UTC).isoformat()


def test_windows_already_materialized_are_left_as_they_are(instance, snapshot_run):
    run_id, _ = snapshot_run
    windows = last_days(3)
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    instance.report_runless_asset_event(AssetMaterialization(asset_key=MOODLE, partition=yesterday))
    covered = by_asset(coverage_events(instance, run_id, partitions_def=windows))
    assert yesterday not in covered[MOODLE]
    assert yesterday in covered[ZOHO_STUDENTS]


def test_every_change_window_asset_has_a_covering_snapshot():
    from integration_pipelines.definitions import defs
    from integration_pipelines.defs.partitions import change_windows

    graph = defs.resolve_asset_graph()
    partitioned = {key for key in graph.get_all_asset_keys() if graph.get(key).partitions_def == change_windows}
    assert partitioned == set(COVERING_SNAPSHOTS)
    assert set(COVERING_SNAPSHOTS.values()) <= graph.get_all_asset_keys()


def test_the_sensor_reports_the_coverage_once(instance, snapshot_run):
    run_id, _ = snapshot_run
    (success,) = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_SUCCESS).records
    run = instance.get_run_by_id(run_id)
    assert run is not None and success.event_log_entry.dagster_event is not None

    def evaluate():
        context = build_run_status_sensor_context(
            sensor_name=full_sync_covers_change_windows.name,
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=success.event_log_entry.dagster_event,
        )
        return full_sync_covers_change_windows(context)

    first = evaluate()
    assert isinstance(first, SensorResult)
    assert {e.asset_key for e in first.asset_events} == {MOODLE, ZOHO_STUDENTS}
    for event in first.asset_events:  # what the daemon does with a tick's events
        assert isinstance(event, AssetMaterialization)
        instance.report_runless_asset_event(event)
    filled = instance.get_materialized_partitions(ZOHO_STUDENTS)
    assert len(filled) == len(first.asset_events) // 2 > 300  # every finished day since INCREMENTAL_START_DATE
    assert instance.get_materialized_partitions(ZOHO_UNITS) == set()
    assert isinstance(evaluate(), SkipReason)
