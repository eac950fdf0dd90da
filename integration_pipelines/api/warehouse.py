"""The API's reads of the warehouse, and what a missing or unreachable warehouse answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

from anyio import Semaphore
from fastapi import Depends, Request
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

from integration_pipelines.api.problems import Problem
from integration_pipelines.api.threads import run_read

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


class _HeldConnection:
    """A request's connection and its slot (`threads.configure_threads`), given back once."""

    def __init__(self, request: Request):
        self._request = request
        self._conn: Connection | None = None
        self._slots: Semaphore = request.app.state.connection_slots

    async def take(self) -> Connection:
        await self._slots.acquire()
        try:
            conn = await run_read(self._request, self._request.app.state.engine.connect)
        except BaseException:
            self._slots.release()
            raise
        self._conn = conn
        return conn

    async def give_back(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await run_read(self._request, conn.close)
            finally:
                self._slots.release()


async def request_connection(request: Request) -> AsyncIterator[Connection]:
    """The request's connection to the warehouse; 503 when it cannot answer the request's reads.

    FastAPI gives every dependant of one request the same value, so the key's check and the route's
    reads share one connection: one pool checkout and one reset per request (not one per read),
    and one snapshot of the warehouse for all of a request's reads. It is taken and given back
    where the reads run (`run_read`): when the route returns, before the answer is sent, or before
    the route waits on another service (`run_waiting`)."""
    state = request.app.state
    # Asked until the warehouse's file is there: it does not go away under a running API.
    if not getattr(state, "warehouse_exists", False):
        state.warehouse_exists = database_exists(state.engine)
        if not state.warehouse_exists:
            raise _not_ready()
    held = _HeldConnection(request)
    request.state.release_warehouse = held.give_back
    with warehouse_errors():
        try:
            yield await held.take()
        finally:
            await held.give_back()


Warehouse = Annotated[Connection, Depends(request_connection, scope="function")]
