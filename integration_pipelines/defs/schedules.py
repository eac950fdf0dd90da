"""When the syncs run. Both schedules start stopped: turn them on in the UI once the sources are configured."""

from datetime import timedelta

from dagster import DefaultScheduleStatus, RunRequest, ScheduleDefinition, ScheduleEvaluationContext, schedule

from integration_pipelines.defs.jobs import full_sync, incremental_sync

full_sync_nightly = ScheduleDefinition(
    name="full_sync_nightly",
    job=full_sync,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="The snapshot reconciliation, nightly, when the sources are quiet.",
)


@schedule(
    job=incremental_sync,
    cron_schedule="15 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
)
def incremental_sync_hourly(context: ScheduleEvaluationContext) -> RunRequest:
    """Every hour, yesterday's and today's change windows in one run.

    Re-reading yesterday catches what changed between the last run of the day and midnight;
    records already applied cost no writes.
    """
    today = context.scheduled_execution_time
    return RunRequest(
        tags={
            "dagster/asset_partition_range_start": (today - timedelta(days=1)).strftime("%Y-%m-%d"),
            "dagster/asset_partition_range_end": today.strftime("%Y-%m-%d"),
        }
    )
