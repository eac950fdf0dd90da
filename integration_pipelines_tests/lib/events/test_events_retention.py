"""Retention removes processed and ignored events older than the period, with their files, and
never a pending, failed or dead one (both backends)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from integration_pipelines.lib.events import log
from integration_pipelines.lib.events.inbox import EventsInbox
from integration_pipelines.lib.events.models import InboxEvent
from integration_pipelines.lib.events.retention import remove_expired
from integration_pipelines.lib.warehouse.schema import integration_events_log

NOW = datetime(2026, 12, 1, tzinfo=UTC)
OLD, RECENT = NOW - timedelta(days=120), NOW - timedelta(days=10)


def test_retention_keeps_what_is_recent_or_unfinished(warehouse, tmp_path):
    inbox = EventsInbox.at(tmp_path / "events" / "inbox")
    cases = {}
    for status in ("processed", "ignored", "pending", "failed", "dead"):
        for age, when in (("old", OLD), ("recent", RECENT)):
            cases[f"{status}-{age}"] = (status, when)
    rows = []
    for event_id, (_, when) in cases.items():
        event = InboxEvent(event_id=event_id, tenant_id="t", sender="zoho", received_at=when, body={})
        rows.append(
            log.log_row(event, event_type="x", record_id=None, user_id=None, time=when, file_name=f"{event_id}.json")
        )
        path = inbox.archive / f"{event_id}.json"
        path.write_bytes(event.to_json())
        os.link(path, inbox.seen / path.name)
        os.utime(path, (when.timestamp(), when.timestamp()))
    stray = inbox.archive / "repeat-by-hand.json"  # a repeat archived under its own name
    stray.write_text("{}")
    os.utime(stray, (OLD.timestamp(), OLD.timestamp()))
    with warehouse.begin() as conn:
        log.insert_new(conn, rows)
        for event_id, (status, when) in cases.items():
            conn.execute(
                update(integration_events_log)
                .where(integration_events_log.c.event_id == event_id)
                .values(status=status, processed_at=when if status in ("processed", "ignored") else None)
            )
    removed = remove_expired(warehouse, inbox, NOW - timedelta(days=90))
    gone = {"processed-old", "ignored-old"}
    assert removed == {"log_rows_removed": 2, "files_removed": 3}
    with warehouse.connect() as conn:
        left = set(conn.execute(select(integration_events_log.c.event_id)).scalars())
    assert left == set(cases) - gone
    assert {p.name for p in inbox.archive.iterdir()} == {f"{e}.json" for e in set(cases) - gone}
    assert {p.name for p in inbox.seen.iterdir()} == {f"{e}.json" for e in set(cases) - gone}
