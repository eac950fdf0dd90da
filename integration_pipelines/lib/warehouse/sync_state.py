"""When each stream last synced, and how far each canonical table has applied raw changes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from integration_pipelines.lib.warehouse.schema import sync_state


def record_sync(
    conn: Connection, tenant_id: str, stream: str, rows_read: int, at: datetime, *, watermark: datetime | None = None
) -> None:
    """Note a successful sync of `stream`; a canonical stream also moves its watermark forward."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    values = {"last_synced_at": at, "rows_read": rows_read}
    if watermark is not None:
        values["watermark"] = watermark
    stmt = insert(sync_state).values(tenant_id=tenant_id, stream=stream, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["tenant_id", "stream"], set_=values))


def watermark(conn: Connection, tenant_id: str, stream: str) -> tuple[datetime | None, datetime | None]:
    """The instant up to which `stream` has applied raw changes, and when it last applied them
    (both None before its first run). The first is on the raw layer's clock; the second on the
    canonical rows' (their `updated_at`)."""
    s = sync_state.c
    row = conn.execute(
        select(s.watermark, s.last_synced_at).where(s.tenant_id == tenant_id, s.stream == stream)
    ).first()
    return (row.watermark, row.last_synced_at) if row else (None, None)
