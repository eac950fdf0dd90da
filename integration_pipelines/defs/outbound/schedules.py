"""When the write-back runs besides after the canonical grades change: hourly, for retries."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from integration_pipelines.defs.outbound.jobs import grade_writeback

grade_writeback_retries = ScheduleDefinition(
    name="grade_writeback_retries",
    job=grade_writeback,
    cron_schedule="45 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Hourly: resend what a run could not deliver (Zoho throttled or down, an answer lost) and "
    "anything new. Starts stopped, like the syncs' schedules.",
)
