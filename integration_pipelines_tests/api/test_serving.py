"""How the API is served: reads on few threads, waits on other services apart from them, and
`api serve --workers` processes that each answer."""

from __future__ import annotations

import concurrent.futures
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from integration_pipelines.api import create_app
from integration_pipelines.lib.serving import serve_in_thread
from integration_pipelines.lib.warehouse.api_keys import create_key
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.settings import Settings


def test_reads_run_on_one_thread_on_sqlite_two_on_postgresql_unless_configured(tmp_path):
    sqlite = Settings(WAREHOUSE_URL=f"sqlite:///{tmp_path / 'w.db'}")
    postgres = Settings(WAREHOUSE_URL="postgresql+psycopg://u:p@127.0.0.1/db")
    assert (sqlite.api_read_threads, postgres.api_read_threads) == (1, 2)
    assert Settings(WAREHOUSE_URL=sqlite.warehouse_url, API_THREADS="3").api_read_threads == 3


def held_moodle() -> tuple[http.server.ThreadingHTTPServer, threading.Event, threading.Event]:
    """A Moodle that answers nothing until `release` is set; `asked` is set once a request came."""
    asked, release = threading.Event(), threading.Event()

    class Held(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the stdlib's name)
            asked.set()
            release.wait(60)
            self.send_response(503)
            self.end_headers()

        do_GET = do_POST  # noqa: N815

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Held)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, asked, release


def test_a_connection_test_waiting_on_moodle_does_not_hold_up_profile_reads(warehouse, warehouse_url, tmp_path):
    """On SQLite the reads have one thread: were the connection test on it, the health read
    below would wait for Moodle (here, until the test gives up)."""
    moodle, asked, release = held_moodle()
    with begin_write(warehouse) as conn:
        _, admin_key = create_key(conn, "default", "admin")
    settings = Settings(
        WAREHOUSE_URL=warehouse_url,
        INTEGRATION_DATA_DIR=str(tmp_path),
        MOODLE_URL=f"http://127.0.0.1:{moodle.server_address[1]}",
        MOODLE_TOKEN="held",
    )
    admin = {"Authorization": f"Bearer {admin_key}"}
    try:
        with (
            serve_in_thread(create_app(settings), name="api") as url,
            httpx.Client(base_url=url, headers=admin, timeout=30) as http_client,
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool,
        ):
            test = pool.submit(http_client.post, "/v1/admin/connections/moodle/test")
            assert asked.wait(20), "the connection test never reached Moodle"
            # Moodle holds its answer; the API still reads the warehouse meanwhile.
            assert http_client.get("/v1/health", timeout=10).status_code in (200, 503)
            assert http_client.get("/v1/sync/history").status_code == 200
            assert not test.done()
            release.set()
            answer = test.result(timeout=30).json()
        assert answer["source"] == "moodle" and answer["ok"] is False
    finally:
        release.set()
        moodle.shutdown()


def test_api_serve_with_two_workers_runs_two_processes_that_answer(warehouse, warehouse_url, tmp_path):
    port = _free_port()
    env = {**os.environ, "WAREHOUSE_URL": warehouse_url, "INTEGRATION_DATA_DIR": str(tmp_path)}
    command = [str(Path(sys.executable).parent / "integration-pipelines"), "api", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--workers", "2", "--no-access-log"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        answered = _wait_for(f"http://127.0.0.1:{port}/v1/health")
        assert answered.json()["schema_ready"] is True
        workers = _children_serving(server.pid)
        assert len(workers) == 2, workers
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(url: str) -> httpx.Response:
    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                pytest.fail(f"{url} never answered")
            time.sleep(0.2)


def _children_serving(parent: int) -> list[int]:
    """The worker processes uvicorn spawned under `parent` (not multiprocessing's resource tracker)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"multiprocessing.spawn" in cmdline:
            children.append(int(entry.name))
    return children
