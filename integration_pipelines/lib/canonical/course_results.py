"""Course results: each student's final grade in a Moodle course, and whether and when they completed it.

One row per live Moodle enrolment of a student, `moodle:<course>:<user>`, from three raw
entities: the enrolment itself (raw `enrolments`, a student role), the course total of the
student's gradebook (raw `grades` of the course's `course` item: the enrollment's final grade,
with Moodle's percentage, `(grade - min) / (max - min)`), and the course completion status (raw
`completions`). `completed` is null where the course tracks no completion (it was never asked),
false until the student completes it. `enrollment_key` is the canonical enrollment of the same
course and account (a Zoho enrollment merged with it, or the Moodle-only one).

An unenrolled student's result is soft-deleted with the enrolment; the completion itself stays in
the raw layer.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    select,
    union,
)

from integration_pipelines.lib.canonical.apply import Scope, TableResult
from integration_pipelines.lib.canonical.raw_keys import Entity, moodle_pair_id
from integration_pipelines.lib.canonical.scratch import drop_scratch, fill, scratch_table
from integration_pipelines.lib.canonical.students import enrolments_of_changed_students, student_of_account
from integration_pipelines.lib.mapping import FieldMapping
from integration_pipelines.lib.warehouse.schema import (
    course_results,
    enrollments,
    raw_records,
    students,
)
from integration_pipelines.lib.warehouse.sql import epoch_time, json_kind, json_text, round_to
from integration_pipelines.lib.warehouse.upsert import SyncCounts, soft_delete_unstaged, upsert_select

INPUTS: list[Entity] = [
    ("moodle", "enrolments"),
    ("moodle", "grades"),
    ("moodle", "grade_items"),
    ("moodle", "completions"),
]


def _raw(tenant_id: str, entity: str, alias: str):
    r = raw_records.alias(alias)
    return r, [r.c.tenant_id == tenant_id, r.c.source == "moodle", r.c.entity == entity, r.c.deleted_at.is_(None)]


def _newest(*times):
    """The latest of some times (none of them null): what the row's source time is."""
    newest = times[0]
    for t in times[1:]:
        newest = case((t > newest, t), else_=newest)
    return newest


def _reached_pairs(conn: Connection, scope: Scope) -> Table:
    """The (course, user) pairs a change reaches: those the changed raw enrolments, grades and
    completions are about, and every enrolment of the accounts whose students changed."""
    pairs = scratch_table(
        conn,
        "result_pairs",
        Column("course_id", BigInteger, primary_key=True),
        Column("user_id", BigInteger, primary_key=True),
    )
    tenant, keys = scope.tenant_id, scope.keys
    p = raw_records.c.payload
    pair = (cast(json_text(p, "courseid"), BigInteger), cast(json_text(p, "userid"), BigInteger))
    reached = []
    for entity in ("enrolments", "grades", "completions"):
        source, where = keys.raw(tenant, "moodle", entity, live=False)
        reached.append(select(*pair).select_from(source).where(*where))
    if scope.changed_since is not None:
        reached.append(enrolments_of_changed_students(tenant, scope.changed_since))
    fill(conn, pairs, select(union(*reached).subquery()))
    return pairs


