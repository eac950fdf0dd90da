"""Asset checks on the canonical tables. The SQL lives in `lib/checks.py`.

Two severities. An ERROR check (keys, references, domains) is blocking: when it fails, what is
downstream of its table in the same run (the marts) does not build on the bad data. A WARN check
(unmatched identities, malformed emails, freshness) reports and blocks nothing.
"""

from datetime import timedelta

from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.lib import checks
from integration_pipelines.lib.checks import CheckOutcome
from integration_pipelines.lib.warehouse.schema import grades as grades_table
from integration_pipelines.lib.warehouse.schema import payments as payments_table
from integration_pipelines.lib.warehouse.schema import registrations as registrations_table
from integration_pipelines.settings import get_settings

# A nightly full sync plus slack: older than this, the warehouse is stale.
FRESHNESS_HOURS = get_settings().freshness_warn_hours


def _result(outcome: CheckOutcome, severity: AssetCheckSeverity = AssetCheckSeverity.ERROR) -> AssetCheckResult:
    return AssetCheckResult(passed=outcome.passed, severity=severity, metadata=outcome.metadata)


def _run(warehouse: WarehouseResource, check, *args) -> CheckOutcome:
    with warehouse.engine.connect() as conn:
        return check(conn, warehouse.tenant, *args)


@asset_check(
    blocking=True, asset="students", description="No Moodle account or Zoho student belongs to two live students."
)
def students_unique_source_ids(warehouse: WarehouseResource) -> AssetCheckResult:
    return _result(_run(warehouse, checks.unique_source_ids))


@asset_check(
    asset="students",
    description="The share of students known to one system only stays under the "
    "mapping's identity.unmatched_warn_share.",
)
def students_unmatched_share(warehouse: WarehouseResource) -> AssetCheckResult:
    outcome = _run(warehouse, checks.unmatched_identity_share, FIELD_MAPPING.identity.unmatched_warn_share)
    return _result(outcome, AssetCheckSeverity.WARN)


@asset_check(asset="students", description=f"Students synced within the last {FRESHNESS_HOURS:g} hours.")
def students_freshness(warehouse: WarehouseResource) -> AssetCheckResult:
    outcome = _run(warehouse, checks.freshness, "canonical.students", timedelta(hours=FRESHNESS_HOURS))
    return _result(outcome, AssetCheckSeverity.WARN)


@asset_check(blocking=True, asset="enrollments", description="A student is enrolled in a class once.")
def enrollments_unique(warehouse: WarehouseResource) -> AssetCheckResult:
    return _result(_run(warehouse, checks.unique_enrollments))


@asset_check(blocking=True, asset="enrollments", description="Every enrollment's student and class exist.")
def enrollments_references(warehouse: WarehouseResource) -> AssetCheckResult:
    return _result(_run(warehouse, checks.enrollment_references))


# Registrations and payments are mapped from Zoho without reading the students table, so they
# may materialize before it; checking their references waits for it.
@asset_check(
    blocking=True,
    asset="registrations",
    additional_deps=["students"],
    description="Every registration belongs to an existing student.",
)
def registrations_references(warehouse: WarehouseResource) -> AssetCheckResult:
    return _result(_run(warehouse, checks.student_references, registrations_table))


@asset_check(
    blocking=True,
    asset="payments",
    additional_deps=["students"],
    description="Every payment belongs to an existing student.",
)
def payments_references(warehouse: WarehouseResource) -> AssetCheckResult:
    return _result(_run(warehouse, checks.student_references, payments_table))


@asset_check(blocking=True, asset="payments", description="No payment amount is negative.")
def payments_non_negative(warehouse: WarehouseResource) -> AssetCheckResult:
    return _result(_run(warehouse, checks.payments_non_negative))


@asset_check(blocking=True, asset="grades", description="Every grade belongs to an existing student.")
def grades_references(warehouse: WarehouseResource) -> AssetCheckResult:
    return _result(_run(warehouse, checks.student_references, grades_table))


@asset_check(
    blocking=True, asset="grades", description="BTEC grades are Refer/Pass/Merit/Distinction; raw grades lie in 0..max."
)
def grades_domain(warehouse: WarehouseResource) -> AssetCheckResult:
    return _result(_run(warehouse, checks.grade_domain))


@asset_check(asset="students", description="Every linked student has an email, and every email looks like one.")
def students_emails(warehouse: WarehouseResource) -> AssetCheckResult:
    return _result(_run(warehouse, checks.student_emails), AssetCheckSeverity.WARN)


CANONICAL_CHECKS = [
    students_unique_source_ids,
    students_unmatched_share,
    students_emails,
    students_freshness,
    enrollments_unique,
    enrollments_references,
    registrations_references,
    payments_references,
    payments_non_negative,
    grades_references,
    grades_domain,
]
