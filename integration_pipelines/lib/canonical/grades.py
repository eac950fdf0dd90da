"""Unit grades: BTEC grades recorded in Zoho, and the Moodle gradebook's grades with their BTEC equivalent.

Zoho's rows are its BTEC_Grades records (`zoho:<id>`), with the student's Moodle account where it
is linked. A Moodle grade is the gradebook's final grade (what the student sees, an override
included), from the grade reports (raw `grades`): the snapshot's, and the change windows' re-reads
of the users `mod_assign_get_grades` names. One row per graded item and student,
`moodle:<grade item>:<user>`, for every kind of item (assignments, manual items, quizzes); course
and category totals are no unit's grade. A grade belongs to the unit whose code is its grade
item's ID number, whatever the item's module, and to the student that account is (a live row
wins over a tombstone); grades of users who are no student are left out.

BTEC conversion (API_NOTES D) is a `CASE`: an item on a scale (recognised by its range, whatever
`scaleid` says) awards the scale's word for the grade, Refer, Pass, Merit or Distinction; a
numeric grade has an equivalent only, by the mapping's thresholds over Moodle's percentage,
`(grade - min) / (max - min)` (a boundary belongs to the higher grade).

Which items count for BTEC: every item whose ID number is a unit code. An item without one
(a participation mark, an unlinked quiz) lands with no unit.
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
    or_,
    select,
    tuple_,
    union,
)

from integration_pipelines.lib.canonical.apply import Scope, TableResult
from integration_pipelines.lib.canonical.raw_keys import Entity, RawKeys, moodle_pair_id
from integration_pipelines.lib.canonical.scratch import drop_scratch, fill, scratch_table
from integration_pipelines.lib.canonical.students import (
    account_of_student,
    accounts_of_changed_students,
    student_of_account,
)
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

# The gradebook's grades are the Moodle grades. `mod_assign_get_grades`' answers (raw
# `assign_grades`) are kept as what they are, a signal that the gradebook changed: the change
# windows re-read the gradebook of the users they name (`source_reads.read_gradebook`), since an
# assignment grade can be overridden in the gradebook and is then not the grade.
MOODLE_FEEDS = ("grades",)


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


def _grade_items(conn: Connection, tenant_id: str, pairs: Table | None) -> Table:
    """The gradebook's graded items (a few per course; with `pairs`, those of the reached pairs),
    in a scratch table keyed by grade item: its range, whether it is on a scale, and the unit it
    assesses. Course totals and category totals are no unit's grade and are left out (a course
    total is the enrollment's)."""
    items = scratch_table(
        conn,
        "grade_items",
        Column("item_id", BigInteger, primary_key=True),
        Column("assignment_id", BigInteger),
        Column("course_id", BigInteger),
        Column("unit_code", String),
        Column("grade_min", Float),
        Column("grade_max", Float),
        Column("scale", Boolean),
    )
    p, r = raw_records.c.payload, raw_records.c
    code = strip(json_text(p, "idnumber"))
    item_rows = select(
        cast(r.record_id, BigInteger),
        case((json_text(p, "itemmodule") == "assign", cast(json_text(p, "iteminstance"), BigInteger)), else_=None),
        cast(json_text(p, "courseid"), BigInteger),
        case((code == "", None), else_=code),
        func.coalesce(cast(json_text(p, "grademin"), Float), 0.0),
        cast(json_text(p, "grademax"), Float),
        # Landed by `source_reads.grade_records`, which reads a scale from the item's range
        # (a real site answers `scaleid: null` for a scale item); older raw rows have `scaleid`.
        or_(json_kind(p, "scale") == "true", json_kind(p, "scaleid").not_in(("null",))),
    ).where(
        r.tenant_id == tenant_id,
        r.source == "moodle",
        r.entity == "grade_items",
        r.deleted_at.is_(None),
        func.coalesce(json_text(p, "itemtype"), "mod").not_in(NOT_UNIT_ITEMS),
    )
    if pairs is not None:
        item_rows = item_rows.where(r.record_id.in_(select(cast(pairs.c.item_id, String)).distinct()))
    fill(conn, items, item_rows)
    return items


# Grade items that total others: never a unit's grade.
NOT_UNIT_ITEMS = ("course", "category")


def _reached_pairs(conn: Connection, tenant_id: str, keys: RawKeys, changed_since) -> Table:
    """The (grade item, user) pairs a change reaches: those of the raw grades the keys name (live
    or deleted), and every grade of the accounts whose students changed (a link made or undone)."""
    pairs = scratch_table(
        conn,
        "grade_pairs",
        Column("item_id", BigInteger, primary_key=True),
        Column("user_id", BigInteger, primary_key=True),
    )
    p, r = raw_records.c.payload, raw_records.c
    pair = (cast(json_text(p, "itemid"), BigInteger), cast(json_text(p, "userid"), BigInteger))
    source, where = keys.raw(tenant_id, "moodle", "grades", live=False)
    reached = [select(*pair).select_from(source).where(*where)]
    if changed_since is not None:
        reached.append(
            select(*pair).where(
                r.tenant_id == tenant_id,
                r.source == "moodle",
                r.entity == "grades",
                moodle_user_of().in_(accounts_of_changed_students(tenant_id, changed_since)),
            )
        )
    fill(conn, pairs, select(union(*reached).subquery()))
    return pairs


