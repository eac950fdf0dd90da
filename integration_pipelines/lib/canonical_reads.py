"""The reading side of the canonical steps: what each reads from the warehouse, and the rows it
makes of that, prepared for the one upsert path.

Everything here needs only a connection, so it runs wherever the reading runs: on the step's
own connection, or in a reader process of its own (`read_prepared` under
`ReadAhead(..., process=True)`), where it gets the warehouse URL and plain or picklable
arguments. Each reader returns what it found besides its rows (how many raw changes it read and
the newest of them, the keys of deleted records, the identity statistics).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Connection, select, tuple_, update

from integration_pipelines.lib import btec
from integration_pipelines.lib.canonical import (
    GradeItem,
    StudentLink,
    enrollment_rows,
    epoch,
    moodle_grade_row,
    zoho_key,
    zoho_rows,
)
from integration_pipelines.lib.lookups import ScratchTable, with_lookup
from integration_pipelines.lib.mapping import BtecThresholds, EntityMapping
from integration_pipelines.lib.students import IdentityRules, holds_student_role, link_students, slim_moodle_user
from integration_pipelines.lib.warehouse.engine import create_warehouse_engine
from integration_pipelines.lib.warehouse.raw import (
    READ_CHUNK,
    RawChange,
    deleted_entity_name,
    iter_raw_changes,
    iter_raw_payloads,
)
from integration_pipelines.lib.warehouse.schema import KEYED_TABLES
from integration_pipelines.lib.warehouse.upsert import prepare_rows
from integration_pipelines.lib.zoho import parse_zoho_datetime

Rows = Generator[dict[str, Any], None, Any]


def read_prepared(warehouse_url: str, table: str, read: Callable[..., Rows], *args: Any) -> Generator[tuple, None, Any]:
    """`read(conn, *args)` on a connection of its own to the warehouse (it only reads), each row
    it makes prepared for `table`'s upsert; returns what `read` returns. For a reader process."""
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            return (yield from prepare_rows(conn.dialect, table, read(conn, *args)))
    finally:
        engine.dispose()


class Reading:
    """Iterates a generator and keeps what it returns as `result`, as `ReadAhead` does for a
    reader that runs elsewhere."""

    def __init__(self, generator: Generator):
        self._generator, self.result = generator, None

    def __iter__(self) -> Iterator:
        self.result = yield from self._generator


# -- what the readers look up in the canonical tables ----------------------------------------


def live_rows(conn: Connection, tenant_id: str, table: str, *columns: str) -> list[tuple]:
    """The live rows of one tenant's `table`, as tuples of `columns`. For the small tables only
    (classes, units): what grows with the college is looked up a batch at a time."""
    spec = KEYED_TABLES[table].table
    stmt = select(*(spec.c[c] for c in columns)).where(spec.c.tenant_id == tenant_id, spec.c.deleted_at.is_(None))
    return [tuple(row) for row in conn.execute(stmt)]


@dataclass(frozen=True)
class StudentLookup:
    """One tenant's canonical students, found a batch at a time (`with_lookup`) on the students
    table's indexes, deleted students included: their enrollments and grades still point at them."""

    conn: Connection
    tenant_id: str

    def of_moodle_users(self, user_ids: set[int]) -> dict[int, StudentLink]:
        """Moodle user -> its student. Where a Moodle user has a live row and a tombstone (a
        Moodle-only student since linked to Zoho, say), the live row wins."""
        if not user_ids:
            return {}
        table = KEYED_TABLES["students"].table
        stmt = (
            select(table.c.student_key, table.c.moodle_user_id, table.c.zoho_id)
            .where(table.c.tenant_id == self.tenant_id, table.c.moodle_user_id.in_(user_ids))
            .order_by(table.c.deleted_at.is_(None))  # tombstones first, so live rows overwrite them
        )
        return {int(uid): StudentLink(key, zid) for key, uid, zid in self.conn.execute(stmt)}

    def moodle_users_of(self, zoho_ids: set[str]) -> dict[str, int]:
        """Zoho student -> its Moodle account, where it has one."""
        if not zoho_ids:
            return {}
        table = KEYED_TABLES["students"].table
        stmt = select(table.c.zoho_id, table.c.moodle_user_id).where(
            table.c.tenant_id == self.tenant_id, table.c.zoho_id.in_(zoho_ids)
        )
        # Unlinked students are left out here, not in SQL: a `moodle_user_id IS NOT NULL` there
        # leads SQLite's planner to scan the whole Moodle user index instead of probing zoho_id's.
        return {zid: int(uid) for zid, uid in self.conn.execute(stmt) if uid is not None}


# -- raw changes applied since a watermark ------------------------------------------------


@dataclass
class ChangesRead:
    """What reading one raw entity's changes found besides the rows made of them."""

    read: int = 0
    newest: datetime | None = None
    gone: list[str] = field(default_factory=list)


