"""Shared fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL is reached at TEST_POSTGRES_URL (default: the role and database that
`scripts/start-test-postgres.sh` creates). Each test run creates its own throwaway database
there and drops it at the end. Where PostgreSQL cannot be reached the PostgreSQL variants skip
with a message saying how to enable them; with REQUIRE_POSTGRES=1 (set in CI) they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema, metadata

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
def postgres_run_url() -> Iterator[str]:
    """A PostgreSQL database created for this test run (and this xdist worker) only."""
    admin_url = make_url(os.environ.get("TEST_POSTGRES_URL", DEFAULT_TEST_POSTGRES_URL))
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not available"
        admin.dispose()
        _postgres_unavailable(type(exc).__name__)
    name = f"ip_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def warehouse_url(request, tmp_path) -> Iterator[str]:
    """An empty warehouse on each backend: a fresh SQLite file, or the run's PostgreSQL database
    with every table emptied after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    url = request.getfixturevalue("postgres_run_url")
    yield url
    engine = create_warehouse_engine(url)
    with engine.begin() as conn:
        tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        if conn.execute(text("SELECT to_regclass('students')")).scalar() is not None:
            conn.execute(text(f"TRUNCATE {tables}"))
    engine.dispose()


@pytest.fixture
def warehouse(warehouse_url) -> Iterator[Engine]:
    """An engine on an empty, migrated warehouse (both backends)."""
    engine = create_warehouse_engine(warehouse_url)
    ensure_schema(engine)
    yield engine
    engine.dispose()
