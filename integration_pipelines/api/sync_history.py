"""`GET /v1/sync/history` (admin): every sync run of the key's tenant, newest first, with its
rows per table and its error. The sync jobs write `sync_runs` when a run ends."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import bindparam, select, tuple_

from integration_pipelines.api import models as m
from integration_pipelines.api.auth import Admin
from integration_pipelines.api.problems import Problem, problem_responses
from integration_pipelines.api.profile import utc
from integration_pipelines.api.warehouse import Warehouse
from integration_pipelines.lib.warehouse.schema import sync_runs
from integration_pipelines.lib.warehouse.types import UTCDateTime

router = APIRouter(tags=["sync"])


@router.get(
    "/v1/sync/history",
    response_model=m.SyncHistoryPage,
    summary="Sync runs, newest first",
    responses=problem_responses(401, 403, 422, 503),
)
def sync_history(
    key: Admin,
    conn: Warehouse,
    kind: Annotated[
        Literal["full_sync", "incremental_sync"] | None, Query(description="Only runs of this job.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200, pattern=r"^[0-9T:.+-]+~[A-Za-z0-9-]+$", description="`next_cursor` of the previous page."
        ),
    ] = None,
) -> m.SyncHistoryPage:
    """Each run's job, status, start and end, rows read/inserted/updated/deleted per table, error."""
    r = sync_runs.c
    query = select(sync_runs).where(r.tenant_id == key.tenant_id)
    if kind is not None:
        query = query.where(r.kind == kind)
    if cursor is not None:
        started, _, run_id = cursor.partition("~")
        try:
            after = datetime.fromisoformat(started)
        except ValueError:
            raise Problem(
                422, "Invalid request", "cursor is not a next_cursor this API gave.", parameter="cursor"
            ) from None
        if after.tzinfo is None or not run_id:
            raise Problem(422, "Invalid request", "cursor is not a next_cursor this API gave.", parameter="cursor")
        query = query.where(
            tuple_(r.started_at, r.run_id)
            < tuple_(bindparam("after_started", after, type_=UTCDateTime()), bindparam("after_run", run_id))
        )
    query = query.order_by(r.started_at.desc(), r.run_id.desc()).limit(limit + 1)
    rows = conn.execute(query).mappings().all()
    items = [
        m.SyncRun(
            run_id=row["run_id"],
            kind=row["kind"],
            status=row["status"],
            started_at=row["started_at"],
            finished_at=utc(row["finished_at"]),
            tables=[m.TableCounts(**t) for t in row["tables"] or []],
            error=row["error"],
        )
        for row in rows[:limit]
    ]
    last = rows[limit - 1] if len(rows) > limit else None
    return m.SyncHistoryPage(
        items=items, next_cursor=f"{last['started_at'].isoformat()}~{last['run_id']}" if last else None
    )
