"""Throwaway PostgreSQL databases, for the tests and the benchmarks."""

from __future__ import annotations

import uuid

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url


class PostgresDatabases:
    """Creates throwaway databases on a server and drops them (all that are left, on `close`)."""

    def __init__(self, admin_url: URL, prefix: str = "ip_test"):
        self._admin_url, self._prefix = admin_url, prefix
        self._admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self._created: list[str] = []

    def create(self) -> str:
        name = f"{self._prefix}_{uuid.uuid4().hex[:12]}"
        with self._admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self._created.append(name)
        return self._admin_url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        self._drop(name)
        self._created.remove(name)

    def close(self) -> None:
        for name in list(self._created):
            self._drop(name)
        self._created.clear()
        self._admin.dispose()

    def _drop(self, name: str) -> None:
        with self._admin.connect() as conn:
            # End our own role's sessions still on it (a pool the test left open), then a plain
            # DROP: PostgreSQL stops an autovacuum worker on the database itself, whereas
            # `WITH (FORCE)` demands the right to terminate it, which a non-superuser lacks.
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND usename = current_user AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
