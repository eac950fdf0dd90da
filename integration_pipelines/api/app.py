"""Routes of the profile API. Every read is a few indexed lookups on precomputed marts."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from integration_pipelines.api.events import build_router as build_events_router
from integration_pipelines.api.problems import Problem, install_problem_handlers
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.schema import sync_state
from integration_pipelines.settings import Settings, get_settings

PROFILE_COLUMNS = (
    "student_key",
    "moodle_user_id",
    "zoho_id",
    "student_number",
    "first_name",
    "last_name",
    "full_name",
    "email",
    "program_zoho_id",
    "status",
    "identity_match",
    "profile_updated_at",
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for one warehouse. The engine opens lazily and closes with the app."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = create_warehouse_engine(settings.warehouse_url)
        try:
            yield
        finally:
            app.state.engine.dispose()

    app = FastAPI(
        title="integration_pipelines profile API",
        version="1",
        summary="Student profiles for the dashboard, read from the warehouse marts.",
        lifespan=lifespan,
    )
    install_problem_handlers(app)

    @app.get("/v1/health", tags=["health"])
    def health(request: Request) -> JSONResponse:
        """Whether the warehouse answers, and when each stream last synced."""
        engine: Engine = request.app.state.engine
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
                last_sync = conn.execute(
                    select(func.max(sync_state.c.last_synced_at)).where(sync_state.c.tenant_id == settings.tenant_id)
                ).scalar()
        except (OperationalError, ProgrammingError) as exc:
            reachable = isinstance(exc, ProgrammingError)  # connected, but no schema yet
            body = {
                "status": "degraded",
                "warehouse": {"backend": settings.warehouse_backend, "reachable": reachable},
                "last_sync_at": None,
            }
            return JSONResponse(body, status_code=503)
        return JSONResponse(
            {
                "status": "ok",
                "warehouse": {"backend": settings.warehouse_backend, "reachable": True},
                "last_sync_at": last_sync.isoformat() if last_sync else None,
            }
        )

    @app.get("/v1/students/profile", tags=["students"])
    def student_profile(
        request: Request,
        moodle_user_id: Annotated[int, Query(ge=1, description="The student's Moodle user id.")],
    ) -> dict[str, Any]:
        """One student's profile, as the dashboard shows it."""
        engine: Engine = request.app.state.engine
        query = text(
            f"SELECT {', '.join(PROFILE_COLUMNS)} FROM student_profile "
            "WHERE tenant_id = :tenant AND moodle_user_id = :moodle_user_id"
        )
        try:
            with engine.connect() as conn:
                params = {"tenant": settings.tenant_id, "moodle_user_id": moodle_user_id}
                row = conn.execute(query, params).mappings().first()
        except (OperationalError, ProgrammingError) as exc:
            raise Problem(
                503, "Profiles not built yet", "The student_profile mart does not exist yet: run the full_sync job."
            ) from exc
        if row is None:
            raise Problem(
                404,
                "Student not found",
                f"No student with moodle_user_id {moodle_user_id}.",
                moodle_user_id=moodle_user_id,
            )
        profile = {k: _jsonable(k, v) for k, v in row.items()}
        return {"student_key": profile.pop("student_key"), "profile": profile}

    app.include_router(build_events_router(settings))  # webhooks and the events log (api/events.py)
    return app


def _jsonable(column: str, value: Any) -> Any:
    """JSON for one mart value. Timestamps are ISO 8601 in UTC on both backends: PostgreSQL returns
    them as datetimes, SQLite (where the marts store UTC without a zone) as text."""
    if column.endswith("_at") and isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    return value.isoformat() if isinstance(value, date) else value
