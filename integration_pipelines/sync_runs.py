"""The jobs run from a shell: `integration-pipelines sync full|incremental`.

A run is launched on the configured Dagster instance (`DAGSTER_HOME`, created if need be), so it
shows in the UI beside the scheduled ones, and reports each step as it finishes, as `make demo`
does. The command's exit status is the run's.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import redirect_stdout
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from integration_pipelines.dagster_home import ensure_dagster_home
from integration_pipelines.demo import (
    PROGRESS_LOGGER,
    Console,
    SyncProgress,
    record_in_sync_history,
    with_progress_logger,
)
from integration_pipelines.settings import get_settings

# Tags Dagster reads to run one job over a range of partitions in one run (a single-run backfill).
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def window_tags(partition: date | None, first: date | None, last: date | None, *, today: date | None = None):
    """The partition key or range tags of an incremental run: one window (`partition`), a range
    (`first`..`last`), or by default yesterday's and today's windows (what the hourly schedule
    runs). Raises ValueError for a range that ends before it starts or mixes both forms."""
    if partition is not None and (first is not None or last is not None):
        raise ValueError("give --partition, or --from and --to, not both")
    if partition is not None:
        return partition.isoformat(), {}
    today = today or datetime.now(UTC).date()
    first = first or (last or today) - timedelta(days=1)
    last = last or today
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    if first == last:
        return first.isoformat(), {}
    return None, {RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}


def run_job(job_name: str, *, partition_key: str | None = None, tags: dict | None = None, out: TextIO | None = None):
    """Run `job_name` on the configured instance with a line per step; returns the run's result."""
    from dagster import DagsterInstance

    settings = get_settings()
    assert settings.dagster_home is not None  # derived from the data directory when unset
    os.environ["DAGSTER_HOME"] = str(ensure_dagster_home(settings.dagster_home))
    console = Console(out or sys.stdout)
    from integration_pipelines.definitions import defs

    job = defs.resolve_job_def(job_name)
    progress = SyncProgress(console, total_steps=len(job.graph.nodes))
    log_path = Path(settings.data_dir) / f"sync-{job_name}.log"
    what = (
        f"partition {partition_key}"
        if partition_key
        else ", ".join(f"{k.split('_')[-1]} {v}" for k, v in (tags or {}).items())
    )
    console.line(
        f"Running {job_name}{' (' + what + ')' if what else ''} on the instance at {os.environ['DAGSTER_HOME']}"
    )
    started = time.monotonic()
    # dagster-dbt echoes dbt's output to stdout: it goes to the log file, the console keeps its lines.
    with DagsterInstance.get() as instance, open(log_path, "w") as log, redirect_stdout(log):
        result = with_progress_logger(job, progress).execute_in_process(
            instance=instance,
            partition_key=partition_key,
            tags=tags,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}, PROGRESS_LOGGER: {}}},
        )
        record_in_sync_history(instance, result)
    elapsed = time.monotonic() - started
    state = "succeeded" if result.success else "FAILED"
    console.line(f"{job_name} {state} in {elapsed:.1f}s (run {result.run_id}; dbt's output: {log_path})")
    for line in progress.total_lines():
        console.line(f"  {line}")
    return result
