"""Unit grades: BTEC grades recorded in Zoho, and Moodle assignment grades with their BTEC equivalent.

Zoho's rows are its BTEC_Grades records (`zoho:<id>`), with the student's Moodle account where it
is linked. A Moodle grade reaches us twice over: from the snapshot's grade reports (raw
`grades`) and from the incremental `mod_assign_get_grades` windows (raw `assign_grades`). Both
make one row per assignment and student, `moodle:<assignment>:<user>`, and the newer grade wins.
A Moodle grade belongs to the unit whose code is its grade item's ID number, and to the student
that account is (a live row wins over a tombstone); grades of users who are no student are left
out.

BTEC conversion (API_NOTES D) is a `CASE`: an item on the BTEC scale awards its grade (scale
values 1..4 are Refer, Pass, Merit, Distinction); a numeric grade has an equivalent only, by the
mapping's percentage thresholds (a boundary belongs to the higher grade).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Float,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    select,
    tuple_,
    union,
    union_all,
)

from integration_pipelines.lib.canonical.apply import Scope, TableResult
from integration_pipelines.lib.canonical.raw_keys import Entity, RawKeys
from integration_pipelines.lib.canonical.scratch import drop_scratch, fill, scratch_table
from integration_pipelines.lib.canonical.students import account_of_student, student_of_account
from integration_pipelines.lib.canonical.zoho_tables import ZohoTable, student_key
from integration_pipelines.lib.mapping import BTEC_GRADES, BtecThresholds, FieldMapping
from integration_pipelines.lib.warehouse.schema import (
    grade_outbox,
    grades,
    moodle_user_of,
    raw_records,
    students,
    units,
)
from integration_pipelines.lib.warehouse.sql import epoch_time, json_kind, json_text, round_to, strip
from integration_pipelines.lib.warehouse.upsert import SyncCounts, soft_delete_unstaged, upsert_select

MOODLE_FEEDS = ("grades", "assign_grades")


def scale_grade(raw) -> ColumnElement:
    """The BTEC grade a `gradingform_btec` scale value awards: 1 Refer ... 4 Distinction."""
    return case(*((raw == float(i), grade) for i, grade in enumerate(BTEC_GRADES, start=1)), else_=None)


def numeric_grade(percent, thresholds: BtecThresholds) -> ColumnElement:
    """The BTEC equivalent of a percentage: Refer < pass <= Pass < merit <= Merit < distinction <= Distinction."""
    return case(
        (percent >= thresholds.distinction_mark, "Distinction"),
        (percent >= thresholds.merit_mark, "Merit"),
        (percent >= thresholds.pass_mark, "Pass"),
        else_="Refer",
    )


# --- No echo (issue 18): our own write-back, read back from Zoho, is not a second grade. ---------
def not_our_echo(columns, tenant_id: str) -> ColumnElement:
    """A Zoho grade record makes a row unless it is a grade we wrote there (lib/outbound/): the
    outbox holds its Zoho id with the very grade it carries. Its Moodle original is the grade;
    once someone changes it in Zoho it is theirs again, and a row (a conflict, to the write-back)."""
    ours = select(grade_outbox.c.record_key).where(
        grade_outbox.c.tenant_id == tenant_id,
        grade_outbox.c.zoho_id == columns["zoho_id"],
        grade_outbox.c.btec_grade == columns["btec_grade"],
    )
    return ~exists(ours)


# --- end of no echo ---------------------------------------------------------------------------


ZOHO_GRADES = ZohoTable(
    "grades",
    "btec_grades",
    {
        "student_key": student_key,
        "source": literal("zoho"),
        "btec_equivalent": lambda columns, _: columns["btec_grade"],
        "moodle_user_id": lambda columns, tenant: account_of_student(tenant, columns["student_zoho_id"]),
    },
    reach=lambda: [grades.c.source == "zoho"],
    keep=not_our_echo,
)


def _grade_items(conn: Connection, tenant_id: str) -> Table:
    """The assignments' grade items (a few per course), in a scratch table keyed by assignment:
    what a grade is out of, whether it is on a scale, and the unit it assesses."""
    items = scratch_table(
        conn,
        "grade_items",
        Column("assignment_id", BigInteger, primary_key=True),
        Column("item_id", BigInteger, nullable=False),
        Column("course_id", BigInteger),
        Column("unit_code", String),
        Column("grade_max", Float),
        Column("scale", Boolean),
    )
    p, r = raw_records.c.payload, raw_records.c
    code = strip(json_text(p, "idnumber"))
    item_rows = select(
        cast(json_text(p, "iteminstance"), BigInteger),
        cast(r.record_id, BigInteger),
        cast(json_text(p, "courseid"), BigInteger),
        case((code == "", None), else_=code),
        cast(json_text(p, "grademax"), Float),
        json_kind(p, "scaleid") != "null",
    ).where(r.tenant_id == tenant_id, r.source == "moodle", r.entity == "grade_items", r.deleted_at.is_(None))
    # An assignment has one grade item; should the raw layer hold two, one of them stands.
    fill(conn, items, item_rows, ignore_repeats=True)
    return items


def _feed(tenant_id: str, keys: RawKeys, entity: str, items: Table, pairs: Table | None):
    """One Moodle feed's grades as (assignment, user, raw grade, when graded, raw record's time)."""
    p, r = raw_records.c.payload, raw_records.c
    if entity == "grades":
        assignment, raw_grade, graded = (
            json_text(p, "iteminstance"),
            json_text(p, "graderaw"),
            json_text(p, "gradedategraded"),
        )
    else:
        assignment, raw_grade, graded = (
            json_text(p, "assignmentid"),
            json_text(p, "grade"),
            json_text(p, "timemodified"),
        )
    user = json_text(p, "userid")
    stmt = select(
        cast(assignment, BigInteger).label("assignment_id"),
        cast(user, BigInteger).label("user_id"),
        cast(raw_grade, Float).label("raw_grade"),
        graded.label("graded"),
        r.source_modified_at.label("observed_at"),
    )
    base = [r.tenant_id == tenant_id, r.source == "moodle", r.entity == entity, r.deleted_at.is_(None)]
    if pairs is None:
        return stmt.where(*base)
    # The raw records of the pairs a change reached, found by their keys: a report grade is
    # `<grade item>:<user>`, an assignment grade `<assignment>:<user>`.
    if entity == "grades":
        record_of = cast(items.c.item_id, String) + ":" + cast(pairs.c.user_id, String)
        frm = pairs.join(items, items.c.assignment_id == pairs.c.assignment_id)
    else:
        record_of = cast(pairs.c.assignment_id, String) + ":" + cast(pairs.c.user_id, String)
        frm = pairs
    return stmt.where(*base, r.record_id.in_(select(record_of).select_from(frm)))


def _reached_pairs(conn: Connection, tenant_id: str, keys: RawKeys, changed_since) -> Table:
    """The (assignment, user) pairs a change reaches: those of the raw grades the keys name (live
    or deleted), and every grade of the accounts whose students changed (a link made or undone)."""
    pairs = scratch_table(
        conn,
        "grade_pairs",
        Column("assignment_id", BigInteger, primary_key=True),
        Column("user_id", BigInteger, primary_key=True),
    )
    p, r = raw_records.c.payload, raw_records.c
    changed_users = select(students.c.moodle_user_id).where(
        students.c.tenant_id == tenant_id,
        students.c.updated_at >= changed_since,
        students.c.moodle_user_id.is_not(None),
    )
    reached = []
    for entity, assignment in (("grades", "iteminstance"), ("assign_grades", "assignmentid")):
        pair = (cast(json_text(p, assignment), BigInteger), cast(json_text(p, "userid"), BigInteger))
        source, where = keys.raw(tenant_id, "moodle", entity, live=False)
        reached.append(select(*pair).select_from(source).where(*where))
        if changed_since is not None:
            reached.append(
                select(*pair).where(
                    r.tenant_id == tenant_id,
                    r.source == "moodle",
                    r.entity == entity,
                    moodle_user_of().in_(changed_users),
                )
            )
    fill(conn, pairs, select(union(*reached).subquery()))
    return pairs


def moodle_grade_rows(tenant_id: str, keys: RawKeys, items: Table, pairs: Table | None, thresholds: BtecThresholds):
    """`SELECT` of the canonical rows of Moodle grades: the newer of the two feeds' per key."""
    feeds = union_all(*(_feed(tenant_id, keys, entity, items, pairs) for entity in MOODLE_FEEDS)).subquery("feeds")
    graded_at = case((cast(feeds.c.graded, Float) > 0, epoch_time(feeds.c.graded)), else_=None)
    ranked = (
        select(
            feeds,
            graded_at.label("graded_at"),
            func.row_number()
            .over(
                partition_by=(feeds.c.assignment_id, feeds.c.user_id),
                order_by=func.coalesce(graded_at, feeds.c.observed_at).desc(),
            )
            .label("newest"),
            student_of_account(tenant_id, feeds.c.user_id).label("student_key"),
        )
        .where(feeds.c.raw_grade.is_not(None), feeds.c.raw_grade >= 0)  # a negative grade is none
        .subquery("ranked")
    )
    g = ranked.c
    scale_min = case((items.c.scale, 1.0), else_=0.0)
    span = items.c.grade_max - scale_min
    percentage = case((span > 0, round_to((g.raw_grade - scale_min) * 100.0 / span, 4)), else_=None)
    percent_of_max = round_to(g.raw_grade * 100.0 / items.c.grade_max, 9)
    equivalent = case(
        (items.c.scale, scale_grade(g.raw_grade)),
        (items.c.grade_max > 0, numeric_grade(percent_of_max, thresholds)),
        else_=None,
    )
    unit = (
        select(units.c.zoho_id)
        .where(units.c.tenant_id == tenant_id, units.c.code == items.c.unit_code, units.c.deleted_at.is_(None))
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(
            literal(tenant_id).label("tenant_id"),
            (literal("moodle:") + cast(g.assignment_id, String) + ":" + cast(g.user_id, String)).label("grade_key"),
            literal("moodle").label("source"),
            g.student_key,
            students.c.zoho_id.label("student_zoho_id"),
            g.user_id.label("moodle_user_id"),
            unit.label("unit_zoho_id"),
            items.c.course_id.label("moodle_course_id"),
            items.c.item_id.label("moodle_grade_item_id"),
            g.assignment_id.label("moodle_assignment_id"),
            g.raw_grade,
            items.c.grade_max,
            percentage.label("percentage"),
            case((items.c.scale, equivalent), else_=None).label("btec_grade"),
            equivalent.label("btec_equivalent"),
            g.graded_at,
            func.coalesce(g.graded_at, g.observed_at).label("source_modified_at"),
        )
        .select_from(
            ranked.join(items, items.c.assignment_id == g.assignment_id).join(
                students, and_(students.c.tenant_id == tenant_id, students.c.student_key == g.student_key)
            )
        )
        .where(g.newest == 1)
    )


