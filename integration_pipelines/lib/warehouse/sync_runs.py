"""The history of sync runs (`sync_runs`), which the API's `GET /v1/sync/history` reads.

Each canonical step of a run adds its table's counts to the run's row as it commits (in the same
transaction as its writes, so the row never claims rows that were rolled back); when the run
ends, its outcome, end time and error are set. A run killed before it could end stays `started`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, select, update
from sqlalchemy.dialects import postgresql, sqlite

from integration_pipelines.lib.warehouse.schema import sync_runs

SYNC_JOBS = ("full_sync", "incremental_sync")
_ERROR_LIMIT = 4000


def _insert(conn: Connection):
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(sync_runs)


def _ensure_row(conn: Connection, tenant_id: str, run_id: str, kind: str, started_at: datetime) -> None:
    conn.execute(
        _insert(conn)
        .values(tenant_id=tenant_id, run_id=run_id, kind=kind, status="started", started_at=started_at, tables=[])
        .on_conflict_do_nothing(index_elements=["tenant_id", "run_id"])
    )


def record_table_counts(
    conn: Connection, tenant_id: str, run_id: str, kind: str, started_at: datetime, table: str, counts: dict
) -> None:
    """Add (or replace, on a retried step) one table's counts: rows read, inserted, updated, deleted."""
    _ensure_row(conn, tenant_id, run_id, kind, started_at)
    key = (sync_runs.c.tenant_id == tenant_id) & (sync_runs.c.run_id == run_id)
    query = select(sync_runs.c.tables).where(key)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()  # steps of one run commit side by side on PostgreSQL
    tables = [t for t in (conn.execute(query).scalar_one() or []) if t["table"] != table]
    tables.append(
        {
            "table": table,
            "read": int(counts.get("rows_read", 0)),
            "inserted": int(counts.get("inserted", 0)),
            "updated": int(counts.get("updated", 0)),
            "deleted": int(counts.get("deleted", 0)),
        }
    )
    conn.execute(update(sync_runs).where(key).values(tables=sorted(tables, key=lambda t: t["table"])))


def finish_run(
    conn: Connection,
    tenant_id: str,
    run_id: str,
    kind: str,
    *,
    started_at: datetime,
    succeeded: bool,
    finished_at: datetime | None = None,
    error: str | None = None,
) -> None:
    """Set a run's outcome (a run that wrote no table gets its row here)."""
    _ensure_row(conn, tenant_id, run_id, kind, started_at)
    conn.execute(
        update(sync_runs)
        .where((sync_runs.c.tenant_id == tenant_id) & (sync_runs.c.run_id == run_id))
        .values(
            status="success" if succeeded else "failure",
            finished_at=finished_at or datetime.now(UTC),
            error=None if succeeded else (error or "failed")[:_ERROR_LIMIT],
        )
    )
