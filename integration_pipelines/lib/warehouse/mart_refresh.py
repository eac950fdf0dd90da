"""Which students' marts are stale, so that a mart build after a few changes rebuilds a few students.

Every canonical application by key (an event batch's, an incremental sync's) queues, in its own
transaction, the students whose rows it wrote (found by the `updated_at` it stamped). A change to
a table whose rows reach students only through others (a class, a unit, a programme) queues every
student (`*`). A whole-table application queues nobody: it is a sync's, which builds every mart.

A mart build claims what is queued, rebuilds the claimed students' rows (dbt incremental models
reading the claim: `dbt_models/macros/mart_refresh.sql`), or every row when `*` is among them,
and deletes its claim once the build succeeded. What is queued while a build runs waits for the
next one; a build that failed leaves its claim, and the next build takes it over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, exists, func, insert, literal, select, update

from integration_pipelines.lib.warehouse.schema import classes, metadata, programs, units
from integration_pipelines.lib.warehouse.schema import mart_refresh_queue as queue

EVERY_STUDENT = "*"

# The canonical tables the marts read, by how a changed row names the students it reaches.
NAMING_THEIR_STUDENT = ("students", "enrollments", "registrations", "payments", "grades")
SHARED = (programs.name, units.name, classes.name)


def queue_changed_students(conn: Connection, tenant_id: str, table_name: str, now: datetime, *, full: bool) -> None:
    """Queue the students whose marts the application of `table_name` at `now` made stale."""
    if full or (table_name not in NAMING_THEIR_STUDENT and table_name not in SHARED):
        # A whole-table application is a sync's, whose marts step then builds every mart: queueing
        # everyone would have an event batch during the sync rebuild them all beside it.
        return
    table = metadata.tables[table_name]
    written = (table.c.tenant_id == tenant_id, table.c.updated_at >= now)
    if table_name in SHARED:
        if conn.execute(select(exists().where(*written))).scalar():
            queue_every_student(conn, tenant_id, now)
        return
    changed = (
        select(table.c.tenant_id, table.c.student_key, literal(now, queue.c.queued_at.type))
        .where(*written, table.c.student_key.is_not(None))
        .distinct()
    )
    conn.execute(insert(queue).from_select(["tenant_id", "student_key", "queued_at"], changed))


def queue_every_student(conn: Connection, tenant_id: str, now: datetime) -> None:
    """Queue a rebuild of every student of the tenant, unless one is already waiting."""
    waiting = select(exists().where(queue.c.tenant_id == tenant_id, queue.c.student_key == EVERY_STUDENT))
    if not conn.execute(waiting.where(queue.c.claim.is_(None))).scalar():
        conn.execute(insert(queue).values(tenant_id=tenant_id, student_key=EVERY_STUDENT, queued_at=now))


@dataclass(frozen=True)
class Claim:
    """What a mart build took from the queue: `students` rows, and whether every student is stale."""

    claim_id: str
    students: int
    everything: bool


def claim(conn: Connection, claim_id: str) -> Claim:
    """Claim everything queued, including what a failed or concurrent build claimed before."""
    conn.execute(update(queue).values(claim=claim_id))
    mine = queue.c.claim == claim_id
    count = conn.execute(select(func.count()).where(mine, queue.c.student_key != EVERY_STUDENT)).scalar_one()
    everything = conn.execute(select(exists().where(mine, queue.c.student_key == EVERY_STUDENT))).scalar()
    return Claim(claim_id, count, bool(everything))


def release(conn: Connection, claim_id: str) -> int:
    """After a successful build: its claimed students are fresh. The rows still held by this claim
    (none that a later build took over) are deleted."""
    return conn.execute(delete(queue).where(queue.c.claim == claim_id)).rowcount
