"""Dagster wiring, by area. Business logic lives in `integration_pipelines.lib`."""
