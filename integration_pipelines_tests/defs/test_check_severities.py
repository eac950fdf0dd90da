"""Error-severity checks block what is downstream of them; warnings do not."""

from __future__ import annotations

from datetime import UTC, datetime

from dagster import AssetCheckSeverity, AssetKey, asset, materialize

from integration_pipelines.defs.canonical.assets import payments
from integration_pipelines.defs.canonical.checks import CANONICAL_CHECKS, payments_non_negative
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema, upsert_rows
from integration_pipelines.lib.warehouse.raw import raw_row

WARNINGS = {"students_unmatched_share", "students_freshness", "students_emails"}


def test_every_error_check_blocks_and_no_warning_does():
    for check in CANONICAL_CHECKS:
        (spec,) = check.check_specs
        assert spec.blocking == (spec.name not in WARNINGS), spec.name


def test_a_negative_payment_stops_what_is_downstream_of_payments(warehouse_url):
    engine = create_warehouse_engine(warehouse_url)
    ensure_schema(engine)
    record = {
        "id": "1",
        "Student": {"id": "9"},
        "Amount": -5,
        "Modified_Time": "2026-01-01T00:00:00+00:00",
    }
    with engine.begin() as conn:
        upsert_rows(conn, "raw_records", [raw_row("default", "zoho", "Payments", "1", record, datetime.now(UTC))])
    engine.dispose()

    @asset(deps=[payments])
    def finance_mart() -> None:
        """Stands for the marts: must not build on a negative payment."""

    result = materialize(
        [payments, payments_non_negative, finance_mart],
        resources={"warehouse": WarehouseResource(url=warehouse_url, tenant_id="default")},
        raise_on_error=False,
    )
    (evaluation,) = result.get_asset_check_evaluations()
    assert (evaluation.passed, evaluation.severity) == (False, AssetCheckSeverity.ERROR)
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey("payments") in materialized, "the payment lands: the check reports it"
    assert AssetKey("finance_mart") not in materialized
