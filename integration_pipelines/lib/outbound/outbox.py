"""The grade outbox: one row per Zoho grade record we write, and the states it moves through.

::

    (new) ──► in_flight ──► sent         Zoho acknowledged this fingerprint; never sent again
                 │    └───► failed       a transient refusal or no answer: the next run resends
                 └────────► parked       Zoho rejected it for good (its message kept) until it changes
    (new) ──► conflict ──► kept_zoho     staff changed Zoho after the Moodle grade; an engineer
                     └───► forced        chose (resolve job): keep Zoho's, or send Moodle's anyway

A row is marked ``in_flight`` (and committed) before its batch is sent. If the process dies
between the send and the commit of the answer, the row is still ``in_flight`` and the next run
sends it again: an upsert matched on the duplicate-check field updates the record the lost send
created, so nothing is duplicated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from integration_pipelines.lib.warehouse.schema import grade_outbox

IN_FLIGHT = "in_flight"
SENT = "sent"
FAILED = "failed"
PARKED = "parked"
CONFLICT = "conflict"
KEPT_ZOHO = "kept_zoho"
FORCED = "forced"
STATUSES = (IN_FLIGHT, SENT, FAILED, PARKED, CONFLICT, KEPT_ZOHO, FORCED)

# How an engineer resolves a conflict (the resolve job's config).
RESOLUTIONS = {"keep_zoho": KEPT_ZOHO, "force_moodle": FORCED}


@dataclass(frozen=True)
class OutboxEntry:
    """What one row says about a grade to write: its record, and the Moodle grade behind it."""

    record_key: str
    grade_key: str
    student_zoho_id: str
    unit_zoho_id: str
    btec_grade: str
    payload: Mapping[str, Any]
    fingerprint: str
    moodle_graded_at: datetime


def _insert(conn: Connection):
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(grade_outbox)


def _entry_values(tenant_id: str, entry: OutboxEntry) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "record_key": entry.record_key,
        "grade_key": entry.grade_key,
        "student_zoho_id": entry.student_zoho_id,
        "unit_zoho_id": entry.unit_zoho_id,
        "btec_grade": entry.btec_grade,
        "payload": dict(entry.payload),
        "fingerprint": entry.fingerprint,
        "moodle_graded_at": entry.moodle_graded_at,
    }


def mark_in_flight(conn: Connection, tenant_id: str, entries: Sequence[OutboxEntry], now: datetime) -> None:
    """Record a batch as about to be sent (one more attempt each), before it is sent."""
    if not entries:
        return
    stmt = _insert(conn)
    stmt = stmt.on_conflict_do_update(
        index_elements=["tenant_id", "record_key"],
        set_={
            "grade_key": stmt.excluded.grade_key,
            "btec_grade": stmt.excluded.btec_grade,
            "payload": stmt.excluded.payload,
            "fingerprint": stmt.excluded.fingerprint,
            "moodle_graded_at": stmt.excluded.moodle_graded_at,
            "status": IN_FLIGHT,
            "attempts": grade_outbox.c.attempts + 1,
            "updated_at": now,
        },
    )
    conn.execute(
        stmt,
        [
            {**_entry_values(tenant_id, e), "status": IN_FLIGHT, "attempts": 1, "created_at": now, "updated_at": now}
            for e in entries
        ],
    )


def record_conflicts(
    conn: Connection, tenant_id: str, conflicts: Iterable[tuple[OutboxEntry, Any]], now: datetime
) -> None:
    """Record grades not sent because Zoho holds a different, newer value (``zoho`` is the
    GradeState's Zoho side: ``zoho_id``, ``zoho_grade``, ``zoho_modified_at``)."""
    rows = [
        {
            **_entry_values(tenant_id, entry),
            "status": CONFLICT,
            "attempts": 0,
            "zoho_id": zoho.zoho_id,
            "zoho_grade": zoho.zoho_grade,
            "zoho_modified_at": zoho.zoho_modified_at,
            "last_error": (
                f"Zoho holds {zoho.zoho_grade} (modified {zoho.zoho_modified_at.isoformat()}), newer than "
                f"Moodle's {entry.btec_grade} (graded {entry.moodle_graded_at.isoformat()})"
            ),
            "created_at": now,
            "updated_at": now,
        }
        for entry, zoho in conflicts
    ]
    if not rows:
        return
    stmt = _insert(conn)
    excluded = stmt.excluded
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["tenant_id", "record_key"],
            set_={
                name: getattr(excluded, name)
                for name in (
                    "grade_key",
                    "btec_grade",
                    "payload",
                    "fingerprint",
                    "moodle_graded_at",
                    "status",
                    "zoho_id",
                    "zoho_grade",
                    "zoho_modified_at",
                    "last_error",
                    "updated_at",
                )
            },
        ),
        rows,
    )


