"""After a full_sync, the change windows its snapshots covered read as filled in the partition grid.

full_sync never materializes the change-window assets (`zoho_<entity>_changes`,
`moodle_grade_changes`): it reads each source whole instead. Yet a snapshot holds every change
made before it was read, so a window that ended before the snapshot began has nothing left to
read. Without this sensor the grid shows such windows as missing ("0% filled" after a first
full_sync), which reads as missing data.

On each successful full_sync, this sensor reports a runless materialization for every window that
ended before the snapshot step covering it started and that nothing has materialized yet, with
metadata naming the run. Today's window is never reported (the snapshot saw only part of it), nor
is a change asset whose snapshot did not run in that full_sync (a re-execution of later steps).
Windows already materialized by incremental_sync are left as they are.

The sensor only reads the run's event log and returns the events; the daemon records them.
"""

from collections.abc import Mapping
from datetime import UTC, datetime

from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    MetadataValue,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorResult,
    SkipReason,
    TimeWindowPartitionsDefinition,
    run_failure_sensor,
    run_status_sensor,
)
from dagster import DagsterRunStatus as RunStatus
from sqlalchemy import Engine

from integration_pipelines.defs.jobs import full_sync, incremental_sync
from integration_pipelines.defs.partitions import change_windows
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.assets import ZOHO_ENTITIES, raw_zoho_key, zoho_changes_key
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.warehouse.sync_runs import finish_run

# Each change-window asset, and the snapshot asset whose read covers its changes.
COVERING_SNAPSHOTS: dict[AssetKey, AssetKey] = {
    AssetKey("moodle_grade_changes"): AssetKey("raw_moodle_grades"),
    **{zoho_changes_key(e): raw_zoho_key(e) for e in ZOHO_ENTITIES},
}


def snapshot_read_starts(instance: DagsterInstance, run_id: str) -> dict[AssetKey, datetime]:
    """When the step that materialized each asset of the run started (its read began after that)."""
    step_started: dict[str, float] = {}
    materialized_by: dict[AssetKey, str] = {}
    records = instance.all_logs(run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.ASSET_MATERIALIZATION})
    for record in records:
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == DagsterEventType.STEP_START:
            step_started.setdefault(event.step_key, record.timestamp)
        elif event.asset_key is not None:
            materialized_by[event.asset_key] = event.step_key
    return {
        key: datetime.fromtimestamp(step_started[step], UTC)
        for key, step in materialized_by.items()
        if step in step_started
    }


def covered_windows(partitions_def: TimeWindowPartitionsDefinition, covered_until: datetime) -> list[str]:
    """The windows that ended at or before `covered_until`."""
    keys = partitions_def.get_partition_keys(current_time=covered_until)
    return [k for k in keys if partitions_def.time_window_for_partition_key(k).end <= covered_until]


def coverage_events(
    instance: DagsterInstance,
    run_id: str,
    *,
    partitions_def: TimeWindowPartitionsDefinition = change_windows,
    covering: Mapping[AssetKey, AssetKey] = COVERING_SNAPSHOTS,
) -> list[AssetMaterialization]:
    """Materializations of the windows full_sync run `run_id` covered that nothing has materialized."""
    read_started = snapshot_read_starts(instance, run_id)
    events = []
    for change_key, snapshot_key in covering.items():
        started = read_started.get(snapshot_key)
        if started is None:
            continue
        done = instance.get_materialized_partitions(change_key)
        for window in covered_windows(partitions_def, started):
            if window in done:
                continue
            time_window = partitions_def.time_window_for_partition_key(window)
            events.append(
                AssetMaterialization(
                    asset_key=change_key,
                    partition=window,
                    description=f"Covered by the {snapshot_key.to_user_string()} snapshot of full_sync run "
                    f"{run_id[:8]}: no change read here would be new.",
                    metadata={
                        "covered_by_run": MetadataValue.dagster_run(run_id),
                        "covered_by_job": "full_sync",
                        "covered_by_snapshot": MetadataValue.asset(snapshot_key),
                        "snapshot_started_at": MetadataValue.timestamp(started),
                        "window_start": time_window.start.isoformat(),
                        "window_end": time_window.end.isoformat(),
                    },
                )
            )
    return events


@run_status_sensor(
    name="full_sync_covers_change_windows",
    run_status=RunStatus.SUCCESS,
    monitored_jobs=[full_sync],
    default_status=DefaultSensorStatus.RUNNING,
    description="After each successful full_sync, marks the change windows its snapshots covered as "
    "materialized (runless, with the run in their metadata), so the partition grid of zoho_<entity>_changes "
    "and moodle_grade_changes does not show them as missing. Reads the event log only.",
)
def full_sync_covers_change_windows(context: RunStatusSensorContext) -> SensorResult | SkipReason:
    run_id = context.dagster_run.run_id
    events = coverage_events(context.instance, run_id)
    if not events:
        return SkipReason(f"full_sync run {run_id[:8]} covered no window that was not already materialized")
    context.log.info(f"full_sync run {run_id[:8]} covered {len(events)} change windows")
    return SensorResult(asset_events=events)


# -- the sync history (issue 16) ------------------------------------------------------------------


def record_run_outcome(
    instance: DagsterInstance, run_id: str, engine: Engine, tenant_id: str, error: str | None
) -> None:
    """Set a sync run's outcome in the warehouse's sync history (`sync_runs`), with its start and
    end as Dagster recorded them. The sensors below do it for the runs the daemon sees finish; a
    run executed in the launching process (`integration-pipelines sync`, `make demo`) does it
    itself, since no daemon need be running then."""
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        raise ValueError(f"run {run_id} is not on this Dagster instance")
    started, ended = record.start_time, record.end_time
    with begin_write(engine) as conn:
        finish_run(
            conn,
            tenant_id,
            run_id,
            record.dagster_run.job_name,
            started_at=datetime.fromtimestamp(started, UTC) if started else datetime.now(UTC),
            succeeded=error is None,
            finished_at=datetime.fromtimestamp(ended, UTC) if ended else None,
            error=error,
        )


def _record_outcome(context: RunStatusSensorContext, warehouse: WarehouseResource, error: str | None) -> SkipReason:
    run = context.dagster_run
    record_run_outcome(context.instance, run.run_id, warehouse.engine, warehouse.tenant, error)
    return SkipReason(f"recorded {run.job_name} run {run.run_id[:8]} in sync_runs")


@run_status_sensor(
    name="sync_history_success",
    run_status=RunStatus.SUCCESS,
    monitored_jobs=[full_sync, incremental_sync],
    default_status=DefaultSensorStatus.RUNNING,
    description="Records each successful full_sync and incremental_sync in the warehouse's sync_runs "
    "(GET /v1/sync/history). One row per run.",
)
def sync_history_success(context: RunStatusSensorContext, warehouse: WarehouseResource) -> SkipReason:
    return _record_outcome(context, warehouse, None)


@run_failure_sensor(
    name="sync_history_failure",
    monitored_jobs=[full_sync, incremental_sync],
    default_status=DefaultSensorStatus.RUNNING,
    description="Records each failed full_sync and incremental_sync, with its error, in sync_runs.",
)
def sync_history_failure(context: RunFailureSensorContext, warehouse: WarehouseResource) -> SkipReason:
    message = context.failure_event.message if context.failure_event is not None else None
    return _record_outcome(context, warehouse, message or "the run failed")
