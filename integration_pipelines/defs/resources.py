"""The warehouse resource shared by every area."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr
from sqlalchemy import Connection, Engine

from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
from integration_pipelines.lib.warehouse.sync_state import record_sync


class WarehouseResource(ConfigurableResource):
    """The database the syncs write and the API reads: SQLite by default, PostgreSQL by URL."""

    url: str = Field(description="SQLAlchemy URL of the warehouse.")
    tenant_id: str = Field("default", description="The college these syncs belong to.")

    _engine: Engine | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._engine = create_warehouse_engine(self.url)
        # First use, or first use after an upgrade: bring the schema to head.
        ensure_schema(self._engine)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("WarehouseResource used outside of a run")
        return self._engine

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction: a sync's writes land together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    def record_sync(self, conn: Connection, stream: str, rows_read: int, at: datetime | None = None) -> None:
        record_sync(conn, self.tenant_id, stream, rows_read, at or datetime.now(UTC))
