"""`integration-pipelines sync full|incremental` against the sandbox: the runs are launched on the
configured Dagster instance (DAGSTER_HOME, so they show in the UI), report a line per step, and
the command exits non-zero when the run fails (here: a Moodle token with too few capabilities)."""

from __future__ import annotations

from datetime import date

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance, DagsterRunStatus
from sqlalchemy import select

from integration_pipelines.cli import main
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.schema import sync_runs
from integration_pipelines.sandbox import SandboxConfig, run_sandbox
from integration_pipelines.settings import get_settings
from integration_pipelines.sync_runs import RANGE_END, RANGE_START, window_tags

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """The environment a shell would have: the sandbox's credentials, a SQLite warehouse and a
    Dagster home under one data directory."""
    data = tmp_path_factory.mktemp("sync-cli")
    with run_sandbox(SandboxConfig(students=40, seed=21)) as sandbox, pytest.MonkeyPatch.context() as env:
        for name, value in sandbox.client_environment().items():
            env.setenv(name, value)
        env.setenv("INTEGRATION_DATA_DIR", str(data))
        env.setenv("DAGSTER_HOME", str(data / "dagster_home"))
        env.delenv("WAREHOUSE_URL", raising=False)
        env.delenv("TENANT_ID", raising=False)
        yield {"sandbox": sandbox, "home": data / "dagster_home"}


def runs(home) -> list:
    with DagsterInstance.from_config(str(home)) as instance:
        return list(reversed(instance.get_runs()))


def sync_history(run_id: str) -> dict:
    """The run's row in the warehouse's sync history, which `GET /v1/sync/history` serves."""
    engine = create_warehouse_engine(get_settings().warehouse_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(sync_runs).where(sync_runs.c.run_id == run_id)).mappings().one())
    finally:
        engine.dispose()


def test_sync_full_runs_on_the_configured_instance_with_a_line_per_step(shell):
    result = CliRunner().invoke(main, ["sync", "full"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "full_sync succeeded" in result.output
    assert "raw_moodle_completions" in result.output or "moodle_snapshot" in result.output
    [run] = runs(shell["home"])
    assert (run.job_name, run.status) == ("full_sync", DagsterRunStatus.SUCCESS)
    # No daemon runs here, so no run status sensor: the command records the outcome itself.
    history = sync_history(run.run_id)
    assert (history["kind"], history["status"], history["error"]) == ("full_sync", "success", None)
    assert history["finished_at"] is not None and history["tables"]


def test_sync_incremental_runs_a_range_of_windows_in_one_run(shell):
    result = CliRunner().invoke(
        main, ["sync", "incremental", "--from", "2026-11-28", "--to", "2026-11-30"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    run = runs(shell["home"])[-1]
    assert run.job_name == "incremental_sync" and run.status == DagsterRunStatus.SUCCESS
    assert (run.tags[RANGE_START], run.tags[RANGE_END]) == ("2026-11-28", "2026-11-30")


def test_a_failed_run_exits_non_zero_naming_the_missing_capability(shell, monkeypatch):
    monkeypatch.setenv("MOODLE_TOKEN", shell["sandbox"].config.moodle_limited_token)
    result = CliRunner().invoke(main, ["sync", "full"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "full_sync FAILED" in result.output and "moodle/course:view" in result.output
    run = runs(shell["home"])[-1]
    assert run.status == DagsterRunStatus.FAILURE
    history = sync_history(run.run_id)
    assert history["status"] == "failure" and "moodle_snapshot" in history["error"]


def test_window_options():
    today = date(2026, 12, 2)
    assert window_tags(date(2026, 11, 30), None, None, today=today) == ("2026-11-30", {})
    assert window_tags(None, None, None, today=today) == (
        None,
        {RANGE_START: "2026-12-01", RANGE_END: "2026-12-02"},
    )
    assert window_tags(None, date(2026, 11, 29), date(2026, 11, 29), today=today) == ("2026-11-29", {})
    with pytest.raises(ValueError, match="before"):
        window_tags(None, date(2026, 11, 29), date(2026, 11, 28), today=today)
    with pytest.raises(ValueError, match="not both"):
        window_tags(date(2026, 11, 29), date(2026, 11, 28), None, today=today)
