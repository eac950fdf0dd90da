"""The read-only profile API for the student dashboard (FastAPI). Imports no Dagster."""

from integration_pipelines.api.app import create_app

__all__ = ["create_app"]