def read_changes(
    conn: Connection,
    tenant_id: str,
    source: str,
    entity: str,
    since: datetime | None,
    to_rows: Callable[[Iterable[dict]], Iterable[dict]],
    key_of: Callable[[RawChange], str | None],
) -> Rows:
    """Canonical rows for one raw entity's changes written after `since` (all when None).

    `to_rows(payloads)` turns the live payloads into rows and must consume them all; `key_of`
    gives the canonical key of a record the source deleted (collected in `gone`). Returns a
    `ChangesRead`, whose `newest` is the watermark to apply from next time.
    """
    found = ChangesRead(newest=since)
    last: RawChange | None = None

    def live_payloads() -> Iterator[dict]:
        nonlocal last
        for change in iter_raw_changes(conn, tenant_id, source, entity, since):
            found.read += 1
            last = change
            if change.deleted:
                if key := key_of(change):
                    found.gone.append(key)
            else:
                yield change.payload

    yield from to_rows(live_payloads())
    if last is not None:
        found.newest = last.updated_at  # converted once, not for each change read
    return found


def zoho_change_key(change: RawChange) -> str | None:
    return zoho_key(change.record_id)


def read_zoho_grades(
    conn: Connection, tenant_id: str, source: str, entity: str, since: datetime | None, mapping: EntityMapping
) -> Rows:
    """BTEC grades recorded in Zoho (`read_changes`), with the student's Moodle account where it
    is linked."""
    students = StudentLookup(conn, tenant_id)

    def to_rows(payloads: Iterable[dict]) -> Iterator[dict]:
        rows = zoho_rows("grades", mapping, payloads, tenant_id)
        for row, user_id in with_lookup(rows, lambda r: r["student_zoho_id"], students.moodle_users_of):
            row["moodle_user_id"] = user_id
            yield row

    return (yield from read_changes(conn, tenant_id, source, entity, since, to_rows, zoho_change_key))


def read_moodle_grades(
    conn: Connection, tenant_id: str, source: str, entity: str, since: datetime | None, thresholds: BtecThresholds
) -> Rows:
    """Moodle assignment grades (`read_changes`) from the snapshot's grade reports (entity
    `grades`) or the incremental `mod_assign_get_grades` windows (`assign_grades`)."""
    items = {}
    for payload in iter_raw_payloads(conn, tenant_id, "moodle", "grade_items"):
        item = GradeItem.from_report(payload, payload["courseid"])
        items[item.assignment_id] = item
    grades = MoodleGrades(
        tenant_id=tenant_id,
        items=items,
        students=StudentLookup(conn, tenant_id),
        unit_of_code={code: zid for zid, code in live_rows(conn, tenant_id, "units", "zoho_id", "code") if code},
        thresholds=thresholds,
    )
    if entity == "grades":
        to_rows, key_of = grades.from_report, grades.report_key
    else:
        to_rows, key_of = grades.from_assign, grades.assign_key
    return (yield from read_changes(conn, tenant_id, source, entity, since, to_rows, key_of))


# (assignment, Moodle user, raw grade or None, when graded): a Moodle grade, whichever API gave it.
_MoodleGrade = tuple[int, int, Any, Any]


@dataclass(frozen=True)
class MoodleGrades:
    """What turns Moodle assignment grades into canonical grades: the assignments' grade items,
    the students, the units by code, and the BTEC thresholds for numeric grades."""

    tenant_id: str
    items: Mapping[int, GradeItem]
    students: StudentLookup
    unit_of_code: Mapping[str, str]
    thresholds: BtecThresholds

    def from_report(self, payloads: Iterable[dict]) -> Iterator[dict]:
        """Grades from the snapshot's grade reports."""
        return self._rows(
            (int(p["iteminstance"]), int(p["userid"]), p.get("graderaw"), p.get("gradedategraded")) for p in payloads
        )

    def from_assign(self, payloads: Iterable[dict]) -> Iterator[dict]:
        """Grades from the incremental `mod_assign_get_grades` windows (a negative grade is none)."""

        def as_grade(p: dict) -> _MoodleGrade:
            grade = float(p["grade"]) if p.get("grade") is not None else None
            raw = None if grade is None or grade < 0 else grade
            return int(p["assignmentid"]), int(p["userid"]), raw, p.get("timemodified")

        return self._rows(map(as_grade, payloads))

    @staticmethod
    def report_key(change: RawChange) -> str:
        return f"moodle:{change.payload['iteminstance']}:{change.payload['userid']}"

    @staticmethod
    def assign_key(change: RawChange) -> str:
        return f"moodle:{change.payload['assignmentid']}:{change.payload['userid']}"

    def _rows(self, grades: Iterable[_MoodleGrade]) -> Iterator[dict]:
        for (assignment_id, user_id, raw, graded), student in with_lookup(
            grades, lambda g: g[1], self.students.of_moodle_users
        ):
            item = self.items.get(assignment_id)
            if item is None or student is None or raw is None:
                continue  # unknown assignment, not a student, or not graded
            yield moodle_grade_row(
                tenant_id=self.tenant_id,
                item=item,
                user_id=user_id,
                raw_grade=raw,
                graded_at=epoch(graded),
                student=student,
                unit_of_code=self.unit_of_code,
                convert=self._convert,
            )

    def _convert(self, raw: float, grade_max: float, scale: bool) -> str | None:
        return btec.grade_from_scale(raw) if scale else btec.grade_from_numeric(raw, grade_max, self.thresholds)


