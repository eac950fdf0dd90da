"""Write-back jobs: the write-back on its own (what the retry schedule runs), and resolving conflicts."""

from datetime import UTC, datetime
from typing import Literal

from dagster import Config, OpExecutionContext, Output, define_asset_job, job, op
from pydantic import Field

from integration_pipelines.dagster_home import area_tag
from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.defs.outbound.assets import zoho_grade_writeback
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.resources import ZohoResource
from integration_pipelines.lib.outbound.outbox import resolve_conflicts
from integration_pipelines.lib.outbound.writeback import write_back

grade_writeback = define_asset_job(
    "grade_writeback",
    selection=[zoho_grade_writeback],
    description="Write Moodle's BTEC grades back to Zoho: new and changed grades, and those a previous "
    "run could not deliver.",
    tags=area_tag("outbound"),
)


class ResolveConflictsConfig(Config):
    resolution: Literal["keep_zoho", "force_moodle"] = Field(
        description="keep_zoho: Zoho's value stands (until the Moodle grade changes again); "
        "force_moodle: Moodle's grade is written over it now."
    )
    record_keys: list[str] = Field(
        default_factory=list,
        description="The conflicts to resolve, as the write-back lists them (`<student zoho id>:<unit zoho id>`); "
        "empty: every conflict.",
    )


@op(pool="zoho_api")
def resolve_grade_conflicts_op(
    context: OpExecutionContext, config: ResolveConflictsConfig, warehouse: WarehouseResource, zoho: ZohoResource
):
    """Resolve write-back conflicts as the config says; forced grades are written to Zoho at once."""
    with warehouse.begin() as conn:
        keys = resolve_conflicts(
            conn, warehouse.tenant, config.resolution, config.record_keys or None, datetime.now(UTC)
        )
    context.log.info("%d conflicts resolved as %s", len(keys), config.resolution)
    metadata: dict = {"resolved": len(keys), "resolution": config.resolution, "records": keys[:20]}
    if config.resolution == "force_moodle" and keys:
        report = write_back(warehouse.engine, zoho.client_factory(), warehouse.tenant, FIELD_MAPPING, only=set(keys))
        metadata.update({f"writeback_{k}": v for k, v in report.as_metadata().items()})
    yield Output(None, metadata=metadata)


@job(
    description="Resolve grades the write-back reported as conflicts: keep Zoho's value, or force Moodle's.",
    tags=area_tag("outbound"),
)
def resolve_grade_conflicts():
    resolve_grade_conflicts_op()
