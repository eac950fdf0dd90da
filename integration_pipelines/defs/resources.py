"""The warehouse resource shared by every area."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC, datetime

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr
from sqlalchemy import Connection, Engine

from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
from integration_pipelines.lib.warehouse.engine import begin_write, write_in_steps
from integration_pipelines.lib.warehouse.sync_state import record_sync
from integration_pipelines.settings import get_settings


class WarehouseResource(ConfigurableResource):
    """The database the syncs write and the API reads: SQLite by default, PostgreSQL by URL."""

    url: str | None = Field(
        default=None, description="SQLAlchemy URL of the warehouse. Unset: WAREHOUSE_URL, else the SQLite default."
    )
    tenant_id: str | None = Field(default=None, description="The college these syncs belong to. Unset: TENANT_ID.")

    _engine: Engine | None = PrivateAttr(default=None)
    _url: str = PrivateAttr(default="")
    _tenant_id: str = PrivateAttr(default="")

    def setup_for_execution(self, context: InitResourceContext) -> None:
        # Resolved when a run starts, not when the code location loads, so a run always uses
        # the environment it runs in (the same variables the API and the CLI read).
        settings = get_settings()
        self._url = self.url or settings.warehouse_url
        self._tenant_id = self.tenant_id or settings.tenant_id
        self._engine = create_warehouse_engine(self._url)
        # First use, or first use after an upgrade: bring the schema to head.
        ensure_schema(self._engine)

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @property
    def resolved_url(self) -> str:
        return self._url

    @property
    def tenant(self) -> str:
        return self._tenant_id

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("WarehouseResource used outside of a run")
        return self._engine

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def begin(self) -> AbstractContextManager[Connection]:
        """One transaction: a sync's writes land together or not at all."""
        return begin_write(self.engine)

    def write_in_steps(self) -> AbstractContextManager[Connection]:
        """A long landing's connection, committed batch by batch (`lib.warehouse.engine.write_in_steps`)."""
        return write_in_steps(self.engine)

    def record_sync(self, conn: Connection, stream: str, rows_read: int, *, watermark: datetime | None = None) -> None:
        """Note that `stream` synced now (and, for a canonical stream, how far it applied raw changes)."""
        record_sync(conn, self._tenant_id, stream, rows_read, datetime.now(UTC), watermark=watermark)
