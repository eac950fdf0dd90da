"""Where the API's blocking work runs: warehouse reads on few threads, waits on others apart.

FastAPI runs every sync route and dependency on anyio's default thread limiter. Those are the
warehouse reads, and they are CPU work: more threads than a couple per process only queue for
the GIL. On SQLite it is worse, since Python's sqlite3 releases the GIL for every row it steps,
so readers on many threads hand it back and forth row by row. Measured at 10,000 students, one
process, 50 clients: 499 profiles/s on one thread, 278 on four, 208 on forty (anyio's default);
on PostgreSQL 219/s on one thread, 263 on two, 191 on eight. So a process reads on one thread on
SQLite and two on PostgreSQL (`API_THREADS` to change it), and more processes
(`integration-pipelines api serve --workers N`) use more cores.

With one read thread (SQLite's), the hottest reads (the key's check, a profile) run on the event
loop itself (`run_read`): they take turns either way, and the hop to the thread and back cost more
than the read: 13-35% more profiles per second (docs/benchmarks.md, "Profile API: reads on the
event loop"). On a PostgreSQL on the same host the loop served more too (at 100,000 students with
a lower p99 as well: "Profile API: what a read costs"), but there a read waits on the server's
round trips, which on the loop would hold every request of the process, and a production
database is rarely on the API's host. So there reads stay on two threads, which overlap those
waits; `API_THREADS=1` suits a database on the same host.

Work that waits on something other than the warehouse (a connection test against Moodle or Zoho,
a sync launched on Dagster, a webhook event's fsync) runs on a limiter of its own, so it never
holds up reads, and reads never hold it up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio.to_thread
from anyio import CapacityLimiter, Semaphore
from fastapi import FastAPI, Request

WAITING_THREADS = 16

_T = TypeVar("_T")


def configure_threads(app: FastAPI, read_threads: int) -> None:
    """At the app's start: this process's warehouse reads (its sync routes) run on `read_threads`
    threads, and waits on anything else on threads of their own."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = read_threads
    # A request holds its warehouse connection from its key's check to its route's end
    # (`api/warehouse.py: request_connection`), and the pool has one per read thread. So as many
    # requests as there are read threads hold one at a time and the others wait here, on the event
    # loop: waiting on a read thread for a connection would hold the thread that a request holding
    # one needs to finish its reads. (`fast_acquire`: a free slot is taken without a turn of the
    # loop, which would cost every request one.)
    app.state.connection_slots = Semaphore(read_threads, fast_acquire=True)
    app.state.waiting_threads = CapacityLimiter(WAITING_THREADS)
    app.state.reads_on_the_loop = read_threads == 1


async def run_read(request: Request, function: Callable[..., _T], *args: object) -> _T:
    """Run `function(*args)`, a warehouse read: on the event loop with one read thread, else on
    the read threads (see the module's docstring)."""
    if request.app.state.reads_on_the_loop:
        return function(*args)
    return await anyio.to_thread.run_sync(function, *args)


async def run_waiting(request: Request, function: Callable[..., _T], *args: object) -> _T:
    """Run `function(*args)`, which waits on another service or the disk, off the read threads.
    The request gives back its warehouse connection first: it holds none while it waits."""
    release_warehouse = getattr(request.state, "release_warehouse", None)
    if release_warehouse is not None:
        await release_warehouse()
    return await anyio.to_thread.run_sync(function, *args, limiter=request.app.state.waiting_threads)
