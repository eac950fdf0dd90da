"""Canonical tables: the college as one model, whichever system each fact came from.

Each asset reads the raw layer, never the sources, so it costs no API requests. By default it
applies only the raw records written since its last run (its watermark); `full_sync` sets
`full: true` to apply every raw record. Students and enrollments are recomputed whole every run,
because linking identities needs both sources side by side; the fingerprints keep their writes
down to what actually changed.
"""

from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from functools import partial

from dagster import AssetExecutionContext, AssetKey, AutomationCondition, Config, MaterializeResult, asset
from pydantic import Field
from sqlalchemy import Connection

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.assets import raw_zoho_key, zoho_changes_key
from integration_pipelines.lib.canonical import zoho_rows
from integration_pipelines.lib.canonical_reads import (
    ChangesRead,
    Reading,
    read_changes,
    read_enrollments,
    read_moodle_grades,
    read_prepared,
    read_students,
    read_zoho_grades,
    zoho_change_key,
)
from integration_pipelines.lib.read_ahead import ReadAhead
from integration_pipelines.lib.warehouse.raw import count_raw_changes
from integration_pipelines.lib.warehouse.sync_state import watermark
from integration_pipelines.lib.warehouse.upsert import (
    Snapshot,
    SyncCounts,
    prepare_rows,
    soft_delete_keys,
    upsert_prepared,
)

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


# Below this many raw records a reader process's start (about a second: a new interpreter and
# its imports) costs more than moving the work off the writing process saves.
READER_PROCESS_MIN_RECORDS = 50_000


def _reading(
    conn: Connection, warehouse: WarehouseResource, table: str, sources: list[tuple], read, *args
) -> AbstractContextManager[Reading | ReadAhead]:
    """The rows `read(conn, *args)` makes for `table` of the raw `sources` ((source, entity,
    since) reads), prepared for its upsert, with what `read` returns as `.result` once they are
    written.

    A large read on SQLite runs in a process of its own, on its own connection: a run's steps
    take turns in one process there, and a reader process puts the raw decoding and the
    transforms on the second core while this one writes. Otherwise (a change window of a few
    rows, or PostgreSQL, whose steps already run side by side in processes of their own) it runs
    here, on the step's connection.
    """
    if warehouse.backend == "sqlite":
        tenant = warehouse.tenant
        records = sum(count_raw_changes(conn, tenant, source, entity, since) for source, entity, since in sources)
        if records >= READER_PROCESS_MIN_RECORDS:
            return ReadAhead(read_prepared, warehouse.resolved_url, table, read, *args, process=True)
    return nullcontext(Reading(prepare_rows(conn.dialect, table, read(conn, *args))))


def _apply_changes(
    conn: Connection,
    warehouse: WarehouseResource,
    table: str,
    stream: str,
    source: str,
    entity: str,
    full: bool,
    read=read_changes,
    *args,
) -> SyncCounts:
    """Apply one raw entity's changes to a canonical table and move the stream's watermark.

    `read(conn, tenant, source, entity, since, *args)` makes the rows of the raw changes written
    after `since` and returns a `ChangesRead` (`read_changes`, or a reader built on it); it and
    `args` must pickle, since a full read may run in a reader process.
    """
    tenant = warehouse.tenant
    since = None if full else watermark(conn, tenant, stream)
    changes = (read, tenant, source, entity, since, *args)
    with _reading(conn, warehouse, table, [(source, entity, since)], *changes) as rows:
        written = upsert_prepared(conn, table, rows)
    found: ChangesRead = rows.result
    deleted = soft_delete_keys(conn, table, {"tenant_id": tenant}, found.gone)
    warehouse.record_sync(conn, stream, found.read, watermark=found.newest)
    return SyncCounts(read=found.read, written=written, deleted=deleted)


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
                read_changes,
                partial(zoho_rows, table, mapping, tenant_id=warehouse.tenant),
                zoho_change_key,
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
    mapping = FIELD_MAPPING.zoho.entities["students"]
    with warehouse.begin() as conn:
        counts, identity = _write_whole_table(
            conn,
            warehouse,
            "students",
            [("zoho", mapping.module), ("moodle", "users")],
            read_students,
            warehouse.tenant,
            mapping,
            FIELD_MAPPING.identity,
            datetime.now(UTC),
        )
    unmatched_share = identity.unmatched / counts.read if counts.read else 0.0
    return MaterializeResult(
        metadata={
            **counts.as_metadata(),
            "requests": 0,
            **identity.as_metadata(),
            "unmatched_share": round(unmatched_share, 4),
        }
    )


def _write_whole_table(
    conn: Connection, warehouse: WarehouseResource, table: str, sources: list[tuple[str, str]], read, *args
):
    """Write a table recomputed whole, every run, from what `read(conn, *args)` makes of the raw
    `sources` ((source, entity) pairs), then soft-delete the rows it no longer has. Returns the
    counts and what `read` returned."""
    snapshot = Snapshot(conn, table, {"tenant_id": warehouse.tenant})
    whole_sources = [(source, entity, None) for source, entity in sources]
    with _reading(conn, warehouse, table, whole_sources, read, *args) as rows:
        counts = SyncCounts(written=upsert_prepared(conn, table, rows, snapshot=snapshot))
    counts.read, counts.deleted = snapshot.seen, snapshot.delete_missing()
    warehouse.record_sync(conn, f"canonical.{table}", counts.read)
    return counts, rows.result


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
    mapping = FIELD_MAPPING.zoho.entities["enrollments"]
    with warehouse.begin() as conn:
        counts, _ = _write_whole_table(
            conn,
            warehouse,
            "enrollments",
            [("zoho", mapping.module), ("moodle", "enrolments")],
            read_enrollments,
            warehouse.tenant,
            mapping,
            datetime.now(UTC),
        )
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
    mapping = FIELD_MAPPING.zoho.entities["btec_grades"]
    thresholds = FIELD_MAPPING.btec.thresholds
    with warehouse.begin() as conn:

        def apply(feed: str, source: str, entity: str, read, *args) -> SyncCounts:
            stream = f"canonical.grades.{feed}"
            return _apply_changes(conn, warehouse, "grades", stream, source, entity, config.full, read, *args)

        feeds = {
            "zoho": apply("zoho", "zoho", mapping.module, read_zoho_grades, mapping),
            "moodle_report": apply("moodle_report", "moodle", "grades", read_moodle_grades, thresholds),
            "moodle_assign": apply("moodle_assign", "moodle", "assign_grades", read_moodle_grades, thresholds),
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
