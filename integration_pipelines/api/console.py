"""What the web pages need beyond the data routes: who a key is, and the admin console's
configuration, connection tests and sync launches.

- `GET /v1/session` (any key): the key's scope, tenant and, for a student key, how to look its
  student up, so the dashboard opens the right profile without the page holding any data itself.
- `GET /v1/admin/config` (admin): the effective settings, every secret masked, and the field
  mapping in force.
- `POST /v1/admin/connections/{source}/test` (admin): one cheap authenticated call to Moodle
  (`core_webservice_get_site_info`) or Zoho (token refresh, then `GET /org`), reporting what it reached.
- `GET /v1/admin/syncs` and `POST /v1/admin/syncs/{job}` (admin): whether a Dagster webserver is
  configured, and starting `full_sync` or `incremental_sync` on it (`api/dagster_runs.py`).
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from integration_pipelines.api.auth import Admin, Reader
from integration_pipelines.api.dagster_runs import DagsterLaunchError, launch_sync, run_url
from integration_pipelines.api.problems import Problem, problem_responses
from integration_pipelines.api.threads import run_waiting
from integration_pipelines.lib.http import ClientError
from integration_pipelines.lib.mapping import MappingError, load_mapping
from integration_pipelines.lib.moodle.client import MoodleClient
from integration_pipelines.lib.zoho.client import ZohoClient
from integration_pipelines.settings import Settings

router = APIRouter(tags=["console"])

MASK = "********"
# Names that hold a secret even where the type does not say so (defence in depth).
_SECRET_WORDS = ("secret", "token", "password")
CONNECTION_TIMEOUT_S = 10.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Session(_Model):
    """Who the key is. A student key names the lookup that opens its own profile."""

    key_id: str
    scope: Literal["admin", "student"]
    tenant_id: str
    student_key: str | None
    student_lookup: dict[str, str] | None = Field(
        description='The profile route\'s query for the key\'s student, e.g. {"zoho_id": "5843104000000400001"}.'
    )


class SettingValue(_Model):
    name: str
    env: str | None = Field(description="The environment variable it is read from.")
    value: Any = Field(description=f"The effective value; a secret reads `{MASK}` when set, an empty string if not.")
    secret: bool


class MappedColumn(_Model):
    entity: str
    module: str
    source_field: str
    canonical_column: str
    transform: str


class FieldMappingInForce(_Model):
    file: str
    columns: list[MappedColumn]
    error: str | None = Field(description="Why the mapping file could not be loaded; null when it loaded.")


class Configuration(_Model):
    settings: list[SettingValue]
    field_mapping: FieldMappingInForce


class ConnectionTest(_Model):
    """What one authenticated call to a source reached."""

    source: Literal["moodle", "zoho"]
    ok: bool
    url: str = Field(description="The address called.")
    elapsed_ms: int
    reached: dict[str, Any] = Field(description="What the source said about itself (site, release, org, edition).")
    error: str | None = Field(description="Why it failed; never holds a secret.")


class SyncLauncher(_Model):
    configured: bool
    dagster_url: str | None
    jobs: list[str]
    detail: str


class LaunchedRun(_Model):
    job: str
    run_id: str
    run_url: str


SYNC_JOBS = ("full_sync", "incremental_sync")


@router.get("/v1/session", response_model=Session, summary="Who this key is", responses=problem_responses(401, 503))
def session(key: Reader) -> Session:
    """The key's scope and tenant; for a student key, its student and the lookup of its profile."""
    lookup = None
    if key.student_key:
        system, _, source_id = key.student_key.partition(":")
        lookup = {"zoho_id": source_id} if system == "zoho" else {"moodle_user_id": source_id}
    return Session(
        key_id=key.key_id,
        scope=key.scope,
        tenant_id=key.tenant_id,
        student_key=key.student_key,
        student_lookup=lookup,
    )


@router.get(
    "/v1/admin/config",
    response_model=Configuration,
    summary="The effective settings (secrets masked) and the field mapping in force",
    responses=problem_responses(401, 403, 503),
)
def configuration(request: Request, key: Admin) -> Configuration:
    settings: Settings = request.app.state.settings
    return Configuration(settings=masked_settings(settings), field_mapping=mapping_in_force(settings))


def masked_settings(settings: Settings) -> list[SettingValue]:
    """Every setting with its effective value; secrets (and URL passwords) never leave masked."""
    out = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        secret = isinstance(value, SecretStr) or any(word in name for word in _SECRET_WORDS)
        if isinstance(value, SecretStr):
            shown: Any = MASK if value.get_secret_value() else ""
        elif isinstance(value, dict):
            # Per-tenant secrets: which tenants have one is configuration; the secrets are not.
            shown = {k: MASK for k in value} if secret else {k: str(v) for k, v in value.items()}
        elif secret:
            shown = MASK if value else ""
        elif name == "warehouse_url":
            shown = _url_without_password(str(value))
        else:
            shown = None if value is None else str(value) if not isinstance(value, bool | int | float) else value
        out.append(SettingValue(name=name, env=alias, value=shown, secret=secret))
    return out


