"""Webhook receiver and events log routes.

The receiver only authenticates, validates and writes each accepted event as one file into the
inbox (`lib/events/inbox.py`); the `process_events` job applies it. Routes:
- `POST /v1/events/moodle/{event_type}`: the seed's Moodle-plugin contract;
- `POST /v1/events/moodle`: the public plugin `local_webhooks` (the secret is the body's `token`);
- `POST /v1/events/zoho`: Zoho CRM notifications (the secret is the channel's `token`);
- `GET /v1/events` and `POST /v1/events/{event_id}/retry`: the events log, for an admin API key,
  of the key's tenant only (every query names it: another tenant's event is not found).

Webhook answers: 202 `accepted` with the event id; 200 `duplicate` for an event id already
accepted (nothing written); 401 for a missing or wrong secret or tenant (the same answer whichever
it was); 413 above `EVENTS_MAX_BODY_BYTES`; 400/422 problem+json naming the field otherwise.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from integration_pipelines.api import models as m
from integration_pipelines.api.auth import Admin
from integration_pipelines.api.problems import Problem, problem_responses
from integration_pipelines.api.profile import MAX_BIGINT, NO_NUL
from integration_pipelines.api.threads import run_waiting
from integration_pipelines.api.warehouse import Warehouse, warehouse_errors
from integration_pipelines.lib.events import log
from integration_pipelines.lib.events.inbox import EventsInbox
from integration_pipelines.lib.events.models import (
    InboxEvent,
    LocalWebhooksBody,
    MoodleContractBody,
    Sender,
    ZohoNotification,
    derived_event_id,
)
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.settings import Settings


def _unauthorized() -> Problem:
    # One answer for every failure, so a caller learns nothing about which part was wrong.
    return Problem(401, "Unauthorized", "The request is not authenticated.")


def _secret_matches(settings: Settings, tenant_id: str | None, presented: str | None) -> bool:
    if not tenant_id or presented is None:
        return False
    expected = settings.events_webhook_secrets.get(tenant_id)
    # Compared even for an unknown tenant, so its answer takes as long as a known one's.
    reference = expected.get_secret_value() if expected is not None else "\x00unknown-tenant\x00"
    return hmac.compare_digest(presented.encode(), reference.encode()) and expected is not None and bool(reference)


def _tenant_of_token(settings: Settings, presented: str | None) -> str | None:
    """The tenant whose secret a sender without a tenant header presents (every one compared)."""
    if presented is None:
        return None
    found = None
    for tenant_id in sorted(settings.events_webhook_secrets):
        if _secret_matches(settings, tenant_id, presented) and found is None:
            found = tenant_id
    return found


async def _body(request: Request, settings: Settings) -> Any:
    """The JSON body, read up to the cap (413 beyond it, whatever Content-Length claims)."""
    cap = settings.events_max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise Problem(413, "Body too large", f"Webhook bodies are capped at {cap} bytes.", max_bytes=cap)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise Problem(413, "Body too large", f"Webhook bodies are capped at {cap} bytes.", max_bytes=cap)
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "Malformed body", f"The body is not JSON: {exc}", errors=[{"field": "body"}]) from exc


def _invalid(exc: ValidationError, prefix: tuple = ()) -> Problem:
    errors = [
        {"field": ".".join(str(p) for p in (*prefix, *e["loc"])) or "body", "message": e["msg"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    names = ", ".join(e["field"] for e in errors)
    return Problem(422, "Invalid event", f"Invalid field(s): {names}", errors=errors)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Problem(
            422, "Invalid event", "Invalid field(s): body", errors=[{"field": "body", "message": "not an object"}]
        )
    return body


def _store(inbox: EventsInbox, tenant_id: str, event_id: str, sender: Sender, body: dict) -> bool:
    event = InboxEvent(event_id=event_id, tenant_id=tenant_id, sender=sender, received_at=datetime.now(UTC), body=body)
    return inbox.accept(event)


async def _answer(
    request: Request, inbox: EventsInbox, tenant_id: str, event_id: str, sender: Sender, body: dict
) -> JSONResponse:
    # The write fsyncs: off the event loop and the read threads, so a slow disk stalls neither.
    accepted = await run_waiting(request, _store, inbox, tenant_id, event_id, sender, body)
    if accepted:
        return JSONResponse({"status": "accepted", "event_id": event_id}, status_code=202)
    return JSONResponse({"status": "duplicate", "event_id": event_id}, status_code=200)


def _without_token(body: dict) -> dict:
    # The secret is never kept: not in the inbox, the log, or anything an admin can read.
    return {k: v for k, v in body.items() if k != "token"}


# What each events route can answer, for the served schema (`/openapi.json`).
_RECEIPT = {"model": m.EventReceipt}
WEBHOOK_RESPONSES: dict[int | str, dict] = {
    200: {**_RECEIPT, "description": "A duplicate: an event with this id was accepted before; nothing written."},
    202: {**_RECEIPT, "description": "Accepted: the event is in the inbox."},
    **problem_responses(
        400,
        401,
        413,
        422,
        descriptions={
            401: "A missing or wrong secret or tenant (one answer for all).",
            413: "The body is larger than EVENTS_MAX_BODY_BYTES.",
            422: "The event is invalid: `errors[].field` names each bad field (or `parameter` a bad parameter).",
        },
    ),
}
_LOG_PROBLEMS = {403: "A student key: the events log takes an admin key."}
LIST_RESPONSES: dict[int | str, dict] = {
    200: {
        "model": m.EventLogPage,
        "description": "A page of the key's tenant's events (format=csv: that page as CSV, `X-Next-Cursor`).",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    },
    **problem_responses(401, 403, 422, 503, descriptions=_LOG_PROBLEMS),
}
RETRY_RESPONSES: dict[int | str, dict] = {
    202: {"model": m.EventRequeued, "description": "Requeued: due now, with a fresh count of attempts."},
    **problem_responses(
        401,
        403,
        404,
        409,
        422,
        503,
        descriptions={
            **_LOG_PROBLEMS,
            404: "No such event in the key's tenant's log.",
            409: "The event is neither failed nor dead; `event_status` says what it is.",
        },
    ),
}


def _instant(name: str, value: str | None) -> datetime | None:
    """A date or an instant (ISO 8601; UTC when no zone is given)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        # In UTC, as the log holds it: an instant near the ends of the calendar may have none.
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise _bad_parameter(name) from exc


