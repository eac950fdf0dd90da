"""Shared plumbing for the benchmarks: a sandbox in its own process, and the figures file."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from integration_pipelines.sandbox.config import SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "benchmarks.md"
BIN = Path(sys.executable).parent

_SANDBOX = SandboxConfig()  # the credentials a default sandbox accepts (fake and public by design)
SANDBOX_CREDENTIALS = {
    "MOODLE_TOKEN": _SANDBOX.moodle_token,
    "ZOHO_CLIENT_ID": _SANDBOX.zoho_client_id,
    "ZOHO_CLIENT_SECRET": _SANDBOX.zoho_client_secret,
    "ZOHO_REFRESH_TOKEN": _SANDBOX.zoho_refresh_token,
}


def pipeline_environment(sandbox: str, warehouse_url: str, data_dir: str | Path) -> dict[str, str]:
    """What points the pipeline's settings at a sandbox (its URL) and a warehouse."""
    return {
        **SANDBOX_CREDENTIALS,
        "MOODLE_URL": sandbox,
        "ZOHO_API_DOMAIN": sandbox,
        "ZOHO_ACCOUNTS_URL": sandbox,
        "WAREHOUSE_URL": warehouse_url,
        "INTEGRATION_DATA_DIR": str(data_dir),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


DEFAULT_PG = "postgresql+psycopg://integration:integration@127.0.0.1:5432/integration_test"


@contextmanager
def fresh_warehouse(backend: str, directory: str | Path):
    """The URL of an empty warehouse: a SQLite file in `directory`, or a PostgreSQL database of its
    own on the server at TEST_POSTGRES_URL (scripts/start-test-postgres.sh), dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{Path(directory) / 'warehouse.db'}"
        return
    from sqlalchemy.engine import make_url

    from integration_pipelines_tests.postgres import PostgresDatabases

    databases = PostgresDatabases(make_url(os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG)))
    url = databases.create()
    try:
        yield url
    finally:
        databases.drop(url)
        databases.close()


@contextmanager
def sandbox_process(students: int, seed: int = 7, *extra: str):
    """`integration-pipelines sandbox serve` in its own process, so its memory is not the pipeline's."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(BIN / "integration-pipelines"),
            "sandbox",
            "serve",
            "--students",
            str(students),
            "--seed",
            str(seed),
            "--port",
            str(port),
            *extra,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError("the sandbox exited while starting")
            try:
                httpx.get(f"{base}/_sandbox/health", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the sandbox did not start in time") from None
                time.sleep(0.5)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def record(section: str, lines: list[str]) -> None:
    """Print a section of figures and replace it in docs/benchmarks.md (other sections are kept)."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = f"## {section}\n\n_Measured {stamp} on this machine (2 cores, 24 GiB)._\n\n" + "\n".join(lines) + "\n"
    print(body)
    FIGURES.parent.mkdir(exist_ok=True)
    header = "# Benchmarks\n\nFigures written by the scripts in `bench/`.\n\n"
    text = FIGURES.read_text() if FIGURES.exists() else header
    pattern = re.compile(rf"^## {re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(body + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + body
    FIGURES.write_text(text)