def _url_without_password(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return MASK


def mapping_in_force(settings: Settings) -> FieldMappingInForce:
    file = str(settings.field_mapping_file) if settings.field_mapping_file else "packaged default.yaml"
    try:
        mapping = load_mapping(settings.field_mapping_file)
    except MappingError as exc:
        return FieldMappingInForce(file=file, columns=[], error=str(exc))
    columns = [
        MappedColumn(
            entity=entity.name,
            module=entity.module,
            source_field=column.source,
            canonical_column=column.column,
            transform=column.transform,
        )
        for entity in mapping.zoho.entities.values()
        for column in entity.columns
    ]
    return FieldMappingInForce(file=mapping.file if settings.field_mapping_file else file, columns=columns, error=None)


@router.post(
    "/v1/admin/connections/{source}/test",
    response_model=ConnectionTest,
    summary="Call Moodle or Zoho once with the configured credentials and say what answered",
    responses=problem_responses(401, 403, 422),
)
async def test_connection(request: Request, key: Admin, source: Literal["moodle", "zoho"]) -> ConnectionTest:
    """200 either way: `ok` says whether the source answered the authenticated call, `error` why not."""
    return await run_waiting(request, _test_connection, request.app.state.settings, source)


def _test_connection(settings: Settings, source: Literal["moodle", "zoho"]) -> ConnectionTest:
    started = time.perf_counter()
    reached: dict[str, Any] = {}
    error = None
    if source == "moodle":
        url = settings.moodle_url
        try:
            with MoodleClient(
                settings.moodle_url, settings.moodle_token, timeout=CONNECTION_TIMEOUT_S, max_attempts=1
            ) as client:
                url = client.endpoint_url
                info = client.site_info()
            reached = {
                "site": info.get("sitename"),
                "release": info.get("release"),
                "version": info.get("version"),
                "user": info.get("username"),
                "functions": len(info.get("functions") or []),
            }
        except (ClientError, ValueError) as exc:
            error = _said(exc)
    else:
        url = settings.zoho_api_domain
        try:
            with ZohoClient(
                settings.zoho_api_domain,
                settings.zoho_accounts_url,
                settings.zoho_client_id,
                settings.zoho_client_secret,
                settings.zoho_refresh_token,
                timeout=CONNECTION_TIMEOUT_S,
                max_attempts=1,
                max_refresh_wait=0,
            ) as client:
                org = client.org()
                reached = {
                    "org": org.get("company_name"),
                    "org_id": org.get("id"),
                    "edition": ZohoClient.edition_of(org),
                    "accounts": client.token_url,
                }
        except (ClientError, ValueError) as exc:
            error = _said(exc)
    return ConnectionTest(
        source=source,
        ok=error is None,
        url=url,
        elapsed_ms=round((time.perf_counter() - started) * 1000),
        reached={k: v for k, v in reached.items() if v is not None},
        error=error,
    )


def _said(exc: Exception) -> str:
    # The clients redact their secrets from their own messages; the class names the kind of failure.
    return f"{type(exc).__name__}: {exc}"


@router.get(
    "/v1/admin/syncs",
    response_model=SyncLauncher,
    summary="Whether the console can start syncs",
    responses=problem_responses(401, 403),
)
def sync_launcher(request: Request, key: Admin) -> SyncLauncher:
    url = request.app.state.settings.dagster_webserver_url.strip()
    if not url:
        return SyncLauncher(
            configured=False,
            dagster_url=None,
            jobs=list(SYNC_JOBS),
            detail="No Dagster webserver is configured: set DAGSTER_WEBSERVER_URL to start syncs from here.",
        )
    return SyncLauncher(
        configured=True, dagster_url=url.rstrip("/"), jobs=list(SYNC_JOBS), detail=f"Syncs start on {url}."
    )


@router.post(
    "/v1/admin/syncs/{job}",
    response_model=LaunchedRun,
    status_code=202,
    summary="Start full_sync or incremental_sync on the configured Dagster webserver",
    responses={
        **problem_responses(401, 403, 422),
        409: {
            "description": "No Dagster webserver is configured.",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
        502: {
            "description": "The Dagster webserver refused or could not be reached.",
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    },
)
async def start_sync(request: Request, key: Admin, job: Literal["full_sync", "incremental_sync"]) -> LaunchedRun:
    """One run of the job, as the schedules start it (incremental_sync: yesterday's and today's windows)."""
    url = request.app.state.settings.dagster_webserver_url.strip()
    if not url:
        raise Problem(409, "Dagster not configured", "Set DAGSTER_WEBSERVER_URL to start syncs from the console.")
    try:
        run_id = await run_waiting(request, functools.partial(launch_sync, url, job, today=datetime.now(UTC).date()))
    except DagsterLaunchError as exc:
        raise Problem(502, "Dagster refused the run", str(exc)) from exc
    return LaunchedRun(job=job, run_id=run_id, run_url=run_url(url, run_id))
