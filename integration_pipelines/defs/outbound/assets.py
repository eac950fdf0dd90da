"""Outbound: Moodle's BTEC grades written back to Zoho CRM (the logic lives in `lib/outbound/`)."""

from dagster import AssetExecutionContext, AutomationCondition, Config, MaterializeResult, asset
from pydantic import Field

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.resources import ZohoResource
from integration_pipelines.lib.outbound.outbox import outbox_counts
from integration_pipelines.lib.outbound.writeback import write_back

OUTBOUND_GROUP = "outbound"


class GradeWritebackConfig(Config):
    dry_run: bool = Field(
        False, description="Decide and report what would be sent (would_send, conflicts), and send nothing."
    )


@asset(
    name="zoho_grade_writeback",
    group_name=OUTBOUND_GROUP,
    kinds={"zoho", "sql"},
    deps=["grades"],
    pool="zoho_api",
    # After the canonical grades change (a sync, an event batch): the automation sensor launches it.
    automation_condition=AutomationCondition.eager(),
)
def zoho_grade_writeback(
    context: AssetExecutionContext, config: GradeWritebackConfig, warehouse: WarehouseResource, zoho: ZohoResource
) -> MaterializeResult:
    """The official BTEC record in Zoho, brought up to date with the grades given in Moodle.

    Each student's unit grade from Moodle, converted to BTEC by the mapping's rules, reaches
    Zoho's grade module once: sent when Zoho lacks it or holds an older value, never again with
    the same content, and never over a newer value staff typed in Zoho (that is a conflict, for
    the `resolve_grade_conflicts` job). Records Zoho rejects are parked with its message.
    """
    report = write_back(
        warehouse.engine, zoho.client_factory(), warehouse.tenant, FIELD_MAPPING, dry_run=config.dry_run
    )
    if report.conflicts:
        context.log.warning(
            "%d grades not sent: Zoho holds a newer, different value (resolve with resolve_grade_conflicts): %s",
            report.conflicts,
            ", ".join(report.conflict_keys),
        )
    with warehouse.engine.connect() as conn:
        standing = outbox_counts(conn, warehouse.tenant)
    # What the outbox holds after the run, by status: what is parked or in conflict overall.
    return MaterializeResult(metadata={**report.as_metadata(), "outbox": standing})


OUTBOUND_ASSETS = [zoho_grade_writeback]