class Grades:
    name = "grades"

    def inputs(self, mapping: FieldMapping) -> list[Entity]:
        return [*ZOHO_GRADES.inputs(mapping), *(("moodle", feed) for feed in MOODLE_FEEDS)]

    def apply(self, scope: Scope) -> TableResult:
        zoho = ZOHO_GRADES.apply(scope)
        zoho_read = zoho.counts.read
        conn, tenant, keys = scope.conn, scope.tenant_id, scope.keys
        items = _grade_items(conn, tenant)
        pairs = None if keys.all else _reached_pairs(conn, tenant, keys, scope.changed_since)
        rows = moodle_grade_rows(tenant, keys, items, pairs, scope.mapping.btec.thresholds)
        written = upsert_select(conn, "grades", rows, now=scope.now)
        owned = [grades.c.tenant_id == tenant, grades.c.source == "moodle"]
        if pairs is not None:
            # Found by the grades' index of users, then the pair.
            owned += [
                grades.c.moodle_user_id.in_(select(pairs.c.user_id)),
                tuple_(grades.c.moodle_assignment_id, grades.c.moodle_user_id).in_(
                    select(pairs.c.assignment_id, pairs.c.user_id)
                ),
            ]
        deleted = soft_delete_unstaged(conn, written, *owned, now=scope.now)
        # Scratch tables go with the transaction should it fail: dropped here only on success.
        drop_scratch(conn, items, pairs)
        moodle = SyncCounts(read=written.staged + deleted, written=written.counts, deleted=deleted)
        counts = zoho.counts
        counts.read += moodle.read
        counts.written += moodle.written
        counts.deleted += moodle.deleted
        return TableResult(counts, {"zoho_rows_read": zoho_read, "moodle_rows_read": moodle.read})


TABLE = Grades()