def _bad_parameter(name: str) -> Problem:
    return Problem(
        422, "Invalid request", f"Invalid parameter(s): {name}", parameter=name, errors=[{"parameter": name}]
    )


def _encode_cursor(row: dict[str, Any]) -> str:
    raw = orjson.dumps([row["received_at"].isoformat(), row["event_id"]])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (received_at, event_id) a `next_cursor` of ours holds; 422 for anything else."""
    try:
        received, event_id = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = datetime.fromisoformat(received)
        if after.tzinfo is not None and isinstance(event_id, str) and "\x00" not in event_id:
            return after.astimezone(UTC), event_id
    except (ValueError, TypeError, OverflowError, orjson.JSONDecodeError):
        pass
    raise _bad_parameter("cursor")


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def build_router(settings: Settings) -> APIRouter:
    """The events routes for one deployment's settings."""
    router = APIRouter(tags=["events"])
    # Its directories are made with the first event: a receiver that never got one leaves no trace.
    inbox = EventsInbox(settings.events_inbox_dir or settings.data_dir / "events" / "inbox")

    @router.post("/v1/events/moodle/{event_type}", status_code=202, responses=WEBHOOK_RESPONSES)
    async def moodle_contract_event(
        request: Request,
        event_type: str,
        x_moodle_token: Annotated[str | None, Header()] = None,
        x_tenant_id: Annotated[str | None, Header()] = None,
        x_event_id: Annotated[str | None, Header()] = None,
    ):
        """An event in the seed's Moodle-plugin contract (headers X-Moodle-Token, X-Tenant-ID, X-Event-ID)."""
        if not _secret_matches(settings, x_tenant_id, x_moodle_token):
            raise _unauthorized()
        body = _object(await _body(request, settings))
        try:
            parsed = MoodleContractBody.model_validate(body)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        mismatches = [
            (name, message)
            for name, ok, message in (
                ("event_type", parsed.event_type == event_type, "differs from the path"),
                ("tenant_id", parsed.tenant_id == x_tenant_id, "differs from X-Tenant-ID"),
                ("event_id", x_event_id is None or parsed.event_id == x_event_id, "differs from X-Event-ID"),
            )
            if not ok
        ]
        if mismatches:
            errors = [{"field": name, "message": message} for name, message in mismatches]
            names = ", ".join(name for name, _ in mismatches)
            raise Problem(422, "Invalid event", f"Invalid field(s): {names}", errors=errors)
        assert x_tenant_id is not None
        return await _answer(request, inbox, x_tenant_id, parsed.event_id, "moodle_contract", body)

    @router.post("/v1/events/moodle", status_code=202, responses=WEBHOOK_RESPONSES)
    async def moodle_webhooks_event(
        request: Request,
        x_moodle_token: Annotated[str | None, Header()] = None,
        x_tenant_id: Annotated[str | None, Header()] = None,
        x_event_id: Annotated[str | None, Header()] = None,
    ):
        """An event as the `local_webhooks` plugin POSTs it (`get_data()` plus host, token, extra).

        The plugin sends no headers of its own: its secret is the body's `token`, which names the
        tenant, and the event id is derived from the event. Senders that add the contract's
        headers (the sandbox does) are authenticated and identified by those instead."""
        body = _object(await _body(request, settings))
        presented = x_moodle_token if x_moodle_token is not None else body.get("token")
        presented = presented if isinstance(presented, str) else None
        tenant_id = x_tenant_id if x_tenant_id is not None else _tenant_of_token(settings, presented)
        if not _secret_matches(settings, tenant_id, presented):
            raise _unauthorized()
        assert tenant_id is not None
        try:
            parsed = LocalWebhooksBody.model_validate({"token": "", **body})
        except ValidationError as exc:
            raise _invalid(exc) from exc
        if x_event_id is not None and not (0 < len(x_event_id) <= 128):
            raise Problem(422, "Invalid event", "Invalid field(s): X-Event-ID", errors=[{"field": "X-Event-ID"}])
        event_id = x_event_id or derived_event_id(tenant_id, parsed.event())
        return await _answer(request, inbox, tenant_id, event_id, "local_webhooks", _without_token(body))

    @router.post("/v1/events/zoho", status_code=202, responses=WEBHOOK_RESPONSES)
    async def zoho_notification(
        request: Request,
        x_tenant_id: Annotated[str | None, Header()] = None,
        tenant: Annotated[str | None, Query(max_length=64, description="The tenant, if no X-Tenant-ID.")] = None,
    ):
        """A Zoho CRM notification: the channel's `token` is its secret; the ids are re-fetched."""
        body = _object(await _body(request, settings))
        presented = body.get("token") if isinstance(body.get("token"), str) else None
        tenant_id = x_tenant_id or tenant or _tenant_of_token(settings, presented)
        if not _secret_matches(settings, tenant_id, presented):
            raise _unauthorized()
        assert tenant_id is not None
        try:
            parsed = ZohoNotification.model_validate(body)
        except ValidationError as exc:
            raise _invalid(exc) from exc
        # Zoho sends no id: the same notification (a redelivery) hashes the same.
        identity = [parsed.channel_id, parsed.server_time, parsed.module, parsed.operation.lower(), sorted(parsed.ids)]
        digest = hashlib.sha256(orjson.dumps(identity)).hexdigest()[:40]
        return await _answer(request, inbox, tenant_id, f"zoho-{digest}", "zoho", _without_token(body))

    @router.get("/v1/events", summary="The events log, newest first", responses=LIST_RESPONSES)
    def list_events(
        key: Admin,
        conn: Warehouse,
        type: Annotated[
            str | None, Query(max_length=100, pattern=NO_NUL, description="Event type, e.g. user_graded.")
        ] = None,
        status: Annotated[
            Literal["pending", "processed", "ignored", "failed", "dead"] | None, Query(description="Status.")
        ] = None,
        since: Annotated[str | None, Query(description="Received at or after (ISO 8601 date or time).")] = None,
        until: Annotated[str | None, Query(description="Received before (ISO 8601 date or time).")] = None,
        user: Annotated[
            int | None, Query(ge=0, le=MAX_BIGINT, description="The Moodle user the event concerns.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[str | None, Query(max_length=500, description="next_cursor of the previous page.")] = None,
        format: Annotated[Literal["json", "csv"], Query(description="csv: the page as a CSV file.")] = "json",
        payload: Annotated[bool, Query(description="Include each event's payload (JSON only).")] = False,
    ) -> Response:
        """The key's tenant's events, newest received first, one page at a time (admin only)."""
        where = log.LogFilter(
            tenant_id=key.tenant_id,
            event_type=type,
            status=status,
            user_id=user,
            since=_instant("since", since),
            until=_instant("until", until),
            after=_decode_cursor(cursor) if cursor else None,
        )
        found = log.page(conn, where, limit, with_payload=payload and format == "json")
        next_cursor = _encode_cursor(found[-1]) if len(found) == limit else None
        if format == "csv":
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=log.LISTED_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in found:
                writer.writerow({k: _jsonable(v) for k, v in row.items()})
            headers = {"Content-Disposition": 'attachment; filename="events.csv"'}
            if next_cursor:
                headers["X-Next-Cursor"] = next_cursor
            return Response(out.getvalue(), media_type="text/csv; charset=utf-8", headers=headers)
        events = [{k: _jsonable(v) for k, v in row.items()} for row in found]
        return JSONResponse({"events": events, "next_cursor": next_cursor})

    @router.post(
        "/v1/events/{event_id}/retry",
        status_code=202,
        summary="Requeue a failed or dead event",
        responses=RETRY_RESPONSES,
    )
    def retry_event(
        request: Request,
        key: Admin,
        event_id: Annotated[str, Path(max_length=128, pattern=NO_NUL, description="The event's id.")],
    ) -> JSONResponse:
        """Put a failed or dead event of the key's tenant back in line, with a fresh count of
        attempts (admin only); the next retry pass (`events_retry` schedule) applies it. Another
        tenant's event is not found, as an unknown id is."""
        with warehouse_errors(), begin_write(request.app.state.engine) as conn:
            current = log.status_of(conn, event_id, key.tenant_id)
            if current is None:
                raise Problem(404, "Event not found", f"No event {event_id!r} in the events log.", event_id=event_id)
            if current not in ("failed", "dead"):
                raise Problem(
                    409,
                    "Event not retryable",
                    f"Event {event_id!r} is {current}: only failed and dead events are retried.",
                    event_id=event_id,
                    event_status=current,
                )
            log.requeue(conn, datetime.now(UTC), tenant_id=key.tenant_id, event_ids=[event_id])
        return JSONResponse({"status": "requeued", "event_id": event_id}, status_code=202)

    return router
