"""Time windows for incremental syncs.

Daily windows over each source's own modification time (Zoho `Modified_Time`, Moodle grade
`timemodified`). Daily rather than hourly: a window is the unit of backfill and of the UI's
partition grid, and a college's sources change in the tens of thousands of records a day at most,
so a day is one cheap run; hourly windows would multiply runs and partitions 24-fold for no gain.
Freshness comes from the schedule instead, which re-runs the current day's window every hour
(`end_offset=1` makes today's window exist before the day is over). Re-running a window only
re-reads it: unchanged records cost no writes. The first window is `INCREMENTAL_START_DATE`.
"""

from dagster import DailyPartitionsDefinition

from integration_pipelines.settings import get_settings

change_windows = DailyPartitionsDefinition(
    start_date=get_settings().incremental_start_date.isoformat(),
    end_offset=1,
    timezone="UTC",
)
