"""Schedules of the events area: retries of failed events, and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, SkipReason, schedule
from sqlalchemy import func, or_, select

from integration_pipelines.defs.events.jobs import events_retention, process_events
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.schema import integration_events_log
from integration_pipelines.settings import get_settings

STALE_PENDING = timedelta(minutes=30)


@schedule(
    job=process_events,
    cron_schedule="* * * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Every minute: when failed events are due for another attempt (exponential backoff from "
    "EVENTS_RETRY_BASE_SECONDS), a process_events run retries them; otherwise nothing runs.",
)
def events_retry(context: ScheduleEvaluationContext):
    now = context.scheduled_execution_time or datetime.now(UTC)
    c = integration_events_log.c
    engine = create_warehouse_engine(get_settings().warehouse_url)
    try:
        with engine.connect() as conn:
            due = conn.execute(
                select(func.count(), func.max(c.retry_count)).where(
                    or_(
                        (c.status == "failed") & (c.next_attempt_at <= now),
                        (c.status == "pending") & (c.received_at < now - STALE_PENDING),
                    )
                )
            ).one()
    except Exception as exc:  # noqa: BLE001 - no log table yet (no run has migrated the warehouse)
        return SkipReason(f"The events log cannot be read: {type(exc).__name__}")
    finally:
        engine.dispose()
    if not due[0]:
        return SkipReason("No event is due for a retry.")
    # One run per minute at most; the key says when, which is what a schedule's run is about.
    return RunRequest(run_key=f"retry-{now:%Y%m%dT%H%M}", run_config={"ops": {"apply_event_batch": {"config": {}}}})


@schedule(
    job=events_retention,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="03:30 UTC: remove processed and ignored events older than EVENTS_RETENTION_DAYS (90).",
)
def events_retention_daily(context: ScheduleEvaluationContext):
    return RunRequest()
