"""The embedded instance's run queue: an event batch runs beside a sync instead of waiting for all
of it, while two runs of one area (two syncs, two event batches) never run at once."""

from __future__ import annotations

from dagster import DagsterInstance

from integration_pipelines.dagster_home import AREA_TAG as AREA
from integration_pipelines.dagster_home import ensure_dagster_home


def test_one_run_per_area_and_an_event_batch_beside_a_sync(tmp_path, monkeypatch):
    from integration_pipelines.definitions import defs

    monkeypatch.setenv("DAGSTER_HOME", str(ensure_dagster_home(tmp_path / "dagster_home")))
    with DagsterInstance.get() as instance:
        queue = instance.get_concurrency_config().run_queue_config
        assert queue is not None
        assert queue.max_concurrent_runs >= 2
        (limit,) = queue.tag_concurrency_limits
        assert limit == {"key": AREA, "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        assert instance.run_coordinator.dequeue_interval_seconds == 1  # type: ignore[attr-defined]

    areas = {job.name: job.tags.get(AREA) for job in defs.resolve_all_job_defs() if not job.name.startswith("__")}
    assert None not in areas.values(), f"jobs without an area: {[n for n, a in areas.items() if a is None]}"
    assert areas["full_sync"] == areas["incremental_sync"] == "sync"
    assert areas["process_events"] == "events"


def test_event_jobs_run_their_steps_in_the_runs_own_process_on_every_backend():
    """A step process of its own (PostgreSQL's executor) would import the code location again."""
    from dagster import in_process_executor

    from integration_pipelines.definitions import defs

    events = [job for job in defs.resolve_all_job_defs() if job.tags.get(AREA) == "events"]
    assert {job.name for job in events} >= {"process_events", "requeue_events", "events_retention"}
    assert all(job.executor_def is in_process_executor for job in events)
