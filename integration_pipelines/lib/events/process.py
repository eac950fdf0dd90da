"""Applying events: a claimed batch of inbox files, or the log's events due for another attempt.

For a batch (`EventProcessor.process_batch`):
1. each file is parsed; one that cannot be is moved to `quarantine/` beside a `.reason`;
2. the events are logged `pending` in one short transaction (an `event_id` already logged is
   left alone: a repeat, or a file this batch's earlier, killed run already logged);
3. those still pending are applied: their records, or the current state they point at (re-read
   outside any transaction), land in the raw layer through the one upsert path (`RawLander`), and
   `apply_raw_keys` applies exactly those keys to the canonical tables; the log marks them
   processed (or ignored) in that same transaction, so an event's effect and its status commit
   together;
4. the files are archived and the batch's directory removed.

A run killed anywhere leaves its files in `claimed/<batch>/`; running the batch again redoes
what did not commit and skips what did. A failure to apply fails the events concerned (each
batch that fails is retried event by event, so one bad event fails alone), to be retried with
exponential backoff (`process_due`), and `dead` after the last attempt.

Transactions stay short (the landing and applying of one batch): on SQLite, which has one
writer, a batch commits between the transactions of a running sync.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, Engine

from integration_pipelines.lib.canonical.apply import apply_raw_keys
from integration_pipelines.lib.events import log, moodle, zoho
from integration_pipelines.lib.events.inbox import EventsInbox
from integration_pipelines.lib.events.models import InboxEvent, MoodleEvent, ZohoNotification, parse_inbox_file
from integration_pipelines.lib.mapping import FieldMapping
from integration_pipelines.lib.moodle import MoodleClient
from integration_pipelines.lib.raw_sync import RawLander, land_modules
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.zoho import ZohoClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed event is tried, and how long it waits between attempts."""

    max_attempts: int = 5
    base_seconds: float = 30.0


@dataclass
class BatchResult:
    """What one batch (or retry pass) did: events by outcome, files quarantined, canonical writes."""

    outcomes: Counter[str] = field(default_factory=Counter)
    quarantined: int = 0
    duplicates: int = 0
    requests: int = 0
    canonical_written: Counter[str] = field(default_factory=Counter)

    def as_metadata(self) -> dict[str, int]:
        return {
            **{k: self.outcomes.get(k, 0) for k in ("processed", "ignored", "failed", "dead")},
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "requests": self.requests,
            **{f"written_{table}": n for table, n in sorted(self.canonical_written.items())},
        }

    @property
    def tables_written(self) -> set[str]:
        return {table for table, n in self.canonical_written.items() if n}


