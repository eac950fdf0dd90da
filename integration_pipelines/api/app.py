"""The profile API: routers by area, one auth dependency, problem+json errors. Imports no Dagster."""

from __future__ import annotations

import gc
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from integration_pipelines.api import console, health, pages, profile, receipts, search, sync_history
from integration_pipelines.api.events import build_router as build_events_router
from integration_pipelines.api.head import HeadAsGet
from integration_pipelines.api.models import Problem
from integration_pipelines.api.problems import install_problem_handlers
from integration_pipelines.api.threads import configure_threads
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.settings import Settings, get_settings

# Connections beyond the reads' pool, opened when needed: writes and health checks.
OTHER_CONNECTIONS = 4


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for one warehouse. The engine opens lazily and closes with the app."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_threads(app, settings.api_read_threads)
        # One pooled connection per read thread: a smaller pool would open and close a connection
        # per request under load (on PostgreSQL a login), which costs more than a profile read.
        # The reads hold those (`request_connection`); a write or a health check beside them (an
        # event's retry, which holds its key's read connection too) opens one of the overflow.
        app.state.engine = create_warehouse_engine(
            settings.warehouse_url, pool_size=settings.api_read_threads, max_overflow=OTHER_CONNECTIONS
        )
        # What the process holds once started (FastAPI, pydantic's schemas, SQLAlchemy) lives as
        # long as it does: frozen, the collector's full passes, which stall every request waiting
        # on this process, no longer walk it. Saturated, the p99 halved (docs/benchmarks.md,
        # "Profile API: what a read costs").
        gc.collect()
        gc.freeze()
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
    app.state.settings = settings
    install_problem_handlers(app)
    for area in (health, profile, search, sync_history, receipts):
        app.include_router(area.router)
    app.include_router(build_events_router(settings))  # webhooks and the events log (api/events.py)
    app.include_router(console.router)  # the pages' session, configuration, connection tests, sync launches
    app.include_router(pages.router)  # /dashboard and /admin (issue 17)
    app.mount("/static", pages.static_files(), name="static")
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origin_list,
            allow_methods=["GET", "HEAD"],
            allow_headers=["Authorization"],
        )
    app.add_middleware(HeadAsGet)
    _document_problems(app)
    return app


def _document_problems(app: FastAPI) -> None:
    """Put the problem+json body every error response refers to into the served schema."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = problem
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