# -- tables recomputed whole ---------------------------------------------------------------


def read_students(
    conn: Connection, tenant_id: str, mapping: EntityMapping, rules: IdentityRules, observed_at: datetime
) -> Rows:
    """Every student, its Zoho record and Moodle account linked by the identity rules; returns
    the link statistics."""
    moodle_student_ids = (
        int(enrolment["userid"])
        for enrolment in iter_raw_payloads(conn, tenant_id, "moodle", "enrolments")
        if holds_student_role(enrolment)
    )
    rows, identity = link_students(
        conn,
        lambda: (mapping.to_row(r) for r in iter_raw_payloads(conn, tenant_id, "zoho", mapping.module)),
        (
            slim_moodle_user(u, rules.moodle_crm_field)
            for u in iter_raw_payloads(conn, tenant_id, "moodle", "users", in_id_order=True)
        ),
        moodle_student_ids,
        tenant_id=tenant_id,
        observed_at=observed_at,
        rules=rules,
        deleted_zoho=_deleted_students(conn, tenant_id, mapping),
    )
    yield from rows
    return identity


def _deleted_students(conn: Connection, tenant_id: str, mapping: EntityMapping) -> dict[str, dict]:
    """Students Zoho lists as deleted: when, and what the warehouse last saw of them, if anything."""
    deleted = {
        str(r["id"]): {"deleted_at": parse_zoho_datetime(r["deleted_time"])}
        for r in iter_raw_payloads(conn, tenant_id, "zoho", deleted_entity_name(mapping.module))
    }
    for change in iter_raw_changes(conn, tenant_id, "zoho", mapping.module, None):
        if change.deleted and change.record_id in deleted:
            deleted[change.record_id] = {**mapping.to_row(change.payload), **deleted[change.record_id]}
    return deleted


class MoodleEnrolments:
    """The Moodle enrolments of students, in a scratch table, for the enrollment merge to claim
    (`enrollment_rows`): Zoho enrollments claim theirs a batch at a time, and those left
    unclaimed become Moodle-only enrollments."""

    def __init__(self, conn: Connection, enrolments: Iterable[Mapping[str, Any]]):
        self._scratch = ScratchTable(
            conn,
            "moodle_enrolments",
            Column("course_id", BigInteger, primary_key=True),
            Column("user_id", BigInteger, primary_key=True),
            Column("suspended", Boolean, nullable=False),
            Column("claimed", Boolean, nullable=False),
        ).load(
            (int(e["courseid"]), int(e["userid"]), bool(e.get("suspended")), False)
            for e in enrolments
            if holds_student_role(e)
        )

    def claim(self, pairs: set[tuple[int, int]]) -> dict[tuple[int, int], bool]:
        if not pairs:
            return {}
        c = self._scratch.c
        stmt = (
            update(self._scratch.table)
            .where(~c.claimed, tuple_(c.course_id, c.user_id).in_(pairs))
            .values(claimed=True)
            .returning(c.course_id, c.user_id, c.suspended)
        )
        return {(course, user): bool(suspended) for course, user, suspended in self._scratch.conn.execute(stmt)}

    def unclaimed(self) -> Iterator[tuple[int, int, bool]]:
        c = self._scratch.c
        stmt = select(c.course_id, c.user_id, c.suspended).where(~c.claimed).order_by(c.course_id, c.user_id)
        for course, user, suspended in self._scratch.conn.execute(stmt.execution_options(yield_per=READ_CHUNK)):
            yield course, user, bool(suspended)
        self._scratch.drop()


def read_enrollments(conn: Connection, tenant_id: str, mapping: EntityMapping, observed_at: datetime) -> Rows:
    """Every enrollment: Zoho's, merged with the Moodle enrolments of the same students and classes."""
    students = StudentLookup(conn, tenant_id)
    yield from enrollment_rows(
        _zoho_rows_with_deletions(conn, tenant_id, mapping),
        MoodleEnrolments(conn, iter_raw_payloads(conn, tenant_id, "moodle", "enrolments")),
        tenant_id=tenant_id,
        course_of_class=dict(live_rows(conn, tenant_id, "classes", "zoho_id", "moodle_course_id")),
        moodle_users_of_students=students.moodle_users_of,
        students_of_moodle_users=students.of_moodle_users,
        observed_at=observed_at,
    )


def _zoho_rows_with_deletions(conn: Connection, tenant_id: str, mapping: EntityMapping) -> Iterator[dict]:
    """Every record of a Zoho module the warehouse has seen, mapped; deleted ones carry `deleted_at`."""
    for change in iter_raw_changes(conn, tenant_id, "zoho", mapping.module, None):
        row = mapping.to_row(change.payload)
        if change.deleted:
            row["deleted_at"] = change.updated_at
        yield row
