"""full_sync launched as the UI and the schedules launch it: in a run worker of its own, with the
code location's executor (in one process on SQLite, steps side by side on PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from sqlalchemy import func, select

from integration_pipelines.dagster_home import ensure_dagster_home
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.schema import grades, students
from integration_pipelines.sandbox.config import SandboxConfig
from integration_pipelines.sandbox.server import run_sandbox

pytestmark = pytest.mark.slow


def launch(job: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # `python -m dagster`, as the run workers the UI and the daemon start are: the main module
    # then matters to anything that starts processes of its own (a snapshot's reader).
    return subprocess.run(
        [sys.executable, "-m", "dagster", "job", "execute", "-m", "integration_pipelines.definitions", "-j", job],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_full_sync_runs_with_the_code_locations_executor(warehouse_url, tmp_path):
    dagster_home = ensure_dagster_home(tmp_path / "dagster_home")
    with run_sandbox(SandboxConfig(students=150, seed=5)) as sandbox:
        env = {
            **sandbox.client_environment(),
            "WAREHOUSE_URL": warehouse_url,
            "INTEGRATION_DATA_DIR": str(tmp_path),
            "DAGSTER_HOME": str(dagster_home),
        }
        launched = launch("full_sync", env)
        assert launched.returncode == 0, launched.stderr[-3000:]
        truth_students = sum(1 for t in sandbox.college.iter_truth("students") if not t["deleted"])

    with DagsterInstance.from_config(str(dagster_home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.SUCCESS
        events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event]
    step_pids = {e.step_key: e.pid for e in events if e.event_type == DagsterEventType.STEP_START}
    run_pid = next(e.pid for e in events if e.event_type == DagsterEventType.RUN_START)
    assert {"moodle_snapshot", "zoho_snapshot", "students", "grades", "dbt_marts"} <= set(step_pids)
    if warehouse_url.startswith("sqlite"):
        assert set(step_pids.values()) == {run_pid}  # one writer: every step in the run's own process
    else:
        assert run_pid not in step_pids.values()
        assert len(set(step_pids.values())) == len(step_pids)  # a process per step

    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            live = students.c.deleted_at.is_(None)
            assert conn.execute(select(func.count()).select_from(students).where(live)).scalar() == truth_students
            assert conn.execute(select(func.count()).select_from(grades)).scalar() > 0
    finally:
        engine.dispose()
