"""The dbt marts step: dbt runs inside the step's process, reuses its parse between builds, and waits for
SQLite's other writers."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

from integration_pipelines.defs.marts.assets import dbt_marts
from integration_pipelines.defs.marts.project import PARTIAL_PARSE_FILE, PartialParseCache, get_dbt_project
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.dbt_env import dbt_environment
from integration_pipelines.lib.warehouse.engine import ensure_schema

REPARSED = "parsed it whole"


def test_dbt_runs_inside_the_steps_process(warehouse_url, monkeypatch):
    # A process of dbt's own imported dbt again and held a second copy of it beside the run (109 MB
    # at 25,000 students), and outlived a run killed with SIGKILL unless told to die with it.
    started: list[str] = []
    popen = subprocess.Popen.__init__

    def noting(self, args, *rest, **kwargs):
        started.append(" ".join(map(str, args)) if isinstance(args, list | tuple) else str(args))
        popen(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", noting)
    result = materialize([dbt_marts], resources={"warehouse": WarehouseResource(url=warehouse_url)})
    assert result.success
    built = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events() if e.asset_key}
    assert {"student_profile", "student_grades", "stg_students"} <= built
    assert any(c.passed for c in result.get_asset_check_evaluations())  # dbt's tests, as asset checks
    # No Python process (dbt's own); `uname -p`, which the platform module runs, may start.
    assert not [command for command in started if command.startswith(sys.executable) or "dbt" in command]


def test_a_selected_mart_is_built_alone(warehouse_url):
    # Materializing one mart in the UI builds that model and runs its tests, and nothing else.
    resources = {"warehouse": WarehouseResource(url=warehouse_url)}
    assert materialize([dbt_marts], resources=resources).success
    result = materialize([dbt_marts], resources=resources, selection=["student_profile"])
    assert result.success
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events() if e.asset_key} == {
        "student_profile"
    }
    checks = result.get_asset_check_evaluations()
    assert checks and {c.asset_key.to_user_string() for c in checks} == {"student_profile"}


def test_the_project_is_loaded_once():
    assert get_dbt_project() is get_dbt_project()
    assert get_dbt_project().manifest_path.exists()


def test_a_kept_parse_is_per_profile_and_replaced_whole(tmp_path):
    project = get_dbt_project()
    first = PartialParseCache(project, {"INTEGRATION_SQLITE_PATH": str(tmp_path / "a.db")})
    other = PartialParseCache(project, {"INTEGRATION_SQLITE_PATH": str(tmp_path / "b.db")})
    assert first.path != other.path
    assert "a.db" not in first.path.name  # named by a hash: the environment holds the password
    built = tmp_path / "build-1"
    built.mkdir()
    (built / PARTIAL_PARSE_FILE).write_bytes(b"parse one")
    try:
        first.keep(built)
        fresh = tmp_path / "build-2"
        assert first.seed(fresh)
        assert (fresh / PARTIAL_PARSE_FILE).read_bytes() == b"parse one"
        assert not other.seed(tmp_path / "build-3")
        assert not first.seed(fresh)  # a target that has its own parse keeps it
    finally:
        first.path.unlink(missing_ok=True)


def _build_warnings(warehouse_url: str) -> list[str]:
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [dbt_marts], resources={"warehouse": WarehouseResource(url=warehouse_url)}, instance=instance
        )
        assert result.success
        return [e.user_message for e in instance.all_logs(result.run_id) if e.level >= 30]


def _build_directories() -> set[Path]:
    """The target directories of dbt_marts builds: each makes its own just before dbt starts, and
    removes it once dbt succeeded."""
    return set((get_dbt_project().project_dir / get_dbt_project().target_path).glob("dbt_marts-*"))


def test_a_second_build_reuses_the_first_ones_parse(warehouse, warehouse_url):
    cache = PartialParseCache(get_dbt_project(), dbt_environment(warehouse_url))
    before = _build_directories()
    try:
        _build_warnings(warehouse_url)
        assert cache.path.exists()
        assert not [w for w in _build_warnings(warehouse_url) if REPARSED in w]
        # Successful builds leave no directory of their own behind (other tests' builds may).
        assert not {p for p in _build_directories() - before if (p / "run_results.json").exists()}
    finally:
        cache.path.unlink(missing_ok=True)


def test_a_build_with_another_profiles_parse_says_it_parsed_the_project_whole(warehouse, warehouse_url):
    # The warning the test above looks for, and what the kept parse saves: a build that finds no
    # parse made with its profile (its cache file removed) parses the project whole, and says so.
    cache = PartialParseCache(get_dbt_project(), dbt_environment(warehouse_url))
    cache.path.unlink(missing_ok=True)
    try:
        assert [w for w in _build_warnings(warehouse_url) if REPARSED in w]
    finally:
        cache.path.unlink(missing_ok=True)


def test_dbt_waits_for_another_sqlite_writer_instead_of_failing(tmp_path):
    """A sync's step holds SQLite's write lock while an event batch's marts build: dbt waits for it,
    as the warehouse's own writers do (dbt-sqlite's connection alone gives up after 5 s)."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = create_warehouse_engine(url)
    ensure_schema(engine)
    engine.dispose()
    held = threading.Event()
    before = _build_directories()

    def hold_the_write_lock() -> None:
        deadline = time.monotonic() + 120
        while not _build_directories() - before and time.monotonic() < deadline:
            time.sleep(0.01)
        writer = sqlite3.connect(tmp_path / "warehouse.db", isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        held.set()
        # Longer than dbt takes to reach its first model and than its driver's own 5 s wait.
        time.sleep(12)
        writer.execute("COMMIT")
        writer.close()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        result = materialize([dbt_marts], resources={"warehouse": WarehouseResource(url=url)})
    finally:
        holder.join()
    assert held.is_set()
    assert result.success


def test_dbt_builds_while_other_writers_commit_between_its_statements(tmp_path):
    """Event batches commit while a sync's build runs. A model's transaction that had read before
    another writer committed could not start writing: SQLite answered "database is locked" at once,
    without waiting. Each model now takes the write lock first, and waits its turn."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = create_warehouse_engine(url)
    ensure_schema(engine)
    engine.dispose()
    resources = {"warehouse": WarehouseResource(url=url)}
    # A first build makes the models; a rebuild swaps each (reading the schema before it writes).
    assert materialize([dbt_marts], resources=resources).success
    building, commits = threading.Event(), [0]

    def commit_every_moment() -> None:
        noise = sqlite3.connect(tmp_path / "warehouse.db", isolation_level=None, timeout=60)
        noise.execute("CREATE TABLE writer_noise (n INTEGER)")
        while building.is_set():
            noise.execute("INSERT INTO writer_noise VALUES (1)")  # a transaction of its own
            commits[0] += 1
            time.sleep(0.001)
        noise.close()

    building.set()
    writer = threading.Thread(target=commit_every_moment)
    writer.start()
    try:
        result = materialize([dbt_marts], resources=resources)
    finally:
        building.clear()
        writer.join()
    assert commits[0] > 100
    assert result.success


RUN = textwrap.dedent(
    """
    from dagster import materialize
    from integration_pipelines.defs.marts.assets import dbt_marts
    from integration_pipelines.defs.resources import WarehouseResource

    materialize([dbt_marts], resources={{"warehouse": WarehouseResource(url={url!r})}})
    """
)


def _session_members(session: int) -> list[int]:
    """The processes of a session (a run started in a session of its own, and all it started)."""
    members = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError):
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            members.append(int(entry))
    return members


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the run's processes in /proc")
def test_nothing_of_a_run_killed_during_its_dbt_build_is_left(tmp_path):
    # dbt's own process carried on writing marts after its run was killed with SIGKILL, until it was
    # told to die with it. Inside the run's process, it dies with it.
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    before = _build_directories()
    run = subprocess.Popen(
        [sys.executable, "-c", RUN.format(url=url)],
        start_new_session=True,
        env={**os.environ, "INTEGRATION_DATA_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not _build_directories() - before and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert run.poll() is None, "the run ended before dbt started"
        assert _session_members(run.pid), "the run's session is found"
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=60)
        left = _session_members(run.pid)
        for _ in range(500):  # the kernel reaps what a killed process leaves in its own time
            if not left:
                break
            time.sleep(0.01)
            left = _session_members(run.pid)
        assert left == [], f"processes of the killed run are left: {left}"
    finally:
        if run.poll() is None:
            run.kill()
