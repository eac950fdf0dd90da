"""Enrollments: students in classes, what admissions recorded merged with who Moodle has enrolled.

The merge is an outer join on (Moodle course, Moodle user): a Zoho enrollment's class names its
course, and its student its Moodle account. A Zoho enrollment absorbs the Moodle enrolment of
its student in its class's course, even when Zoho has deleted it (its row is a tombstone): the
Moodle enrolment stood for it and must not reappear on its own. Where two Zoho enrollments place
the same student in the same course, the lower Zoho id absorbs it. Moodle enrolments of students
(a student role) that no Zoho enrollment absorbs are kept as Moodle-only rows,
`moodle:<course>:<user>`.

Status: a withdrawal in Zoho wins; then a suspended enrolment on either side; else active. (A
suspended Moodle *account* is the student's state, not the enrollment's.)

Applied by key, it recomputes the (course, user) pairs a change reaches: those of the changed
Moodle enrolments, of the changed Zoho enrollments (before and after), and of the students whose
rows changed (a link made changes which Moodle enrolment their enrollments absorb).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    String,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    tuple_,
    union,
    update,
)

from integration_pipelines.lib.canonical.apply import Scope, TableResult
from integration_pipelines.lib.canonical.raw_keys import Entity, moodle_pair_id
from integration_pipelines.lib.canonical.scratch import drop_scratch, fill, present, scratch_table
from integration_pipelines.lib.canonical.students import (
    account_of_student,
    enrolments_of_changed_students,
    holds_student_role,
    student_of_account,
)
from integration_pipelines.lib.canonical.zoho_records import map_record, raise_for_problem, zoho_key
from integration_pipelines.lib.mapping import EntityMapping, FieldMapping
from integration_pipelines.lib.warehouse.schema import (
    classes,
    enrollments,
    is_moodle_enrolment,
    moodle_user_of,
    raw_records,
    students,
)
from integration_pipelines.lib.warehouse.sql import json_text
from integration_pipelines.lib.warehouse.types import UTCDateTime
from integration_pipelines.lib.warehouse.upsert import SyncCounts, soft_delete_unstaged, upsert_select


def _course_of_class(tenant_id: str, class_zoho_id):
    return (
        select(classes.c.moodle_course_id)
        .where(
            classes.c.tenant_id == tenant_id,
            classes.c.class_key == zoho_key(class_zoho_id),
            classes.c.deleted_at.is_(None),
        )
        .scalar_subquery()
    )


class Enrollments:
    name = "enrollments"

    def inputs(self, mapping: FieldMapping) -> list[Entity]:
        return [("zoho", mapping.zoho.entities["enrollments"].module), ("moodle", "enrolments")]

    def apply(self, scope: Scope) -> TableResult:
        conn, tenant, keys = scope.conn, scope.tenant_id, scope.keys
        mapping = scope.mapping.zoho.entities["enrollments"]
        placed = self._place_zoho(scope, mapping)
        pairs = None if keys.all else self._reached_pairs(scope, mapping, placed)
        moodle = self._moodle_enrolments(scope, pairs)
        written = upsert_select(conn, "enrollments", self._rows(scope, placed, moodle), now=scope.now)
        raise_for_problem(conn, tenant, mapping, written)
        tenant_rows = enrollments.c.tenant_id == tenant
        if pairs is None:
            deleted = soft_delete_unstaged(conn, written, tenant_rows, now=scope.now)
        else:
            # The rows the keys reach, in two statements, each through an index: the Zoho
            # enrollments by key, the Moodle-only rows by (course, user). (One statement with an
            # OR of the two left PostgreSQL scanning every enrollment for each reached one.)
            e = enrollments.c
            reached = [
                e.enrollment_key.in_(select(zoho_key(placed.c.zoho_id))),
                and_(
                    e.zoho_id.is_(None),
                    tuple_(e.moodle_course_id, e.moodle_user_id).in_(select(pairs.c.course_id, pairs.c.user_id)),
                ),
            ]
            deleted = sum(soft_delete_unstaged(conn, written, tenant_rows, part, now=scope.now) for part in reached)
        drop_scratch(conn, placed, moodle, pairs)
        return TableResult(SyncCounts(read=written.staged + deleted, written=written.counts, deleted=deleted))

    def _place_zoho(self, scope: Scope, mapping: EntityMapping) -> Table:
        """The Zoho enrollments the keys cover (live and deleted), mapped, each placed in its
        class's Moodle course and its student's Moodle account."""
        conn, tenant, keys = scope.conn, scope.tenant_id, scope.keys
        placed = scratch_table(
            conn,
            "zoho_enrollments",
            Column("zoho_id", String(32), primary_key=True),
            Column("student_zoho_id", String(32)),
            Column("class_zoho_id", String(32)),
            Column("status", String(64)),
            Column("enrolled_on", Date),
            Column("source_modified_at", UTCDateTime),
            Column("deleted_at", UTCDateTime),
            Column("problem", String(64)),
            Column("course_id", BigInteger),
            Column("user_id", BigInteger),
            index=("course_id", "user_id"),
        )
        r = raw_records.c
        source, where = keys.raw(tenant, "zoho", mapping.module, live=False)
        self._add_placed(conn, tenant, placed, self._placed_rows(tenant, mapping).select_from(source).where(*where))
        if not keys.all and scope.changed_since is not None:
            # The enrollments of students whose rows changed: a link made or undone moves them.
            changed = select(zoho_key(students.c.zoho_id)).where(
                students.c.tenant_id == tenant,
                students.c.updated_at >= scope.changed_since,
                students.c.zoho_id.is_not(None),
            )
            e = enrollments.c
            of_changed = select(e.zoho_id).where(
                e.tenant_id == tenant, e.zoho_id.is_not(None), e.student_key.in_(changed)
            )
            rows = self._placed_rows(tenant, mapping).where(
                r.tenant_id == tenant, r.source == "zoho", r.entity == mapping.module, r.record_id.in_(of_changed)
            )
            self._add_placed(conn, tenant, placed, rows)
        return placed

    def _reached_pairs(self, scope: Scope, mapping: EntityMapping, placed: Table) -> Table:
        """The (course, user) pairs the keys reach, and the Zoho enrollments placed in them."""
        conn, tenant, keys = scope.conn, scope.tenant_id, scope.keys
        pairs = scratch_table(
            conn,
            "enrollment_pairs",
            Column("course_id", BigInteger, primary_key=True),
            Column("user_id", BigInteger, primary_key=True),
        )
        p, e = raw_records.c.payload, enrollments.c
        reached = [
            select(placed.c.course_id, placed.c.user_id).where(
                placed.c.course_id.is_not(None), placed.c.user_id.is_not(None)
            ),
            # Where the changed Zoho enrollments stood before.
            select(e.moodle_course_id, e.moodle_user_id).where(
                e.tenant_id == tenant,
                e.enrollment_key.in_(select(zoho_key(placed.c.zoho_id))),
                present(e.moodle_course_id),
                present(e.moodle_user_id),
            ),
        ]
        if not keys.all:
            source, where = keys.raw(tenant, "moodle", "enrolments", live=False)
            reached.append(
                select(cast(json_text(p, "courseid"), BigInteger), moodle_user_of()).select_from(source).where(*where)
            )
        if not keys.all and scope.changed_since is not None:
            reached.append(enrolments_of_changed_students(tenant, scope.changed_since))
        fill(conn, pairs, select(union(*reached).subquery()))
        # The other Zoho enrollments placed in those pairs compete for their Moodle enrolments.
        others = select(e.zoho_id).where(
            e.tenant_id == tenant,
            e.zoho_id.is_not(None),
            tuple_(e.moodle_course_id, e.moodle_user_id).in_(select(pairs.c.course_id, pairs.c.user_id)),
        )
        r = raw_records.c
        rows = self._placed_rows(tenant, mapping).where(
            r.tenant_id == tenant, r.source == "zoho", r.entity == mapping.module, r.record_id.in_(others)
        )
        self._add_placed(conn, tenant, placed, rows)
        return pairs

    @staticmethod
    def _placed_rows(tenant: str, mapping: EntityMapping):
        """Zoho enrollments (live and deleted) mapped and placed; select from the raw records."""
        r = raw_records.c
        mapped = map_record(mapping)
        student, klass = mapped.columns["student_zoho_id"], mapped.columns["class_zoho_id"]
        return select(
            r.record_id,
            student,
            klass,
            mapped.columns.get("status", null()),
            mapped.columns.get("enrolled_on", null()),
            mapped.modified_at,
            r.deleted_at,
            case((r.deleted_at.is_(None), mapped.problem), else_=None),
        )

    @staticmethod
    def _add_placed(conn: Connection, tenant: str, placed: Table, rows) -> None:
        """Add mapped Zoho enrollments, then place them. (Placed apart from the mapping, so that
        each lookup is an index probe on a plain value, not on an expression over the payload.)"""
        fill(conn, placed, rows, ignore_repeats=True)
        z = placed.c
        conn.execute(
            update(placed)
            .where(z.course_id.is_(None), z.user_id.is_(None))
            .values(
                course_id=_course_of_class(tenant, z.class_zoho_id),
                user_id=account_of_student(tenant, z.student_zoho_id),
            )
        )

    def _moodle_enrolments(self, scope: Scope, pairs: Table | None) -> Table:
        """The live Moodle enrolments with a student role (all, or those of the reached pairs)."""
        conn, tenant = scope.conn, scope.tenant_id
        moodle = scratch_table(
            conn,
            "moodle_enrolments",
            Column("course_id", BigInteger, primary_key=True),
            Column("user_id", BigInteger, primary_key=True),
            Column("suspended", Boolean),
            Column("source_modified_at", UTCDateTime),
        )
        r = raw_records.c
        p = r.payload
        rows = select(
            cast(json_text(p, "courseid"), BigInteger),
            moodle_user_of(),
            json_text(p, "suspended").in_(("true", "1")),
            r.source_modified_at,
        ).where(r.tenant_id == tenant, is_moodle_enrolment(), r.deleted_at.is_(None), holds_student_role(p))
        if pairs is not None:
            # The pairs' enrolments by their keys (`<course>:<user>`), through the primary key.
            record_of = moodle_pair_id(pairs.c.course_id, pairs.c.user_id)
            rows = rows.where(r.record_id.in_(select(record_of)))
        fill(conn, moodle, rows)
        return moodle

    def _rows(self, scope: Scope, placed: Table, moodle: Table):
        tenant = scope.tenant_id
        z, m = placed.c, moodle.c
        rival = placed.alias("rival")
        absorbs = ~(
            select(literal(1))
            .where(rival.c.course_id == z.course_id, rival.c.user_id == z.user_id, rival.c.zoho_id < z.zoho_id)
            .exists()
        )
        moodle_suspended = and_(absorbs, m.suspended.is_(True))
        status = case(
            (z.status == "withdrawn", "withdrawn"),
            (or_(z.status == "suspended", moodle_suspended), "suspended"),
            else_="active",
        )
        zoho_rows = select(
            literal(tenant).label("tenant_id"),
            zoho_key(z.zoho_id).label("enrollment_key"),
            z.zoho_id,
            zoho_key(z.student_zoho_id).label("student_key"),
            z.student_zoho_id,
            z.user_id.label("moodle_user_id"),
            zoho_key(z.class_zoho_id).label("class_key"),
            z.class_zoho_id,
            z.course_id.label("moodle_course_id"),
            status.label("status"),
            z.enrolled_on,
            z.source_modified_at,
            z.deleted_at,
            z.problem,
        ).select_from(placed.outerjoin(moodle, and_(m.course_id == z.course_id, m.user_id == z.user_id)))
        absorbed = select(literal(1)).where(z.course_id == m.course_id, z.user_id == m.user_id).exists()
        student_key = student_of_account(tenant, m.user_id)
        klass = (
            select(classes.c.zoho_id)
            .where(
                classes.c.tenant_id == tenant, classes.c.moodle_course_id == m.course_id, classes.c.deleted_at.is_(None)
            )
            .order_by(classes.c.zoho_id)
            .limit(1)
            .scalar_subquery()
        )
        student = students.alias("student")
        moodle_rows = (
            select(
                literal(tenant),
                literal("moodle:") + moodle_pair_id(m.course_id, m.user_id),
                null(),
                func.coalesce(student.c.student_key, literal("moodle:") + cast(m.user_id, String)),
                student.c.zoho_id,
                m.user_id,
                zoho_key(klass),
                klass,
                m.course_id,
                case((m.suspended.is_(True), "suspended"), else_="active"),
                null(),
                m.source_modified_at,
                null(),
                null(),
            )
            .select_from(
                moodle.outerjoin(student, and_(student.c.tenant_id == tenant, student.c.student_key == student_key))
            )
            .where(~absorbed)
        )
        # With keys, `placed` holds every Zoho enrollment placed in a reached pair, so a Moodle
        # enrolment of a reached pair sees whatever absorbs it.
        return zoho_rows.union_all(moodle_rows)


TABLE = Enrollments()