def _set_status(conn: Connection, tenant_id: str, rows: Sequence[Mapping[str, Any]], values: Mapping[str, Any]) -> None:
    if not rows:
        return
    stmt = (
        update(grade_outbox)
        .where(grade_outbox.c.tenant_id == tenant_id, grade_outbox.c.record_key == bindparam("key"))
        .values(**values)
    )
    conn.execute(stmt, list(rows))


@dataclass(frozen=True)
class Written:
    """A record Zoho holds as we meant it: acknowledged, or (a send whose answer was lost, the
    same value typed there) found there already."""

    record_key: str
    fingerprint: str
    btec_grade: str
    zoho_id: str | None
    modified_at: datetime | None
    """Zoho's Modified_Time of the record as it then was, on Zoho's clock: a later one is someone else's edit."""


def mark_sent(conn: Connection, tenant_id: str, written: Sequence[Written], now: datetime) -> None:
    """Zoho holds these records: never sent again with the same fingerprint."""
    _set_status(
        conn,
        tenant_id,
        [
            {"key": w.record_key, "fp": w.fingerprint, "grade": w.btec_grade, "zid": w.zoho_id, "at": w.modified_at}
            for w in written
        ],
        {
            "status": SENT,
            "sent_fingerprint": bindparam("fp"),
            "zoho_id": bindparam("zid"),
            "zoho_grade": bindparam("grade"),
            "zoho_modified_at": bindparam("at"),
            "last_error": None,
            "sent_at": now,
            "updated_at": now,
        },
    )


def mark_failed(conn: Connection, tenant_id: str, failed: Sequence[tuple[str, str]], now: datetime) -> None:
    """Not written this time (``(record key, error)``): the next run sends them again."""
    _set_status(
        conn,
        tenant_id,
        [{"key": k, "err": e} for k, e in failed],
        {"status": FAILED, "last_error": bindparam("err"), "updated_at": now},
    )


def mark_parked(conn: Connection, tenant_id: str, parked: Sequence[tuple[str, str]], now: datetime) -> None:
    """Rejected by Zoho for good (``(record key, Zoho's message)``): not sent again until the grade changes."""
    _set_status(
        conn,
        tenant_id,
        [{"key": k, "err": e} for k, e in parked],
        {"status": PARKED, "last_error": bindparam("err"), "updated_at": now},
    )


def resolve_conflicts(
    conn: Connection, tenant_id: str, resolution: str, record_keys: Sequence[str] | None, now: datetime
) -> list[str]:
    """Resolve conflicts (all of them, or those of ``record_keys``) as ``keep_zoho`` or
    ``force_moodle``; returns the record keys resolved."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
    where = [grade_outbox.c.tenant_id == tenant_id, grade_outbox.c.status == CONFLICT]
    if record_keys:
        where.append(grade_outbox.c.record_key.in_(list(record_keys)))
    keys = list(conn.execute(select(grade_outbox.c.record_key).where(*where)).scalars())
    if record_keys:
        unknown = sorted(set(record_keys) - set(keys))
        if unknown:
            raise ValueError(f"not conflicts in the outbox: {', '.join(unknown)}")
    if keys:
        conn.execute(
            update(grade_outbox)
            .where(*where)
            .values(status=RESOLUTIONS[resolution], last_error=f"resolved: {resolution}", updated_at=now)
        )
    return keys


def outbox_counts(conn: Connection, tenant_id: str) -> dict[str, int]:
    """Rows per status (every status present, zero when none)."""
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    rows = conn.execute(
        select(grade_outbox.c.status, func.count())
        .where(grade_outbox.c.tenant_id == tenant_id)
        .group_by(grade_outbox.c.status)
    )
    for status, n in rows:
        counts[status] = n
    return counts
