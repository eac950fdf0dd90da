"""Writing Moodle's BTEC grades back to Zoho, once each, through the outbox.

For every student x unit with a Moodle grade (lib/outbound/selection.py) the write-back decides:

1. resolved conflicts first: ``kept_zoho`` for this very grade is left alone, ``forced`` is sent;
   a grade Zoho rejected for good (``parked``) is not sent again until it changes;
2. **unchanged** when the record Zoho holds has this grade already (settled in the outbox);
3. **conflict** when Zoho's record has another grade, modified after the Moodle grade (and after
   our own last write to it, by Zoho's clock): staff typed it; it is not overwritten but
   recorded for an engineer to resolve;
4. **unchanged** when the outbox says Zoho acknowledged this very record (same fingerprint);
5. otherwise it is **sent**: Zoho lacks it, or holds an older value.

Grades to send go in batches of 100: each batch is marked in flight and committed, upserted with
the duplicate-check field (so a resend after a lost answer updates instead of duplicating), and
its 207 answer settled record by record: written, parked with Zoho's message, or failed (sent
again by the next run). A dry run decides and reports, and writes nothing anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from integration_pipelines.lib.http import ClientError
from integration_pipelines.lib.mapping import FieldMapping
from integration_pipelines.lib.outbound import outbox
from integration_pipelines.lib.outbound.outbox import OutboxEntry, Written
from integration_pipelines.lib.outbound.payload import GradeRecordShape, fingerprint
from integration_pipelines.lib.outbound.selection import GradeState, grade_states
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.zoho.client import UPSERT_BATCH, ZohoClient
from integration_pipelines.lib.zoho.writes import credits_charged, upsert_batch

logger = logging.getLogger(__name__)

# How many record keys a report lists by name (conflicts, parked records): enough to act on.
LISTED = 20


@dataclass
class WritebackReport:
    """What one write-back run decided and did (run metadata)."""

    dry_run: bool = False
    considered: int = 0
    sent: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: int = 0
    parked: int = 0
    failed: int = 0
    kept_zoho: int = 0
    would_send: int = 0
    deferred: int = 0
    """Not tried this run: a batch before them failed for want of Zoho (sent by the next run)."""
    batches: int = 0
    requests: int = 0
    credits_used: int = 0
    conflict_keys: list[str] = field(default_factory=list)
    parked_errors: dict[str, str] = field(default_factory=dict)
    failed_error: str | None = None

    def as_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: getattr(self, name)
            for name in (
                "dry_run",
                "considered",
                "sent",
                "inserted",
                "updated",
                "unchanged",
                "conflicts",
                "parked",
                "failed",
                "kept_zoho",
                "would_send",
                "deferred",
                "batches",
                "requests",
                "credits_used",
            )
        }
        out["conflict_records"] = list(self.conflict_keys)
        out["parked_records"] = dict(self.parked_errors)
        if self.failed_error:
            out["failed_error"] = self.failed_error
        return out


@dataclass
class _Plan:
    send: list[OutboxEntry] = field(default_factory=list)
    conflicts: list[tuple[OutboxEntry, GradeState]] = field(default_factory=list)
    held: list[Written] = field(default_factory=list)


def _entry(shape: GradeRecordShape, state: GradeState) -> OutboxEntry:
    payload = shape.record(
        {
            "student_zoho_id": state.student_zoho_id,
            "unit_zoho_id": state.unit_zoho_id,
            "btec_grade": state.btec_grade,
            "graded_at": state.graded_at,
        },
        student_number=state.student_number,
        unit_code=state.unit_code,
    )
    return OutboxEntry(
        record_key=state.record_key,
        grade_key=state.grade_key,
        student_zoho_id=state.student_zoho_id,
        unit_zoho_id=state.unit_zoho_id,
        btec_grade=state.btec_grade,
        payload=payload,
        fingerprint=fingerprint(payload),
        moodle_graded_at=state.moodle_modified_at,
    )


def plan(states: Sequence[GradeState], shape: GradeRecordShape, report: WritebackReport) -> _Plan:
    """Decide, for each student x unit, what to do (the rules in the module's docstring)."""
    out = _Plan()
    for state in states:
        report.considered += 1
        entry = _entry(shape, state)
        same = state.outbox_fingerprint == entry.fingerprint
        if same and state.outbox_status == outbox.KEPT_ZOHO:
            report.kept_zoho += 1
        elif same and state.outbox_status == outbox.FORCED:
            out.send.append(entry)
        elif same and state.outbox_status == outbox.PARKED:
            report.parked += 1
        elif state.zoho_grade is not None and state.zoho_grade == state.btec_grade:
            report.unchanged += 1
            settled = state.outbox_status == outbox.SENT and state.outbox_sent_fingerprint == entry.fingerprint
            if state.outbox_status is not None and not settled:
                out.held.append(
                    Written(
                        state.record_key, entry.fingerprint, state.btec_grade, state.zoho_id, state.zoho_modified_at
                    )
                )
        elif _changed_in_zoho_since(state):
            report.conflicts += 1
            out.conflicts.append((entry, state))
            if len(report.conflict_keys) < LISTED:
                report.conflict_keys.append(state.record_key)
        elif state.outbox_status == outbox.SENT and state.outbox_sent_fingerprint == entry.fingerprint:
            report.unchanged += 1
        else:
            out.send.append(entry)
    return out


def _changed_in_zoho_since(state: GradeState) -> bool:
    """Zoho holds another grade, changed after the Moodle grade and after our own last write to
    the record (until the next read, the warehouse still shows what our write replaced)."""
    if state.zoho_grade is None or state.zoho_modified_at is None:
        return False
    ours = state.outbox_zoho_modified_at if state.outbox_status == outbox.SENT else None
    return state.zoho_modified_at > state.moodle_modified_at and (ours is None or state.zoho_modified_at > ours)


def _batches(entries: Sequence[OutboxEntry], size: int) -> Iterator[Sequence[OutboxEntry]]:
    for start in range(0, len(entries), size):
        yield entries[start : start + size]


def write_back(
    engine: Engine,
    client_factory: Callable[[], ZohoClient],
    tenant_id: str,
    mapping: FieldMapping,
    *,
    dry_run: bool = False,
    only: set[str] | None = None,
    batch_size: int = UPSERT_BATCH,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> WritebackReport:
    """Write the grades Zoho lacks or holds older to Zoho, once each (or, with ``dry_run``, only
    report what would be sent). ``only`` limits the run to some record keys (resolved conflicts).

    Raises the client's error when Zoho refuses the write as such (authentication, permission,
    an unknown module), after recording the batch as failed; a batch that Zoho could not take
    after the client's retries (still throttled, down) is recorded as failed and ends the run's
    sending, so the retry schedule picks it up with the rest.
    """
    shape = GradeRecordShape.of(mapping)
    report = WritebackReport(dry_run=dry_run)
    with engine.connect() as conn:
        states = list(grade_states(conn, tenant_id, only=only))
    decided = plan(states, shape, report)
    if dry_run:
        report.would_send = len(decided.send)
        return report
    with begin_write(engine) as conn:
        outbox.record_conflicts(conn, tenant_id, decided.conflicts, clock())
        outbox.mark_sent(conn, tenant_id, decided.held, clock())
    if not decided.send:
        return report
    client = client_factory()
    try:
        _send(engine, client, tenant_id, shape, decided.send, batch_size, report, clock)
    finally:
        report.requests = client.counter.total
        report.credits_used = credits_charged(client)
        client.close()
    return report


def _send(
    engine: Engine,
    client: ZohoClient,
    tenant_id: str,
    shape: GradeRecordShape,
    entries: Sequence[OutboxEntry],
    batch_size: int,
    report: WritebackReport,
    clock: Callable[[], datetime],
) -> None:
    done = 0
    for batch in _batches(entries, batch_size):
        with begin_write(engine) as conn:
            outbox.mark_in_flight(conn, tenant_id, batch, clock())
        report.batches += 1
        try:
            outcomes = upsert_batch(client, shape.module, [e.payload for e in batch], [shape.duplicate_check_field])
        except ClientError as exc:
            with begin_write(engine) as conn:
                outbox.mark_failed(conn, tenant_id, [(e.record_key, str(exc)) for e in batch], clock())
            report.failed += len(batch)
            report.failed_error = str(exc)
            report.deferred = len(entries) - done - len(batch)
            if not exc.retryable:
                raise
            logger.warning("Zoho did not take a batch of %d grades (%s); the next run sends them", len(batch), exc)
            return
        sent: list[Written] = []
        parked: list[tuple[str, str]] = []
        failed: list[tuple[str, str]] = []
        for entry, outcome in zip(batch, outcomes, strict=True):
            if outcome.written:
                sent.append(
                    Written(entry.record_key, entry.fingerprint, entry.btec_grade, outcome.zoho_id, outcome.modified_at)
                )
                if outcome.action == "insert":
                    report.inserted += 1
                else:
                    report.updated += 1
            elif outcome.permanent:
                parked.append((entry.record_key, outcome.error or "rejected"))
                if len(report.parked_errors) < LISTED:
                    report.parked_errors[entry.record_key] = outcome.error or "rejected"
            else:
                failed.append((entry.record_key, outcome.error or "not written"))
        with begin_write(engine) as conn:
            now = clock()
            outbox.mark_sent(conn, tenant_id, sent, now)
            outbox.mark_parked(conn, tenant_id, parked, now)
            outbox.mark_failed(conn, tenant_id, failed, now)
        report.sent += len(sent)
        report.parked += len(parked)
        report.failed += len(failed)
        done += len(batch)