def moodle_grade_rows(tenant_id: str, items: Table, pairs: Table | None, thresholds: BtecThresholds):
    """`SELECT` of the canonical rows of Moodle grades: the gradebook's final grade of each graded
    item and student, as Moodle means it.

    The percentage is Moodle's, `(grade - min) / (max - min)`: a Merit, 3 on a 1..4 scale, is
    66.67 %. A scale grade awards the BTEC word the scale shows for it (`gradeformatted`), or,
    where the site displays something else, the scale's item at its position; a numeric grade has
    an equivalent only, by the mapping's thresholds over that percentage."""
    p, r = raw_records.c.payload, raw_records.c
    base = [r.tenant_id == tenant_id, r.source == "moodle", r.entity == "grades", r.deleted_at.is_(None)]
    if pairs is not None:
        # The raw records of the pairs a change reached, found by their keys, `<grade item>:<user>`.
        record_of = moodle_pair_id(pairs.c.item_id, pairs.c.user_id)
        base.append(r.record_id.in_(select(record_of)))
    user = cast(json_text(p, "userid"), BigInteger)
    feed = (
        select(
            cast(json_text(p, "itemid"), BigInteger).label("item_id"),
            user.label("user_id"),
            # Looked up here, where the students table is not in the FROM the lookup would correlate to.
            student_of_account(tenant_id, user).label("student_key"),
            cast(json_text(p, "graderaw"), Float).label("raw_grade"),
            strip(json_text(p, "gradeformatted")).label("formatted"),
            json_text(p, "gradedategraded").label("graded"),
            r.source_modified_at.label("observed_at"),
        )
        .where(*base)
        .subquery("feed")
    )
    g = feed.c
    span = items.c.grade_max - items.c.grade_min
    percentage = case((span > 0, round_to((g.raw_grade - items.c.grade_min) * 100.0 / span, 4)), else_=None)
    percent_exact = round_to((g.raw_grade - items.c.grade_min) * 100.0 / span, 9)
    scale_word = case(
        (g.formatted.in_(BTEC_GRADES), g.formatted),
        else_=scale_grade(g.raw_grade - items.c.grade_min + 1.0),
    )
    equivalent = case(
        (items.c.scale, scale_word),
        (span > 0, numeric_grade(percent_exact, thresholds)),
        else_=None,
    )
    graded_at = case((cast(g.graded, Float) > 0, epoch_time(g.graded)), else_=None)
    unit = (
        select(units.c.zoho_id)
        .where(units.c.tenant_id == tenant_id, units.c.code == items.c.unit_code, units.c.deleted_at.is_(None))
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(
            literal(tenant_id).label("tenant_id"),
            (literal("moodle:") + moodle_pair_id(g.item_id, g.user_id)).label("grade_key"),
            literal("moodle").label("source"),
            students.c.student_key,
            students.c.zoho_id.label("student_zoho_id"),
            g.user_id.label("moodle_user_id"),
            unit.label("unit_zoho_id"),
            items.c.course_id.label("moodle_course_id"),
            items.c.item_id.label("moodle_grade_item_id"),
            items.c.assignment_id.label("moodle_assignment_id"),
            g.raw_grade,
            items.c.grade_max,
            percentage.label("percentage"),
            case((items.c.scale, equivalent), else_=None).label("btec_grade"),
            equivalent.label("btec_equivalent"),
            graded_at.label("graded_at"),
            func.coalesce(graded_at, g.observed_at).label("source_modified_at"),
        )
        .select_from(
            feed.join(items, items.c.item_id == g.item_id).join(
                students, and_(students.c.tenant_id == tenant_id, students.c.student_key == g.student_key)
            )
        )
        .where(g.raw_grade.is_not(None))
    )


class Grades:
    name = "grades"

    def inputs(self, mapping: FieldMapping) -> list[Entity]:
        return [*ZOHO_GRADES.inputs(mapping), *(("moodle", feed) for feed in MOODLE_FEEDS)]

    def apply(self, scope: Scope) -> TableResult:
        zoho = ZOHO_GRADES.apply(scope)
        zoho_read = zoho.counts.read
        conn, tenant, keys = scope.conn, scope.tenant_id, scope.keys
        pairs = None if keys.all else _reached_pairs(conn, tenant, keys, scope.changed_since)
        items = _grade_items(conn, tenant, pairs)
        rows = moodle_grade_rows(tenant, items, pairs, scope.mapping.btec.thresholds)
        written = upsert_select(conn, "grades", rows, now=scope.now)
        owned = [grades.c.tenant_id == tenant, grades.c.source == "moodle"]
        if pairs is not None:
            # Found by the grades' index of users, then the pair.
            owned += [
                grades.c.moodle_user_id.in_(select(pairs.c.user_id)),
                tuple_(grades.c.moodle_grade_item_id, grades.c.moodle_user_id).in_(
                    select(pairs.c.item_id, pairs.c.user_id)
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
