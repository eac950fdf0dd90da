"""Retention: processed and ignored events older than the retention period go, log rows and files.

Pending, failed and dead events are never removed, nor their files, nor anything in
`quarantine/` (an engineer decides about those). An archived file is removed with its log row,
and any other archived file older than the period (a repeat, archived under a name of its own)
with it, unless a kept event names it.
"""

from __future__ import annotations

import os
from datetime import datetime

from sqlalchemy import Engine, select

from integration_pipelines.lib.events import log
from integration_pipelines.lib.events.inbox import EventsInbox
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.warehouse.schema import integration_events_log

CHUNK = 5_000


def remove_expired(engine: Engine, inbox: EventsInbox, before: datetime) -> dict[str, int]:
    """Remove what expired before `before`; returns how many log rows and files went."""
    rows = files = 0
    while True:
        with engine.connect() as conn:
            expired = log.expired(conn, before, CHUNK)
        if not expired:
            break
        for _, name in expired:
            for directory in (inbox.archive, inbox.seen):
                try:
                    (directory / name).unlink()
                    files += directory == inbox.archive
                except FileNotFoundError:
                    pass
        with begin_write(engine) as conn:
            rows += log.remove(conn, [event_id for event_id, _ in expired])
    c = integration_events_log.c
    with engine.connect() as conn:
        kept = set(conn.execute(select(c.file_name).where(c.status.in_(log.RETAINED_STATUSES))).scalars())
    cutoff = before.timestamp()
    for directory in (inbox.archive, inbox.seen):
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name in kept or not entry.is_file():
                    continue
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    files += directory == inbox.archive
    return {"log_rows_removed": rows, "files_removed": files}
