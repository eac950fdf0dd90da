"""Canonical tables: the college as one model, whichever system each fact came from.

Each asset reads the raw layer, never the sources, so it costs no API requests. By default it
applies only the raw records written since its last run (its watermark); `full_sync` sets
`full: true` to apply every raw record. Students and enrollments are recomputed whole every run,
because linking identities needs both sources side by side; the fingerprints keep their writes
down to what actually changed.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

from dagster import AssetExecutionContext, AssetKey, AutomationCondition, Config, MaterializeResult, asset
from pydantic import Field
from sqlalchemy import Connection, select

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.assets import raw_zoho_key, zoho_changes_key
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
from integration_pipelines.lib.source_reads import deleted_entity_name
from integration_pipelines.lib.students import holds_student_role, link_students, slim_moodle_user
from integration_pipelines.lib.warehouse.raw import iter_raw_changes, iter_raw_payloads
from integration_pipelines.lib.warehouse.schema import KEYED_TABLES
from integration_pipelines.lib.warehouse.sync_state import watermark
from integration_pipelines.lib.warehouse.upsert import Snapshot, SyncCounts, soft_delete_keys, upsert_rows
from integration_pipelines.lib.zoho import parse_zoho_datetime

CANONICAL_KINDS = {"python"}
# When the automation sensor is on, a canonical table follows its raw inputs wherever they were
# materialized from (a backfill of change windows launched from the asset graph, say); within a
# job that already ran it, nothing fires twice.
CANONICAL_AUTOMATION = AutomationCondition.eager()


class CanonicalConfig(Config):
    full: bool = Field(
        False,
        description="Apply every raw record, not only those written since the last run. full_sync sets it.",
    )


def _zoho_deps(entity: str) -> list[AssetKey]:
    return [raw_zoho_key(entity), zoho_changes_key(entity)]


def _apply_changes(
    conn: Connection,
    warehouse: WarehouseResource,
    table: str,
    stream: str,
    source: str,
    entity: str,
    full: bool,
    to_rows,
    key_of,
) -> SyncCounts:
    """Apply one raw entity's changes to a canonical table and move the stream's watermark.

    `to_rows(payloads)` turns live raw payloads into canonical rows; `key_of(change)` gives the
    canonical key of a raw record that was deleted.
    """
    tenant = warehouse.tenant
    counts = SyncCounts()
    since = None if full else watermark(conn, tenant, stream)
    newest = since
    gone: list[str] = []

    def live_payloads() -> Iterator[dict]:
        nonlocal newest
        for change in iter_raw_changes(conn, tenant, source, entity, since):
            counts.read += 1
            newest = change.updated_at
            if change.deleted:
                gone.append(key_of(change))
            else:
                yield change.payload

    counts.written = upsert_rows(conn, table, to_rows(live_payloads()))
    counts.deleted = soft_delete_keys(conn, table, {"tenant_id": tenant}, [k for k in gone if k])
    warehouse.record_sync(conn, stream, counts.read, watermark=newest)
    return counts


def _zoho_table_asset(table: str, entity: str, description: str):
    """A canonical table filled one to one from a Zoho module."""

    @asset(
        name=table,
        group_name="canonical",
        kinds=CANONICAL_KINDS,
        automation_condition=CANONICAL_AUTOMATION,
        deps=_zoho_deps(entity),
        description=description,
    )
    def _table(context: AssetExecutionContext, config: CanonicalConfig, warehouse: WarehouseResource):
        mapping = FIELD_MAPPING.zoho.entities[entity]
        with warehouse.begin() as conn:
            counts = _apply_changes(
                conn,
                warehouse,
                table,
                f"canonical.{table}",
                "zoho",
                mapping.module,
                config.full,
                to_rows=lambda payloads: zoho_rows(table, mapping, payloads, warehouse.tenant),
                key_of=lambda change: zoho_key(change.record_id),
            )
        return MaterializeResult(metadata={**counts.as_metadata(), "requests": 0, "full": config.full})

    return _table


programs = _zoho_table_asset("programs", "programs", "Programmes the college offers (Zoho).")
units = _zoho_table_asset("units", "units", "BTEC units of each programme, with their credits (Zoho).")
classes = _zoho_table_asset(
    "classes", "classes", "Taught groups of a programme, each linked to its Moodle course (Zoho)."
)
registrations = _zoho_table_asset(
    "registrations", "registrations", "Students registered on units, for certification (Zoho)."
)
payments = _zoho_table_asset(
    "payments", "payments", "Fees and instalments each student owes or paid, with method and status (Zoho)."
)


def _live(conn: Connection, table: str, *columns: str):
    spec = KEYED_TABLES[table].table
    stmt = select(*(spec.c[c] for c in columns)).where(spec.c.deleted_at.is_(None))
    return conn.execute(stmt).all()


@asset(
    group_name="canonical",
    kinds=CANONICAL_KINDS,
    automation_condition=CANONICAL_AUTOMATION,
    deps=[*_zoho_deps("students"), "raw_moodle_users", "raw_moodle_enrolments"],
)
def students(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    """One row per student, linking the Zoho admissions record and the Moodle account.

    Students known to only one system are kept and counted as unmatched; students no source
    holds any more are soft-deleted.
    """
    tenant = warehouse.tenant
    mapping = FIELD_MAPPING.zoho.entities["students"]
    with warehouse.begin() as conn:
        moodle_student_ids = {
            int(enrolment["userid"])
            for enrolment in iter_raw_payloads(conn, tenant, "moodle", "enrolments")
            if holds_student_role(enrolment)
        }
        rows, identity = link_students(
            lambda: (mapping.to_row(r) for r in iter_raw_payloads(conn, tenant, "zoho", mapping.module)),
            (
                slim_moodle_user(u, FIELD_MAPPING.identity.moodle_crm_field)
                for u in iter_raw_payloads(conn, tenant, "moodle", "users", in_id_order=True)
            ),
            moodle_student_ids,
            tenant_id=tenant,
            observed_at=datetime.now(UTC),
            rules=FIELD_MAPPING.identity,
            deleted_zoho=_deleted_students(conn, tenant, mapping),
        )
        counts = _write_whole_table(conn, warehouse, "students", rows)
    unmatched_share = identity.unmatched / counts.read if counts.read else 0.0
    return MaterializeResult(
        metadata={
            **counts.as_metadata(),
            "requests": 0,
            **identity.as_metadata(),
            "unmatched_share": round(unmatched_share, 4),
        }
    )


def _write_whole_table(conn: Connection, warehouse: WarehouseResource, table: str, rows) -> SyncCounts:
    """Write a table recomputed whole: its rows, then the soft deletion of the rows it no longer has."""
    snapshot = Snapshot(conn, table, {"tenant_id": warehouse.tenant})
    counts = SyncCounts(written=upsert_rows(conn, table, rows, snapshot=snapshot))
    counts.read, counts.deleted = snapshot.seen, snapshot.delete_missing()
    warehouse.record_sync(conn, f"canonical.{table}", counts.read)
    return counts


def _deleted_students(conn: Connection, tenant: str, mapping) -> dict[str, dict]:
    """Students Zoho lists as deleted: when, and what the warehouse last saw of them, if anything."""
    deleted = {
        str(r["id"]): {"deleted_at": parse_zoho_datetime(r["deleted_time"])}
        for r in iter_raw_payloads(conn, tenant, "zoho", deleted_entity_name(mapping.module))
    }
    for change in iter_raw_changes(conn, tenant, "zoho", mapping.module, None):
        if change.deleted and change.record_id in deleted:
            deleted[change.record_id] = {**mapping.to_row(change.payload), **deleted[change.record_id]}
    return deleted


def _zoho_rows_with_deletions(conn: Connection, tenant: str, mapping) -> Iterator[dict]:
    """Every record of a Zoho module the warehouse has seen, mapped; deleted ones carry `deleted_at`."""
    for change in iter_raw_changes(conn, tenant, "zoho", mapping.module, None):
        row = mapping.to_row(change.payload)
        if change.deleted:
            row["deleted_at"] = change.updated_at
        yield row


def _student_links(conn: Connection) -> dict[int, StudentLink]:
    """Moodle user -> student, deleted students included: their enrollments and grades still point at them."""
    table = KEYED_TABLES["students"].table
    rows = conn.execute(select(table.c.student_key, table.c.moodle_user_id, table.c.zoho_id)).all()
    return {int(uid): StudentLink(key, zid) for key, uid, zid in rows if uid is not None}


@asset(
    group_name="canonical",
    kinds=CANONICAL_KINDS,
    automation_condition=CANONICAL_AUTOMATION,
    deps=[*_zoho_deps("enrollments"), "raw_moodle_enrolments", "students", "classes"],
)
def enrollments(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    """Students in classes: what admissions recorded, merged with who Moodle has enrolled.

    A withdrawal in Zoho wins; a suspension on either side shows as suspended. Moodle enrolments
    without a Zoho enrollment are kept as Moodle-only rows.
    """
    tenant = warehouse.tenant
    mapping = FIELD_MAPPING.zoho.entities["enrollments"]
    with warehouse.begin() as conn:
        course_of_class = dict(_live(conn, "classes", "zoho_id", "moodle_course_id"))
        links = _student_links(conn)
        rows = enrollment_rows(
            _zoho_rows_with_deletions(conn, tenant, mapping),
            iter_raw_payloads(conn, tenant, "moodle", "enrolments"),
            tenant_id=tenant,
            course_of_class=course_of_class,
            class_of_course={course: zid for zid, course in course_of_class.items() if course is not None},
            moodle_user_of_student={link.zoho_id: uid for uid, link in links.items() if link.zoho_id},
            student_of_moodle_user=links,
            observed_at=datetime.now(UTC),
        )
        counts = _write_whole_table(conn, warehouse, "enrollments", rows)
    return MaterializeResult(metadata={**counts.as_metadata(), "requests": 0})


@asset(
    group_name="canonical",
    kinds=CANONICAL_KINDS,
    automation_condition=CANONICAL_AUTOMATION,
    deps=[
        *_zoho_deps("btec_grades"),
        "raw_moodle_grades",
        "raw_moodle_grade_items",
        "moodle_grade_changes",
        "students",
        "units",
    ],
    # The largest canonical table: where steps run side by side, it starts before the others.
    op_tags={"dagster/priority": "1"},
)
def grades(context: AssetExecutionContext, config: CanonicalConfig, warehouse: WarehouseResource):
    """Unit grades: BTEC grades recorded in Zoho, and Moodle assignment grades with their BTEC equivalent.

    Moodle grades arrive twice over, from the snapshot's grade reports and from the incremental
    `mod_assign_get_grades` windows; both land under one key per assignment and student, and the
    newer grade wins.
    """
    tenant = warehouse.tenant
    thresholds = FIELD_MAPPING.btec.thresholds
    mapping = FIELD_MAPPING.zoho.entities["btec_grades"]

    def convert(raw: float, grade_max: float, scale: bool) -> str | None:
        return btec.grade_from_scale(raw) if scale else btec.grade_from_numeric(raw, grade_max, thresholds)

    with warehouse.begin() as conn:
        links = _student_links(conn)
        moodle_user_of_student = {link.zoho_id: uid for uid, link in links.items() if link.zoho_id}
        unit_of_code = {code: zid for zid, code in _live(conn, "units", "zoho_id", "code") if code}
        items = {}
        for item in iter_raw_payloads(conn, tenant, "moodle", "grade_items"):
            grade_item = GradeItem.from_report(item, item["courseid"])
            items[grade_item.assignment_id] = grade_item

        def moodle_row(item: GradeItem | None, user_id: int, raw, graded_at):
            if item is None or user_id not in links or raw is None:
                return None  # unknown assignment, not a student, or not graded
            return moodle_grade_row(
                tenant_id=tenant,
                item=item,
                user_id=user_id,
                raw_grade=raw,
                graded_at=graded_at,
                student=links[user_id],
                unit_of_code=unit_of_code,
                convert=convert,
            )

        def from_report(payloads):
            for p in payloads:
                item = items.get(int(p["iteminstance"]))
                row = moodle_row(item, int(p["userid"]), p.get("graderaw"), epoch(p.get("gradedategraded")))
                if row:
                    yield row

        def from_assign(payloads):
            for p in payloads:
                grade = float(p["grade"]) if p.get("grade") is not None else None
                row = moodle_row(
                    items.get(int(p["assignmentid"])),
                    int(p["userid"]),
                    None if grade is None or grade < 0 else grade,
                    epoch(p.get("timemodified")),
                )
                if row:
                    yield row

        feeds = {
            "zoho": _apply_changes(
                conn,
                warehouse,
                "grades",
                "canonical.grades.zoho",
                "zoho",
                mapping.module,
                config.full,
                to_rows=lambda payloads: (
                    row | {"moodle_user_id": moodle_user_of_student.get(row["student_zoho_id"])}
                    for row in zoho_rows("grades", mapping, payloads, tenant)
                ),
                key_of=lambda change: zoho_key(change.record_id),
            ),
            "moodle_report": _apply_changes(
                conn,
                warehouse,
                "grades",
                "canonical.grades.moodle_report",
                "moodle",
                "grades",
                config.full,
                to_rows=from_report,
                key_of=lambda c: f"moodle:{c.payload['iteminstance']}:{c.payload['userid']}",
            ),
            "moodle_assign": _apply_changes(
                conn,
                warehouse,
                "grades",
                "canonical.grades.moodle_assign",
                "moodle",
                "assign_grades",
                config.full,
                to_rows=from_assign,
                key_of=lambda c: f"moodle:{c.payload['assignmentid']}:{c.payload['userid']}",
            ),
        }
    totals = {
        k: sum(f.as_metadata()[k] for f in feeds.values())
        for k in ("rows_read", "inserted", "updated", "unchanged", "deleted")
    }
    return MaterializeResult(
        metadata={
            **totals,
            "requests": 0,
            "full": config.full,
            **{f"{feed}_rows_read": counts.read for feed, counts in feeds.items()},
        }
    )


CANONICAL_ASSETS = [programs, units, classes, students, enrollments, registrations, payments, grades]
# The assets that apply raw changes since a watermark, and so take CanonicalConfig's `full` flag.
WATERMARKED_ASSETS = [programs, units, classes, registrations, payments, grades]
