"""The dbt marts step: how dbt is started, what it reuses between builds, and that it dies with its run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from importlib.metadata import version

import pytest
from dagster import materialize
from dagster_dbt import DbtCliResource
from packaging.version import Version

from integration_pipelines.defs.marts.assets import dbt_marts
from integration_pipelines.defs.marts.launcher import MODULE as LAUNCHER_MODULE
from integration_pipelines.defs.marts.project import (
    PARTIAL_PARSE_FILE,
    PartialParseCache,
    dbt_cli_resource,
    get_dbt_project,
)
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.dbt_env import dbt_environment
from integration_pipelines.lib.warehouse.engine import ensure_schema

REPARSE = "Unable to do partial parsing"


def test_the_private_members_the_resource_overrides_still_exist_in_dagster_dbt():
    # ProjectDbtCliResource replaces these two; a dagster-dbt that renamed them would silently run
    # `dbt --version` and set up an adapter again.
    assert "_cli_version" in vars(DbtCliResource)
    assert callable(vars(DbtCliResource)["_initialize_dbt_core_adapter"])


def test_the_resource_knows_the_dbt_version_without_running_dbt(monkeypatch):
    import dagster_dbt.core.resource as resource_module

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"ran {args}")

    monkeypatch.setattr(resource_module, "check_output", no_subprocess)
    resource = dbt_cli_resource()
    assert resource._cli_version == Version(version("dbt-core"))
    assert resource._initialize_dbt_core_adapter(["build"]) is None
    assert resource.dbt_executable == sys.executable
    assert resource.global_config_flags == ["-m", LAUNCHER_MODULE]


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


def _build(warehouse_url: str, capfd) -> str:
    result = materialize(
        [dbt_marts], resources={"dbt": dbt_cli_resource(), "warehouse": WarehouseResource(url=warehouse_url)}
    )
    assert result.success
    return capfd.readouterr().out


def test_a_second_build_reuses_the_first_ones_parse(warehouse, warehouse_url, capfd):
    cache = PartialParseCache(get_dbt_project(), dbt_environment(warehouse_url))
    target = get_dbt_project().project_dir / get_dbt_project().target_path
    before = set(target.glob("dbt_marts-*"))
    try:
        first = _build(warehouse_url, capfd)
        assert "Completed successfully" in first  # dbt's output is what this test reads
        assert cache.path.exists()
        second = _build(warehouse_url, capfd)
        assert "Completed successfully" in second
        assert REPARSE not in second
        # Successful builds leave no directory of their own behind (other tests' builds may).
        assert not {p for p in set(target.glob("dbt_marts-*")) - before if (p / "run_results.json").exists()}
    finally:
        cache.path.unlink(missing_ok=True)


def _dbt_children() -> list[int]:
    """This process's children running dbt (through the launcher)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError):
            continue
        if ppid == os.getpid() and LAUNCHER_MODULE.encode() in cmdline:
            found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds dbt's process in /proc")
def test_dbt_waits_for_another_sqlite_writer_instead_of_failing(tmp_path):
    """A sync's step holds SQLite's write lock while an event batch's marts build: dbt waits for it,
    as the warehouse's own writers do (dbt-sqlite's connection alone gives up after 5 s)."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = create_warehouse_engine(url)
    ensure_schema(engine)
    engine.dispose()
    held = threading.Event()

    def hold_the_write_lock() -> None:
        deadline = time.monotonic() + 120
        while not _dbt_children() and time.monotonic() < deadline:
            time.sleep(0.01)
        writer = sqlite3.connect(tmp_path / "warehouse.db", isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        held.set()
        # Longer than dbt takes to start and than its driver's own 5 s wait.
        time.sleep(12)
        writer.execute("COMMIT")
        writer.close()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        result = materialize(
            [dbt_marts], resources={"dbt": dbt_cli_resource(), "warehouse": WarehouseResource(url=url)}
        )
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
    resources = {"dbt": dbt_cli_resource(), "warehouse": WarehouseResource(url=url)}
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


# A process that adopts orphans (PR_SET_CHILD_SUBREAPER), starts a "run" that builds the marts,
# SIGKILLs the run as soon as dbt has started, then waits (bounded) for dbt and reports how it ended.
REAPER = textwrap.dedent(
    """
    import ctypes, json, os, signal, subprocess, sys, time

    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    run = subprocess.Popen([sys.executable, "-c", sys.argv[1]])

    def children_of(pid):
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\\0", b" ").decode()
            except OSError:
                continue
            if ppid == pid:
                found.append((int(entry), cmdline))
        return found

    deadline = time.monotonic() + 120
    dbt = None
    while dbt is None and time.monotonic() < deadline and run.poll() is None:
        dbt = next((pid for pid, cmd in children_of(run.pid) if sys.argv[2] in cmd and " build" in cmd), None)
        time.sleep(0.01)
    if dbt is None:
        print(json.dumps({"error": "dbt never started", "run_exit": run.poll()}))
        sys.exit(0)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    outcome = {"dbt_pid": dbt}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pid, status = os.waitpid(dbt, os.WNOHANG)
        if pid:
            outcome["signal"] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
            outcome["exit"] = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
            break
        time.sleep(0.01)
    outcome["still_there"] = os.path.exists(f"/proc/{dbt}")
    print(json.dumps(outcome))
    """
)

RUN = textwrap.dedent(
    """
    from dagster import materialize
    from integration_pipelines.defs.marts.assets import dbt_marts
    from integration_pipelines.defs.marts.project import dbt_cli_resource
    from integration_pipelines.defs.resources import WarehouseResource

    materialize([dbt_marts], resources={{"dbt": dbt_cli_resource(), "warehouse": WarehouseResource(url={url!r})}})
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_dbt_dies_when_the_run_that_started_it_is_killed(tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    reaper = subprocess.run(
        [sys.executable, "-c", REAPER, RUN.format(url=url), LAUNCHER_MODULE],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "INTEGRATION_DATA_DIR": str(tmp_path)},
    )
    assert reaper.returncode == 0, reaper.stderr[-3000:]
    outcome = json.loads(reaper.stdout.strip().splitlines()[-1])
    assert "error" not in outcome, (outcome, reaper.stderr[-3000:])
    # Killed by the kernel when its parent died, not finished on its own.
    assert outcome["signal"] == signal.SIGKILL, outcome
    assert outcome["still_there"] is False


def test_the_launcher_stops_dbt_whose_parent_is_already_gone(tmp_path):
    # The parent named in the environment is not this process's parent: dbt must not start.
    ran = subprocess.run(
        [sys.executable, "-m", LAUNCHER_MODULE, "--help"],
        env={**os.environ, "INTEGRATION_DBT_PARENT_PID": str(os.getpid() + 999_999)},
        capture_output=True,
        timeout=60,
    )
    if sys.platform.startswith("linux"):
        assert ran.returncode == -signal.SIGKILL
    ran = subprocess.run(
        [sys.executable, "-m", LAUNCHER_MODULE, "--help"],
        env={**os.environ, "INTEGRATION_DBT_PARENT_PID": str(os.getpid())},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0 and "Usage: dbt" in ran.stdout, ran.stderr[-2000:]


def test_the_launcher_is_a_light_module():
    # It runs first in every dbt process: nothing heavy may be imported before dbt itself.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, {LAUNCHER_MODULE}; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dagster', 'dagster_dbt', 'sqlalchemy', 'pydantic', 'dbt')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "[]", probe.stderr[-2000:]
