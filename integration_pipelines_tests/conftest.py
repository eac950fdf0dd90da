"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL is reached at TEST_POSTGRES_URL (default: the role and database that
`scripts/start-test-postgres.sh` creates). Each test gets a throwaway database of its own there,
dropped when it ends. Where PostgreSQL cannot be reached the PostgreSQL variants skip
with a message saying how to enable them; with REQUIRE_POSTGRES=1 (set in CI) they fail instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
from integration_pipelines_tests.postgres import PostgresDatabases

DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg://integration:integration@127.0.0.1:5432/integration_test"
BACKENDS = ["sqlite", "postgresql"]


def _postgres_unavailable(reason: str) -> None:
    message = (
        f"PostgreSQL is not reachable ({reason}). Run `scripts/start-test-postgres.sh` "
        "or set TEST_POSTGRES_URL to enable the PostgreSQL tests."
    )
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(message + " REQUIRE_POSTGRES=1 makes this a failure.", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """Throwaway PostgreSQL databases for this test run; skips (or fails in CI) without a server."""
    admin_url = make_url(os.environ.get("TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL))
    probe = create_engine(admin_url)
    try:
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not available"
        _postgres_unavailable(type(exc).__name__)
    finally:
        probe.dispose()
    databases = PostgresDatabases(admin_url)
    yield databases
    databases.close()


@contextmanager
def empty_warehouse_url(backend: str, request, directory: Path) -> Iterator[str]:
    """The URL of an empty warehouse: a new SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / 'warehouse.db'}"
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    url = databases.create()
    try:
        yield url
    finally:
        databases.drop(url)


@pytest.fixture(params=BACKENDS)
def warehouse_url(request, tmp_path) -> Iterator[str]:
    """An empty warehouse on each backend, its own for this test."""
    with empty_warehouse_url(request.param, request, tmp_path) as url:
        yield url


@pytest.fixture
def warehouse(warehouse_url) -> Iterator[Engine]:
    """An engine on an empty, migrated warehouse (both backends)."""
    engine = create_warehouse_engine(warehouse_url)
    ensure_schema(engine)
    yield engine
    engine.dispose()
