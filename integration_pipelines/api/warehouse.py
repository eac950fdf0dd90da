"""The API's reads of the warehouse, and what a missing or unreachable warehouse answers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import Request
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from integration_pipelines.api.problems import Problem

NOT_READY = "The warehouse is unreachable or its marts are not built yet: check GET /v1/health, run full_sync."


def _not_ready() -> Problem:
    # The driver's message may name hosts or SQL: the answer says only what to do.
    return Problem(503, "Warehouse not ready", NOT_READY, headers={"Retry-After": "60"})


def database_exists(engine: Engine) -> bool:
    """False for a SQLite warehouse whose file does not exist yet. Connecting would create it,
    empty: the API reads, and must leave no file behind."""
    if engine.dialect.name != "sqlite":
        return True
    database = engine.url.database
    return bool(database) and (database == ":memory:" or Path(database).exists())


@contextmanager
def warehouse_errors() -> Iterator[None]:
    """503 when the warehouse cannot answer: unreachable, or its schema or marts not built yet."""
    try:
        yield
    except (OperationalError, ProgrammingError) as exc:
        raise _not_ready() from exc


@contextmanager
def read_connection(request: Request) -> Iterator[Connection]:
    """A connection to the warehouse for one request's reads; 503 when it cannot answer them."""
    engine: Engine = request.app.state.engine
    with warehouse_errors():
        if not database_exists(engine):
            raise _not_ready()
        with engine.connect() as conn:
            yield conn
