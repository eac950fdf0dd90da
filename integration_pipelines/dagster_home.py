"""The Dagster instance directory: SQLite under DAGSTER_HOME unless its dagster.yaml says otherwise."""

from __future__ import annotations

from pathlib import Path

# The run tag the instance limits to one run per value (`tag_concurrency_limits` below): every job
# names its area with `area_tag`.
AREA_TAG = "integration_pipelines/area"


def area_tag(area: str) -> dict[str, str]:
    """A job's tags naming its area (sync, events, outbound): one run per area at a time."""
    return {AREA_TAG: area}


# The embedded default. Storage is left to Dagster's default (SQLite files under DAGSTER_HOME);
# see dagster.postgres.yaml at the repository root for the PostgreSQL instance.
DEFAULT_DAGSTER_YAML = """\
# Written by integration-pipelines on first use. Storage defaults to SQLite under this directory.
# For PostgreSQL, replace this file with the repository's dagster.postgres.yaml.
telemetry:
  enabled: false
# The embedded warehouse is SQLite, which has one writer: a writer waits for the lock (dbt too),
# so runs at once take turns at each transaction. One run per area at a time (one sync, one event
# batch, one write-back), and two in all: an event batch commits while a sync runs rather than
# waiting for all of it; two syncs never run at once.
concurrency:
  runs:
    max_concurrent_runs: 2
    tag_concurrency_limits:
      - key: integration_pipelines/area
        value:
          applyLimitPerUniqueValue: true
        limit: 1
# A queued run starts within a second (Dagster's default looks every 5 s): events' latency.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
# A run killed without a trace (kill -9, a lost machine) is failed at its dagster/max_runtime, so
# that its work is requested again (process_events batches are, by the events_inbox sensor).
run_monitoring:
  enabled: true
"""


def ensure_dagster_home(path: Path) -> Path:
    """Create DAGSTER_HOME with a default dagster.yaml if it has none; never overwrite one."""
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(DEFAULT_DAGSTER_YAML)
    return path
