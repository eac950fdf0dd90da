"""The Dagster code location `integration_pipelines`: one `Definitions` for the whole project.

Secrets reach resources only as `EnvVar`s, so Dagster stores the variable's name, never its value,
in run configuration. Locations (warehouse URL, Moodle URL, Zoho domains) are read from the
same environment through the project settings when a run starts, with the embedded SQLite
warehouse under the data directory as the default.
"""

from __future__ import annotations

from dagster import Definitions, EnvVar
from dagster_dbt import DbtCliResource

from integration_pipelines.defs.canonical.assets import students
from integration_pipelines.defs.jobs import full_sync
from integration_pipelines.defs.marts.assets import dbt_marts, dbt_project
from integration_pipelines.defs.moodle.assets import moodle_snapshot
from integration_pipelines.defs.moodle.resources import MoodleResource
from integration_pipelines.defs.resources import WarehouseResource
from integration_pipelines.defs.zoho.assets import raw_zoho_students
from integration_pipelines.defs.zoho.resources import ZohoResource

defs = Definitions(
    assets=[moodle_snapshot, raw_zoho_students, students, dbt_marts],
    jobs=[full_sync],
    resources={
        "warehouse": WarehouseResource(),
        "moodle": MoodleResource(token=EnvVar("MOODLE_TOKEN")),
        "zoho": ZohoResource(
            client_id=EnvVar("ZOHO_CLIENT_ID"),
            client_secret=EnvVar("ZOHO_CLIENT_SECRET"),
            refresh_token=EnvVar("ZOHO_REFRESH_TOKEN"),
        ),
        "dbt": DbtCliResource(project_dir=dbt_project),
    },
)
