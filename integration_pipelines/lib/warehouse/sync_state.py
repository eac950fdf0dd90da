"""When each stream last synced: the health endpoint and freshness checks read it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from integration_pipelines.lib.warehouse.schema import sync_state


def record_sync(conn: Connection, tenant_id: str, stream: str, rows_read: int, at: datetime) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(sync_state).values(tenant_id=tenant_id, stream=stream, last_synced_at=at, rows_read=rows_read)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=["tenant_id", "stream"],
        set_={"last_synced_at": stmt.excluded.last_synced_at, "rows_read": stmt.excluded.rows_read},
    ))
