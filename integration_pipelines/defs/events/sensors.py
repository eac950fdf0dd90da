"""The `events_inbox` sensor: hands the inbox's files to `process_events` runs, a batch per run.

Each tick lists the inbox (stopping after a bounded number of entries, so 100,000 waiting files
cost the same tick as 2,000), claims up to `MAX_BATCHES_PER_TICK` batches of
`EVENTS_BATCH_SIZE` files by moving them into `claimed/<batch>/`, and requests one run per batch.
A batch is named by the hash of its file names, which is also the run key: never the clock.
Files dropped into the inbox by hand are listed like any other.

A claimed batch with no queued or running run is requested (again): its run never started (the
tick died after claiming), failed or was killed, or the batch is named as an earlier one was.
The n-th run of a batch has the run key `<batch>.<n>`; it applies what the previous one did not
commit. The cursor counts the batches and files claimed so far.
"""

from __future__ import annotations

import hashlib
import json

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from integration_pipelines.defs.events.jobs import events_inbox, process_events
from integration_pipelines.settings import get_settings

BATCH_TAG = "integration_pipelines/events_batch"
MAX_BATCHES_PER_TICK = 5
# A tick every 5 seconds: the daemon's own loop (Dagster evaluates sensors at most every 5 s). It
# skips a sensor whose last tick started less than its minimum interval ago, and a tick's start is
# stamped a moment after its loop's, so a minimum of exactly 5 s skipped every other loop: ticks
# came every 10 s (measured, bench/bench_events.py). A minimum a second shorter ticks on every loop.
SENSOR_INTERVAL_SECONDS = 5
MAX_RUNTIME_SECONDS = 1_800
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def batch_name(names: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:20]


def batch_request(batch: str, run_key: str) -> RunRequest:
    return RunRequest(
        run_key=run_key,
        run_config={"ops": {"apply_event_batch": {"config": {"batch": batch}}}},
        # With run monitoring on, a run that dies unseen (SIGKILL) is failed at this age, and the
        # next tick requests its batch again.
        tags={BATCH_TAG: batch, "dagster/max_runtime": str(MAX_RUNTIME_SECONDS)},
    )


@sensor(
    job=process_events,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS - 1,
    default_status=DefaultSensorStatus.RUNNING,
    description="Claims the events inbox's files in batches and starts a process_events run per batch.",
)
def events_inbox_sensor(context: SensorEvaluationContext):
    inbox = events_inbox()
    cursor = json.loads(context.cursor) if context.cursor else {"batches": 0, "files": 0}
    size = get_settings().events_batch_size
    for _ in range(MAX_BATCHES_PER_TICK):
        names = inbox.waiting(size)
        if not names:
            break
        moved = inbox.claim(batch_name(names), names)
        cursor["batches"] += bool(moved)
        cursor["files"] += len(moved)

    # Every claimed batch that no run is applying gets one: those just claimed, those whose run
    # failed or never started, and a batch named as an earlier one was (the same file names
    # dropped again, by hand), whose run key is already taken. The n-th run of a batch has the
    # run key `<batch>.<n>`: still content, never the clock.
    requests: list[RunRequest] = []
    for batch in inbox.batches():
        runs = context.instance.get_runs(filters=RunsFilter(tags={BATCH_TAG: batch}))
        if any(run.status not in FINISHED for run in runs):
            continue  # queued or running
        requests.append(batch_request(batch, batch if not runs else f"{batch}.{len(runs)}"))

    if not requests:
        return SkipReason("The events inbox is empty.")
    return SensorResult(run_requests=requests, cursor=json.dumps(cursor))
