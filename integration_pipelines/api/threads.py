"""Where the API's blocking work runs: warehouse reads on few threads, waits on others apart.

FastAPI runs every sync route and dependency on anyio's default thread limiter. Those are the
warehouse reads, and they are CPU work: more threads than a couple per process only queue for
the GIL. On SQLite it is worse, since Python's sqlite3 releases the GIL for every row it steps,
so readers on many threads hand it back and forth row by row. Measured at 10,000 students, one
process, 50 clients: 499 profiles/s on one thread, 278 on four, 208 on forty (anyio's default);
on PostgreSQL 219/s on one thread, 263 on two, 191 on eight. So a process reads on one thread on
SQLite and two on PostgreSQL (`API_THREADS` to change it), and more processes
(`integration-pipelines api serve --workers N`) use more cores.

Work that waits on something other than the warehouse (a connection test against Moodle or Zoho,
a sync launched on Dagster, a webhook event's fsync) runs on a limiter of its own, so it never
holds up reads, and reads never hold it up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI, Request

WAITING_THREADS = 16

_T = TypeVar("_T")


def configure_threads(app: FastAPI, read_threads: int) -> None:
    """At the app's start: this process's warehouse reads (its sync routes) run on `read_threads`
    threads, and waits on anything else on threads of their own."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = read_threads
    app.state.waiting_threads = CapacityLimiter(WAITING_THREADS)


async def run_waiting(request: Request, function: Callable[..., _T], *args: object) -> _T:
    """Run `function(*args)`, which waits on another service or the disk, off the read threads."""
    return await anyio.to_thread.run_sync(function, *args, limiter=request.app.state.waiting_threads)
