"""Landing source records in `raw_records`, batched, through the one upsert path."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from integration_pipelines.lib.source_reads import ModuleRead
from integration_pipelines.lib.warehouse.engine import commit_step
from integration_pipelines.lib.warehouse.raw import deleted_entity_name, raw_row
from integration_pipelines.lib.warehouse.upsert import (
    BATCH_SIZE,
    EncodedJSON,
    Snapshot,
    SyncCounts,
    row_preparer,
    soft_delete_keys,
    upsert_prepared,
)

# What a Moodle snapshot reads whole, and so soft-deletes where the read no longer returns it.
MOODLE_SNAPSHOT_ENTITIES = ("courses", "enrolments", "users", "grade_items", "grades")


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

    def land(
        self,
        entity: str,
        record_id: Any,
        payload: Mapping[str, Any] | EncodedJSON,
        modified_at: datetime,
        deleted_at: datetime | None = None,
    ) -> None:
        row = raw_row(self._tenant, self._source, entity, record_id, payload, modified_at, deleted_at)
        self.land_prepared(entity, self._prepare(row))

    def land_prepared(self, entity: str, prepared: tuple) -> None:
        """Land a record already prepared for this warehouse's `raw_records` upsert."""
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
            # Landing a snapshot as it is read: another writer may take its turn before the next batch.
            commit_step(self._conn)

    def finish(self) -> dict[str, SyncCounts]:
        """Write what is buffered, apply snapshot deletes, and return the counts per entity."""
        for entity in self._buffers:
            self._flush(entity)
            if entity in self._snapshots:
                self.counts[entity].deleted = self._snapshots[entity].delete_missing()
        return self.counts


def land_modules(
    conn: Connection,
    tenant_id: str,
    source: str,
    modules: Iterable[str],
    records: Iterable[Any],
    *,
    snapshot: bool,
) -> Iterator[tuple[str, SyncCounts, int]]:
    """Land what `read_zoho_modules` reads: raw records of several modules, interleaved (they
    are read side by side), each module's followed by its `ModuleRead`. Yields, as each module
    ends, `(module, its counts, the requests reading it cost)`, once per module.

    Each module lands through a `RawLander` of its own (its records and its `<module>.deleted`
    list). A snapshot soft-deletes what the module's read no longer returned; a window
    soft-deletes the records in the module's deleted list.
    """
    landers: dict[str, RawLander] = {}
    module_of: dict[str, str] = {}
    gone: dict[str, list[str]] = {}
    for module in modules:
        deleted = deleted_entity_name(module)
        landers[module] = RawLander(conn, tenant_id, source, (module, deleted), snapshot=snapshot)
        module_of[module] = module_of[deleted] = module
        gone[module] = []
    for record in records:
        if isinstance(record, ModuleRead):
            module = record.module
            counts = landers.pop(module).finish()[module]
            if not snapshot:
                # A window sees deletions as entries in Zoho's deleted list; the snapshot sees
                # them as absences.
                scope = {"tenant_id": tenant_id, "source": source, "entity": module}
                counts.deleted += soft_delete_keys(conn, "raw_records", scope, gone.pop(module))
            yield module, counts, record.requests
            continue
        entity, record_id, payload, modified_at = record
        module = module_of[entity]
        landers[module].land(entity, record_id, payload, modified_at)
        if not snapshot and entity != module:
            gone[module].append(record_id)
    if landers:
        raise RuntimeError(f"the read ended before these modules did: {', '.join(sorted(landers))}")


def land_moodle_snapshot(
    conn: Connection, tenant_id: str, records: Iterable[tuple[str, Any, Any, datetime]]
) -> dict[str, SyncCounts]:
    """Land a Moodle snapshot's records (`read_moodle_snapshot`): each snapshot entity whole, with
    what the read no longer returned soft-deleted. Completions are not re-asked once completed, so
    a snapshot does not see them all: they land by key, never soft-deleted for being absent (the
    course results follow live enrolments)."""
    lander = RawLander(conn, tenant_id, "moodle", MOODLE_SNAPSHOT_ENTITIES, snapshot=True)
    completions = RawLander(conn, tenant_id, "moodle", ("completions",), snapshot=False)
    for entity, record_id, payload, modified_at in records:
        (completions if entity == "completions" else lander).land(entity, record_id, payload, modified_at)
    return lander.finish() | completions.finish()
