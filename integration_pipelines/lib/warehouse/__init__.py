"""The warehouse: one schema, two backends (SQLite embedded, PostgreSQL in production), one upsert path."""

from integration_pipelines.lib.warehouse.engine import create_warehouse_engine, ensure_schema
from integration_pipelines.lib.warehouse.schema import KEYED_TABLES, metadata
from integration_pipelines.lib.warehouse.upsert import UpsertCounts, upsert_rows

__all__ = [
    "KEYED_TABLES",
    "UpsertCounts",
    "create_warehouse_engine",
    "ensure_schema",
    "metadata",
    "upsert_rows",
]
