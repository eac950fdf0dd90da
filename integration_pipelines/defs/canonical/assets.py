"""Canonical tables: the college as one model, whichever system each fact came from.

Each asset applies the raw layer to one canonical table (the SQL lives in `lib/canonical/`), so it
costs no API requests. By default it applies only the raw records written since its last run
(its watermark), touching just the rows they reach; `full_sync` sets `full: true` to apply every
raw record and reconcile the whole table.
"""

from datetime import UTC, datetime

from dagster import AssetExecutionContext, AssetKey, AutomationCondition, Config, MaterializeResult, asset
from pydantic import Field

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.assets import raw_zoho_key, zoho_changes_key
from integration_pipelines.lib.canonical.apply import apply_table
from integration_pipelines.lib.warehouse.sync_runs import SYNC_JOBS, record_table_counts

CANONICAL_KINDS = {"sql"}
# When the automation sensor is on, a canonical table follows its raw inputs wherever they were
# materialized from (a backfill of change windows launched from the asset graph, say); within a
# job that already ran it, nothing fires twice.
CANONICAL_AUTOMATION = AutomationCondition.eager()


class CanonicalConfig(Config):
    full: bool = Field(
        False,
        description="Apply every raw record, not only those written since the last run. full_sync sets it.",
    )


def run_started_at(context: AssetExecutionContext) -> datetime:
    """When the run began (its record's start time), for the sync history."""
    record = context.instance.get_run_record_by_id(context.run.run_id)
    started = record.start_time if record is not None else None
    return datetime.fromtimestamp(started, UTC) if started else datetime.now(UTC)


def _zoho_deps(entity: str) -> list[AssetKey]:
    return [raw_zoho_key(entity), zoho_changes_key(entity)]


def canonical_asset(table: str, description: str, deps: list, **kwargs):
    """The asset of one canonical table: applies its raw inputs, reports what it read and wrote."""

    @asset(
        name=table,
        group_name="canonical",
        kinds=CANONICAL_KINDS,
        automation_condition=CANONICAL_AUTOMATION,
        deps=deps,
        description=description,
        **kwargs,
    )
    def _table(context: AssetExecutionContext, config: CanonicalConfig, warehouse: WarehouseResource):
        with warehouse.begin() as conn:
            result = apply_table(conn, table, warehouse.tenant, FIELD_MAPPING, full=config.full)
            if context.run.job_name in SYNC_JOBS:
                record_table_counts(
                    conn,
                    warehouse.tenant,
                    context.run.run_id,
                    context.run.job_name,
                    run_started_at(context),
                    table,
                    result.counts.as_metadata(),
                )
        return MaterializeResult(metadata={**result.as_metadata(), "full": config.full})

    return _table


programs = canonical_asset("programs", "Programmes the college offers (Zoho).", _zoho_deps("programs"))
units = canonical_asset("units", "BTEC units of each programme, with their credits (Zoho).", _zoho_deps("units"))
classes = canonical_asset(
    "classes",
    "Taught groups of a programme, each linked to its Moodle course (Zoho).",
    _zoho_deps("classes"),
)
students = canonical_asset(
    "students",
    "One row per student, linking the Zoho admissions record and the Moodle account. Students known to "
    "only one system are kept and counted as unmatched; students Zoho deleted are kept as tombstones.",
    [*_zoho_deps("students"), "raw_moodle_users", "raw_moodle_enrolments"],
)
enrollments = canonical_asset(
    "enrollments",
    "Students in classes: what admissions recorded, merged with who Moodle has enrolled. A withdrawal "
    "in Zoho wins; a suspension on either side shows as suspended; Moodle-only enrolments are kept.",
    [*_zoho_deps("enrollments"), "raw_moodle_enrolments", "students", "classes"],
)
registrations = canonical_asset(
    "registrations",
    "Students registered on units, for certification (Zoho).",
    _zoho_deps("registrations"),
)
payments = canonical_asset(
    "payments",
    "Fees and instalments each student owes or paid, with method and status (Zoho).",
    _zoho_deps("payments"),
)
grades = canonical_asset(
    "grades",
    "Unit grades: BTEC grades recorded in Zoho, and Moodle assignment grades (from the snapshot's grade "
    "reports and the incremental windows, the newer winning) with their BTEC equivalent.",
    [
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

CANONICAL_ASSETS = [programs, units, classes, students, enrollments, registrations, payments, grades]