def course_result_rows(tenant_id: str, pairs: Table | None):
    """`SELECT` of the canonical rows of course results (see the module's docstring)."""
    enrolment, where = _raw(tenant_id, "enrolments", "enrolment")
    ep = enrolment.c.payload
    course_id = cast(json_text(ep, "courseid"), BigInteger)
    user_id = cast(json_text(ep, "userid"), BigInteger)
    # A student role among the enrolment's roles (a JSON array of {"shortname": ...}).
    where.append(json_text(ep, "roles").like('%"student"%'))
    if pairs is not None:
        record_of = moodle_pair_id(pairs.c.course_id, pairs.c.user_id)
        where.append(enrolment.c.record_id.in_(select(record_of)))
    base = (
        select(
            course_id.label("course_id"),
            user_id.label("user_id"),
            student_of_account(tenant_id, user_id).label("student_key"),
            enrolment.c.record_id.label("record_id"),
            enrolment.c.source_modified_at.label("enrolled_time"),
        )
        .where(*where)
        .subquery("base")
    )

    # The course total item of each course (Moodle keeps one per course). Its grades and the
    # completions are then found by primary key: a grade's record id is `<item>:<user>`, a
    # completion's `<course>:<user>` like its enrolment's. Joining them on values read out of the
    # JSON instead makes SQLite scan every grade once per enrolment.
    total_item, item_where = _raw(tenant_id, "grade_items", "total_item")
    ip = total_item.c.payload
    item_course = cast(json_text(ip, "courseid"), BigInteger)
    totals_max = (
        select(
            item_course.label("course_id"),
            func.max(total_item.c.record_id).label("item_id"),
            func.max(func.coalesce(cast(json_text(ip, "grademin"), Float), 0.0)).label("grade_min"),
            func.max(cast(json_text(ip, "grademax"), Float)).label("grade_max"),
        )
        .where(*item_where, json_text(ip, "itemtype") == "course")
        .group_by(item_course)
        .subquery("totals_max")
    )
    total, total_where = _raw(tenant_id, "grades", "total")
    completion, completion_where = _raw(tenant_id, "completions", "completion")
    b, m = base.c, totals_max.c
    final_grade = cast(json_text(total.c.payload, "graderaw"), Float)
    cp = completion.c.payload
    completed = json_kind(cp, "completed")
    timecompleted = json_text(cp, "timecompleted")
    span = m.grade_max - m.grade_min
    # The lowest key of the pair's enrollments, taken over its value (`+ ""`): the lowest key as
    # such, SQLite planning without statistics would find by walking the primary key in order,
    # every enrollment of the tenant for each row, rather than look the pair up by its index.
    enrollment = (
        select(func.min(enrollments.c.enrollment_key + ""))
        .where(
            enrollments.c.tenant_id == tenant_id,
            enrollments.c.moodle_course_id == b.course_id,
            enrollments.c.moodle_user_id == b.user_id,
            enrollments.c.deleted_at.is_(None),
        )
        .scalar_subquery()
    )
    source_time = _newest(
        b.enrolled_time,
        func.coalesce(total.c.source_modified_at, b.enrolled_time),
        func.coalesce(completion.c.source_modified_at, b.enrolled_time),
    )
    return select(
        literal(tenant_id).label("tenant_id"),
        (literal("moodle:") + moodle_pair_id(b.course_id, b.user_id)).label("result_key"),
        students.c.student_key,
        students.c.zoho_id.label("student_zoho_id"),
        b.user_id.label("moodle_user_id"),
        b.course_id.label("moodle_course_id"),
        enrollment.label("enrollment_key"),
        final_grade.label("final_grade"),
        m.grade_max.label("final_grade_max"),
        case((and_(final_grade.is_not(None), span > 0), round_to((final_grade - m.grade_min) * 100.0 / span, 4))).label(
            "final_percentage"
        ),
        case((completed == "true", True), (completed == "false", False), else_=None).label("completed"),
        case(
            (and_(completed == "true", cast(timecompleted, Float) > 0), epoch_time(timecompleted)),
            else_=None,
        ).label("completed_at"),
        source_time.label("source_modified_at"),
    ).select_from(
        base.join(students, and_(students.c.tenant_id == tenant_id, students.c.student_key == b.student_key))
        .outerjoin(totals_max, m.course_id == b.course_id)
        .outerjoin(total, and_(*total_where, total.c.record_id == moodle_pair_id(m.item_id, b.user_id)))
        .outerjoin(completion, and_(*completion_where, completion.c.record_id == b.record_id))
    )


class CourseResults:
    name = "course_results"

    def inputs(self, mapping: FieldMapping) -> list[Entity]:
        return list(INPUTS)

    def apply(self, scope: Scope) -> TableResult:
        conn, tenant = scope.conn, scope.tenant_id
        pairs = None if scope.keys.all else _reached_pairs(conn, scope)
        written = upsert_select(conn, "course_results", course_result_rows(tenant, pairs), now=scope.now)
        owned = [course_results.c.tenant_id == tenant]
        if pairs is not None:
            owned.append(
                course_results.c.result_key.in_(
                    select(literal("moodle:") + moodle_pair_id(pairs.c.course_id, pairs.c.user_id))
                )
            )
        deleted = soft_delete_unstaged(conn, written, *owned, now=scope.now)
        drop_scratch(conn, pairs)
        counts = SyncCounts(read=written.staged + deleted, written=written.counts, deleted=deleted)
        return TableResult(counts)


TABLE = CourseResults()
