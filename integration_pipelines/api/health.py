"""`GET /v1/health`: whether the warehouse answers, how fresh the marts are, how the last syncs
went. Unauthenticated, so it says nothing about any student."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from integration_pipelines.api import models as m
from integration_pipelines.api.profile import utc
from integration_pipelines.api.warehouse import database_exists

router = APIRouter(tags=["health"])

MARTS = ("student_profile", "student_academics", "student_finance", "student_classes", "student_grades")
# Events waiting for their first or a further attempt.
_EVENT_BACKLOG = text(
    "SELECT count(*) FROM integration_events_log WHERE tenant_id = :tenant AND status IN ('pending', 'failed')"
)
_LAST_RUN = text(
    "SELECT kind, status, started_at, finished_at FROM sync_runs "
    "WHERE tenant_id = :tenant AND kind = :kind ORDER BY started_at DESC LIMIT 1"
)


@router.get(
    "/v1/health",
    response_model=m.Health,
    summary="Warehouse reachability, mart freshness and the last syncs",
    responses={
        503: {"description": "The warehouse is unreachable, or its schema or marts are missing.", "model": m.Health}
    },
)
def health(request: Request) -> JSONResponse:
    """`ok` (200) when the warehouse answers and every mart exists; `degraded` (503) otherwise,
    saying which part is missing. Creates nothing: on SQLite a missing file is reported, not made."""
    engine: Engine = request.app.state.engine
    settings = request.app.state.settings
    answer = _health(engine, settings.tenant_id, settings.warehouse_backend)
    return JSONResponse(answer.model_dump(mode="json"), status_code=200 if answer.status == "ok" else 503)


def _health(engine: Engine, tenant_id: str, backend: str) -> m.Health:
    unknown = {"last_sync_at": None, "last_full_sync": None, "last_incremental_sync": None, "event_backlog": None}

    def unreachable() -> m.Health:
        return m.Health.model_validate(
            {
                "status": "degraded",
                "backend": backend,
                "reachable": False,
                "schema_ready": False,
                "marts": [m.MartFreshness(name=n, exists=False, built_at=None) for n in MARTS],
                **unknown,
            }
        )

    if not database_exists(engine):
        return unreachable()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            tables = set(inspect(conn).get_table_names())
            schema_ready = {"alembic_version", "sync_state", "sync_runs", "integration_events_log"} <= tables
            marts = [_mart(conn, name, name in tables) for name in MARTS]
            facts = _facts(conn, tenant_id) if schema_ready else unknown
    except (OperationalError, ProgrammingError):
        return unreachable()
    ok = schema_ready and all(mart.exists for mart in marts)
    return m.Health.model_validate(
        {
            "status": "ok" if ok else "degraded",
            "backend": backend,
            "reachable": True,
            "schema_ready": schema_ready,
            "marts": marts,
            **facts,
        }
    )


def _mart(conn: Connection, name: str, exists: bool) -> m.MartFreshness:
    # Every row of a mart carries the time of the build that wrote it; one row tells.
    built = conn.execute(text(f"SELECT max(built_at) FROM {name}")).scalar() if exists else None
    return m.MartFreshness(name=name, exists=exists, built_at=utc(built))


def _facts(conn: Connection, tenant_id: str) -> dict:
    last_sync = conn.execute(
        text("SELECT max(last_synced_at) FROM sync_state WHERE tenant_id = :tenant"), {"tenant": tenant_id}
    ).scalar()
    runs = {}
    for kind in ("full_sync", "incremental_sync"):
        row = conn.execute(_LAST_RUN, {"tenant": tenant_id, "kind": kind}).mappings().first()
        runs[kind] = (
            None
            if row is None
            else m.SyncRunSummary(
                kind=row["kind"],
                status=row["status"],
                started_at=utc(row["started_at"]),  # pyright: ignore[reportArgumentType]
                finished_at=utc(row["finished_at"]),
            )
        )
    backlog = conn.execute(_EVENT_BACKLOG, {"tenant": tenant_id}).scalar()
    return {
        "last_sync_at": utc(last_sync),
        "last_full_sync": runs["full_sync"],
        "last_incremental_sync": runs["incremental_sync"],
        "event_backlog": backlog,
    }
