"""The events log (`integration_events_log`): every event once, and what became of it.

An event is logged `pending` when `process_events` first reads its file (inserting an `event_id`
already there does nothing: that is the deduplication), then becomes `processed` or `ignored`
in the same transaction that applies it, or `failed` with a time for its next attempt, and
`dead` once it is out of attempts. An engineer requeues dead (or failed) events; retention
removes old processed and ignored rows, never pending, failed or dead ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, bindparam, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from integration_pipelines.lib.events.models import InboxEvent
from integration_pipelines.lib.warehouse.schema import integration_events_log as log_table
from integration_pipelines.lib.warehouse.types import UTCDateTime

RETAINED_STATUSES = ("pending", "failed", "dead")  # never removed by retention


@dataclass(frozen=True)
class LoggedEvent:
    """An event as the log holds it, ready to apply."""

    event: InboxEvent
    retry_count: int
    file_name: str


def log_row(
    event: InboxEvent, *, event_type: str, record_id: str | None, user_id: int | None, time: datetime, file_name: str
) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "tenant_id": event.tenant_id,
        "source": event.source,
        "sender": event.sender,
        "event_type": event_type[:100],
        "record_id": None if record_id is None else record_id[:128],
        "user_id": user_id,
        "event_time": time,
        "payload": event.model_dump(mode="json"),
        "file_name": file_name[:255],
        "status": "pending",
        "retry_count": 0,
        "received_at": event.received_at,
    }


def insert_new(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Log events not logged yet (an `event_id` already there is left as it is)."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(log_table).on_conflict_do_nothing(index_elements=["event_id"])
    for start in range(0, len(rows), 1000):
        conn.execute(stmt, list(rows[start : start + 1000]))


def statuses(conn: Connection, event_ids: Iterable[str]) -> dict[str, tuple[str, int]]:
    """Status and retry count of each of these events the log holds."""
    ids, out = sorted(set(event_ids)), {}
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        stmt = select(log_table.c.event_id, log_table.c.status, log_table.c.retry_count).where(
            log_table.c.event_id.in_(chunk)
        )
        out.update({event_id: (status, retries) for event_id, status, retries in conn.execute(stmt)})
    return out


def mark_done(conn: Connection, outcomes: dict[str, tuple[str, str | None]], now: datetime) -> None:
    """Record events as `processed` or `ignored` (with a note, or None), in the applying transaction."""
    by_outcome: dict[tuple[str, str | None], list[str]] = {}
    for event_id, outcome in outcomes.items():
        by_outcome.setdefault(outcome, []).append(event_id)
    for (status, note), ids in by_outcome.items():
        for start in range(0, len(ids), 1000):
            conn.execute(
                update(log_table)
                .where(log_table.c.event_id.in_(ids[start : start + 1000]))
                .values(status=status, last_error=note, processed_at=now, next_attempt_at=None)
            )


def backoff(retry_count: int, base_seconds: float) -> timedelta:
    """The wait before attempt `retry_count + 1`: base, then twice as long each time."""
    return timedelta(seconds=base_seconds * 2 ** max(0, retry_count - 1))


def mark_failed(
    conn: Connection,
    events: Sequence[tuple[str, int]],
    error: str,
    now: datetime,
    *,
    max_attempts: int,
    base_seconds: float,
) -> Counter[str]:
    """Count a failed attempt of each (event id, retries so far): `failed` with its next attempt,
    or `dead` once out of attempts. Returns how many became which."""
    by_retries: dict[int, list[str]] = {}
    for event_id, retries in events:
        by_retries.setdefault(retries + 1, []).append(event_id)
    outcome: Counter[str] = Counter()
    for retries, ids in by_retries.items():
        dead = retries >= max_attempts
        for start in range(0, len(ids), 1000):
            conn.execute(
                update(log_table)
                .where(log_table.c.event_id.in_(ids[start : start + 1000]))
                .values(
                    status="dead" if dead else "failed",
                    retry_count=retries,
                    last_error=error[:2000],
                    next_attempt_at=None if dead else now + backoff(retries, base_seconds),
                )
            )
        outcome["dead" if dead else "failed"] += len(ids)
    return outcome


def due(
    conn: Connection, now: datetime, limit: int, *, stale_pending_before: datetime | None = None
) -> list[LoggedEvent]:
    """Failed events whose next attempt is due (and pending ones logged before
    `stale_pending_before`: left by a run that died before applying them), oldest first."""
    c = log_table.c
    wanted = and_(c.status == "failed", c.next_attempt_at <= now)
    if stale_pending_before is not None:
        wanted = or_(wanted, and_(c.status == "pending", c.received_at < stale_pending_before))
    stmt = select(c.payload, c.retry_count, c.file_name).where(wanted).order_by(c.event_time, c.event_id).limit(limit)
    return [LoggedEvent(InboxEvent.model_validate(p), r, f) for p, r, f in conn.execute(stmt)]


def requeue(
    conn: Connection,
    now: datetime,
    *,
    tenant_id: str | None,
    event_ids: Sequence[str] = (),
    statuses_: Sequence[str] = ("dead",),
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """Make events due now with a fresh count of attempts: the given ids, or every event of the
    given statuses (dead, by default) matching the filters; of `tenant_id` only (None: of every
    tenant, for an engineer acting for the whole deployment). Returns how many."""
    c = log_table.c
    where: list[ColumnElement[bool]] = [c.status.in_(list(statuses_) if not event_ids else ["dead", "failed"])]
    if tenant_id is not None:
        where.append(c.tenant_id == tenant_id)
    if event_ids:
        where.append(c.event_id.in_(list(event_ids)))
    if event_type:
        where.append(c.event_type == event_type)
    if since:
        where.append(c.received_at >= since)
    if until:
        where.append(c.received_at < until)
    stmt = update(log_table).where(*where).values(status="failed", retry_count=0, next_attempt_at=now)
    return conn.execute(stmt).rowcount


def expired(conn: Connection, before: datetime, limit: int) -> list[tuple[str, str]]:
    """(event id, file name) of processed and ignored events older than `before`."""
    c = log_table.c
    stmt = (
        select(c.event_id, c.file_name)
        .where(c.status.not_in(RETAINED_STATUSES), func.coalesce(c.processed_at, c.received_at) < before)
        .limit(limit)
    )
    return [(e, f) for e, f in conn.execute(stmt)]


def remove(conn: Connection, event_ids: Sequence[str]) -> int:
    """Delete these log rows, unless they are pending, failed or dead."""
    c = log_table.c
    return conn.execute(
        delete(log_table).where(c.event_id.in_(list(event_ids)), c.status.not_in(RETAINED_STATUSES))
    ).rowcount


LISTED_COLUMNS: tuple[str, ...] = (
    "event_id",
    "tenant_id",
    "source",
    "sender",
    "event_type",
    "record_id",
    "user_id",
    "status",
    "retry_count",
    "last_error",
    "event_time",
    "received_at",
    "processed_at",
    "next_attempt_at",
)


@dataclass(frozen=True)
class LogFilter:
    """What `GET /v1/events` asks for: one tenant's events (always: a page never mixes tenants),
    filters, and the page after `after` (received_at, event_id)."""

    tenant_id: str
    event_type: str | None = None
    status: str | None = None
    user_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    after: tuple[datetime, str] | None = None


def page(conn: Connection, where: LogFilter, limit: int, *, with_payload: bool = False) -> list[dict[str, Any]]:
    """One page of a tenant's log, newest received first (keyset paging on received_at, event_id)."""
    c = log_table.c
    columns = [c[name] for name in LISTED_COLUMNS] + ([c.payload] if with_payload else [])
    conditions = [c.tenant_id == where.tenant_id]
    if where.event_type:
        conditions.append(c.event_type == where.event_type)
    if where.status:
        conditions.append(c.status == where.status)
    if where.user_id is not None:
        conditions.append(c.user_id == where.user_id)
    if where.since:
        conditions.append(c.received_at >= where.since)
    if where.until:
        conditions.append(c.received_at < where.until)
    if where.after:
        received, event_id = where.after
        after = tuple_(bindparam("after_received", received, type_=UTCDateTime()), bindparam("after_id", event_id))
        conditions.append(tuple_(c.received_at, c.event_id) < after)
    stmt = select(*columns).where(*conditions).order_by(c.received_at.desc(), c.event_id.desc()).limit(limit)
    return [dict(row) for row in conn.execute(stmt).mappings()]


def status_of(conn: Connection, event_id: str, tenant_id: str) -> str | None:
    """The status of this tenant's event; None when the log holds no such event of this tenant."""
    c = log_table.c
    return conn.execute(select(c.status).where(c.event_id == event_id, c.tenant_id == tenant_id)).scalar()
