"""The `events_inbox` sensor: hands the inbox's files to `process_events` runs, a batch per run.

Each tick lists the inbox (stopping after a bounded number of entries, so 100,000 waiting files
cost the same tick as 2,000), claims up to `MAX_BATCHES_PER_TICK` batches of
`EVENTS_BATCH_SIZE` files by moving them into `claimed/<batch>/`, and requests one run per batch.
A batch is named by the hash of its file names, which is also the run key: never the clock.
Files dropped into the inbox by hand are listed like any other.

A claimed batch whose run never started (the tick died after claiming), or whose run failed or
was killed, is requested again under `<batch>.<n>` (n: runs it already had); the run applies what
the previous one did not commit. The cursor counts the batches and files claimed so far.
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
SENSOR_INTERVAL_SECONDS = 5
FINISHED_BADLY = {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def batch_name(names: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:20]


def batch_request(batch: str, run_key: str) -> RunRequest:
    return RunRequest(
        run_key=run_key,
        run_config={"ops": {"apply_event_batch": {"config": {"batch": batch}}}},
        tags={BATCH_TAG: batch},
    )


@sensor(
    job=process_events,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Claims the events inbox's files in batches and starts a process_events run per batch.",
)
def events_inbox_sensor(context: SensorEvaluationContext):
    inbox = events_inbox()
    cursor = json.loads(context.cursor) if context.cursor else {"batches": 0, "files": 0}
    requests: list[RunRequest] = []
    claimed_now: set[str] = set()

    size = get_settings().events_batch_size
    for _ in range(MAX_BATCHES_PER_TICK):
        names = inbox.waiting(size)
        if not names:
            break
        batch = batch_name(names)
        moved = inbox.claim(batch, names)
        if not moved:
            continue
        claimed_now.add(batch)
        cursor["batches"] += 1
        cursor["files"] += len(moved)
        requests.append(batch_request(batch, batch))

    # Batches claimed earlier that no run is applying: the tick died before asking, or the run failed.
    for batch in inbox.batches():
        if batch in claimed_now:
            continue
        runs = context.instance.get_runs(filters=RunsFilter(tags={BATCH_TAG: batch}))
        if runs and not all(run.status in FINISHED_BADLY for run in runs):
            continue  # queued, running, or done (its directory goes when it finishes)
        requests.append(batch_request(batch, batch if not runs else f"{batch}.{len(runs)}"))

    if not requests:
        return SkipReason("The events inbox is empty.")
    return SensorResult(run_requests=requests, cursor=json.dumps(cursor))
