"""Landing source records in `raw_records`, batched, through the one upsert path."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from integration_pipelines.lib.warehouse.raw import raw_row
from integration_pipelines.lib.warehouse.upsert import BATCH_SIZE, Snapshot, SyncCounts, row_preparer, upsert_prepared


class RawLander:
    """Buffers records per entity and writes them in batches; for a full snapshot, it also
    soft-deletes the records of each entity that the read no longer returned."""

    def __init__(self, conn: Connection, tenant_id: str, source: str, entities: Iterable[str], *, snapshot: bool):
        self._conn, self._tenant, self._source = conn, tenant_id, source
        self._prepare = row_preparer(conn.dialect, "raw_records")
        self._buffers: dict[str, list[tuple]] = {e: [] for e in entities}
        self.counts = {e: SyncCounts() for e in self._buffers}
        self._snapshots = (
            {
                e: Snapshot(conn, "raw_records", {"tenant_id": tenant_id, "source": source, "entity": e})
                for e in self._buffers
            }
            if snapshot
            else {}
        )

    def land(self, entity: str, record_id: Any, payload: Mapping[str, Any], modified_at: datetime) -> None:
        row = raw_row(self._tenant, self._source, entity, record_id, payload, modified_at)
        self.land_prepared(entity, self._prepare(row))

    def land_prepared(self, entity: str, prepared: tuple) -> None:
        """Land a record its reader already prepared for this warehouse, tenant and source
        (`prepared_raw_records`), so that this process only writes it."""
        buffer = self._buffers[entity]
        buffer.append(prepared)
        self.counts[entity].read += 1
        if len(buffer) >= BATCH_SIZE:
            self._flush(entity)

    def _flush(self, entity: str) -> None:
        buffer = self._buffers[entity]
        if buffer:
            self.counts[entity].written += upsert_prepared(
                self._conn, "raw_records", buffer, snapshot=self._snapshots.get(entity)
            )
            buffer.clear()

    def finish(self) -> dict[str, SyncCounts]:
        """Write what is buffered, apply snapshot deletes, and return the counts per entity."""
        for entity in self._buffers:
            self._flush(entity)
            if entity in self._snapshots:
                self.counts[entity].deleted = self._snapshots[entity].delete_missing()
        return self.counts