class EventProcessor:
    """Applies events to one warehouse: see the module's docstring."""

    def __init__(
        self,
        engine: Engine,
        inbox: EventsInbox,
        mapping: FieldMapping,
        *,
        moodle_client: Callable[[], MoodleClient] | None = None,
        zoho_client: Callable[[], ZohoClient] | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.engine, self.inbox, self.mapping = engine, inbox, mapping
        self.moodle_client, self.zoho_client = moodle_client, zoho_client
        self.retry = retry or RetryPolicy()
        self.clock = clock
        self._zoho_modules = zoho.mapped_modules(mapping)

    # --- entry points ----------------------------------------------------------------------------
    def process_batch(self, batch: str) -> BatchResult:
        """Apply the events of `claimed/<batch>/` and archive their files."""
        result = BatchResult()
        parsed: list[tuple[Path, InboxEvent]] = []
        for path in self.inbox.batch_files(batch):
            try:
                parsed.append((path, parse_inbox_file(path.read_bytes())))
            except (ValueError, OSError) as exc:
                logger.warning("Quarantined %s: %s", path.name, exc)
                self.inbox.quarantine_file(path, str(exc))
                result.quarantined += 1
        rows, first = [], {}
        for path, event in parsed:
            if event.event_id in first:
                continue  # the same event twice in one batch (a file dropped by hand twice)
            first[event.event_id] = path
            rows.append(self._log_row(event, path.name))
        with begin_write(self.engine) as conn:
            log.insert_new(conn, rows)
            known = log.statuses(conn, first)
        todo = [
            log.LoggedEvent(event, known[event.event_id][1], path.name)
            for path, event in parsed
            if first.get(event.event_id) == path and known[event.event_id][0] == "pending"
        ]
        result.duplicates = len(parsed) - len(todo)
        self._apply(todo, result)
        for path, _ in parsed:
            self.inbox.archive_file(path)
        self.inbox.finish_batch(batch)
        return result

    def process_due(self, limit: int = 1000, *, stale_pending_after: timedelta | None = None) -> BatchResult:
        """Try again the failed events whose next attempt is due (and, with `stale_pending_after`,
        events left pending that long by a run that died), from their payload in the log."""
        result = BatchResult()
        now = self.clock()
        stale = now - stale_pending_after if stale_pending_after is not None else None
        with self.engine.connect() as conn:
            events = log.due(conn, now, limit, stale_pending_before=stale)
        self._apply(events, result)
        return result

    # --- applying --------------------------------------------------------------------------------
    def _log_row(self, event: InboxEvent, file_name: str) -> dict:
        body = event.validated()
        if isinstance(body, ZohoNotification):
            return log.log_row(
                event,
                event_type=zoho.event_type(body),
                record_id=",".join(body.ids),
                user_id=None,
                time=body.time,
                file_name=file_name,
            )
        record_id, user_id = moodle.record_of(body)
        return log.log_row(
            event, event_type=body.short_name, record_id=record_id, user_id=user_id, time=body.time, file_name=file_name
        )

    def _apply(self, events: Sequence[log.LoggedEvent], result: BatchResult) -> None:
        by_tenant: dict[str, list[log.LoggedEvent]] = {}
        for logged in events:
            by_tenant.setdefault(logged.event.tenant_id, []).append(logged)
        for tenant_id, group in by_tenant.items():
            self._apply_group(tenant_id, group, result)

    def _apply_group(self, tenant_id: str, group: Sequence[log.LoggedEvent], result: BatchResult) -> None:
        try:
            self._apply_together(tenant_id, group, result)
        except Exception as exc:  # noqa: BLE001 - whatever went wrong is the events' last_error
            if len(group) > 1:
                logger.warning("A batch of %d events failed (%s); applying them one by one", len(group), exc)
                for logged in group:
                    self._apply_group(tenant_id, [logged], result)
                return
            (logged,) = group
            error = f"{type(exc).__name__}: {exc}"
            with begin_write(self.engine) as conn:
                status = log.mark_failed(
                    conn,
                    logged.event.event_id,
                    error,
                    self.clock(),
                    max_attempts=self.retry.max_attempts,
                    base_seconds=self.retry.base_seconds,
                )
            logger.warning("Event %s %s: %s", logged.event.event_id, status, error)
            result.outcomes[status] += 1

    def _apply_together(self, tenant_id: str, group: Sequence[log.LoggedEvent], result: BatchResult) -> None:
        outcomes: dict[str, tuple[str, str | None]] = {}
        moodle_events: list[tuple[str, MoodleEvent]] = []
        notifications: list[ZohoNotification] = []
        for logged in group:
            body = logged.event.validated()
            event_id = logged.event.event_id
            if isinstance(body, ZohoNotification):
                if body.module in self._zoho_modules:
                    notifications.append(body)
                    outcomes[event_id] = ("processed", None)
                else:
                    outcomes[event_id] = ("ignored", f"Zoho module {body.module} is not in the field mapping")
            elif body.applied:
                moodle_events.append((event_id, body))
                outcomes[event_id] = ("processed", None)
            else:
                outcomes[event_id] = ("ignored", None)
        # Oldest first: of two events in one batch about one record, the newer lands last (the
        # raw layer's source-time rule decides between batches).
        moodle_events.sort(key=lambda pair: (pair[1].timecreated, pair[0]))

        # Reads (the raw layer's grade items, the sources) happen before the write transaction.
        changes: list[moodle.RawChange] = []
        if moodle_events:
            with self.engine.connect() as conn:
                items = moodle.grade_items(conn, tenant_id)
            work = moodle.plan(moodle_events, items)
            for event_id, note in work.notes.items():
                outcomes[event_id] = ("processed", note)
            changes = list(work.changes)
            if work.refetches():
                if self.moodle_client is None:
                    raise RuntimeError("these events need the Moodle client to read the current state")
                fetched, requests = moodle.refetch(self.moodle_client, work)
                changes.extend(fetched)
                result.requests += requests
        zoho_records: list = []
        zoho_keys: list[tuple[str, str, str]] = []
        if notifications:
            if self.zoho_client is None:
                raise RuntimeError("Zoho notifications need the Zoho client to read what changed")
            modules = sorted({n.module for n in notifications})
            since = min(n.time for n in notifications)
            zoho_records, zoho_keys = zoho.reread(self.zoho_client, [self._zoho_modules[m] for m in modules], since)

        now = self.clock()
        with begin_write(self.engine) as conn:
            keys = self._land(
                conn, tenant_id, changes, zoho_records, [self._zoho_modules[n.module] for n in notifications]
            )
            if keys or zoho_keys:
                written = apply_raw_keys(conn, tenant_id, self.mapping, [*keys, *zoho_keys], now=now)
                for table, table_result in written.items():
                    counts = table_result.counts
                    result.canonical_written[table] += counts.written.written + counts.deleted
            log.mark_done(conn, outcomes, now)
        for status, _ in outcomes.values():
            result.outcomes[status] += 1

    def _land(
        self, conn: Connection, tenant_id: str, changes, zoho_records, zoho_modules
    ) -> list[tuple[str, str, str]]:
        keys: list[tuple[str, str, str]] = []
        if changes:
            # One change per record: the merge stages a batch and merges it in one statement, in
            # which a record may appear once. The newest stands (for equal times, the later event),
            # which is what landing them one after the other would leave.
            newest: dict[tuple[str, str], moodle.RawChange] = {}
            for change in changes:
                key = (change.entity, change.record_id)
                if key not in newest or change.modified_at >= newest[key].modified_at:
                    newest[key] = change
            lander = RawLander(conn, tenant_id, "moodle", sorted({c.entity for c in changes}), snapshot=False)
            for change in newest.values():
                lander.land(change.entity, change.record_id, change.payload, change.modified_at, change.deleted_at)
                keys.append(("moodle", change.entity, change.record_id))
            lander.finish()
        if zoho_records:
            modules = sorted({m.module for m in zoho_modules})
            for _ in land_modules(conn, tenant_id, "zoho", modules, iter(zoho_records), snapshot=False):
                pass
        return keys
