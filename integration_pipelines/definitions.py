"""The Dagster code location `integration_pipelines`: one `Definitions` for the whole project.

Secrets reach resources only as `EnvVar`s, so Dagster stores the variable's name, never its value,
in run configuration. Non-secret locations default to the project settings (the embedded
SQLite warehouse under the data directory) when their variable is unset.
"""

from __future__ import annotations

import os

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
from integration_pipelines.settings import get_settings


def _env_or(name: str, default: str):
    """The variable itself when it is set (so the UI shows its name), else the settings default."""
    return EnvVar(name) if os.environ.get(name) else default


settings = get_settings()

defs = Definitions(
    assets=[moodle_snapshot, raw_zoho_students, students, dbt_marts],
    jobs=[full_sync],
    resources={
        "warehouse": WarehouseResource(
            url=_env_or("WAREHOUSE_URL", settings.warehouse_url),
            tenant_id=_env_or("TENANT_ID", settings.tenant_id),
        ),
        "moodle": MoodleResource(url=_env_or("MOODLE_URL", settings.moodle_url), token=EnvVar("MOODLE_TOKEN")),
        "zoho": ZohoResource(
            api_domain=_env_or("ZOHO_API_DOMAIN", settings.zoho_api_domain),
            accounts_url=_env_or("ZOHO_ACCOUNTS_URL", settings.zoho_accounts_url),
            client_id=EnvVar("ZOHO_CLIENT_ID"),
            client_secret=EnvVar("ZOHO_CLIENT_SECRET"),
            refresh_token=EnvVar("ZOHO_REFRESH_TOKEN"),
        ),
        "dbt": DbtCliResource(project_dir=dbt_project),
    },
)
