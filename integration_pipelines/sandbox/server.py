"""One ASGI app serving the fake Moodle, the fake Zoho CRM (API and Accounts) and control routes.

Paths never collide, so one base URL is at once the Moodle wwwroot, the Zoho API domain and
the Zoho accounts URL:

- ``/webservice/rest/server.php``            Moodle Web Services (REST, JSON)
- ``/oauth/v2/token``                        Zoho Accounts refresh-token grant
- ``/crm/v8/...``, ``/crm/bulk/v8/read...``  Zoho CRM API v8 and Bulk Read
- ``/_sandbox/...``                          control: mutate, events, truth, state (no faults)

``run_sandbox(config)`` runs it on a background thread (tests, demo, benchmarks);
``serve(config)`` runs it in the foreground (CLI). Nothing is logged per request, and no
secret is ever logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import uvicorn

from integration_pipelines.lib.serving import bind, serve_in_thread, uvicorn_config

from .asgi import query_pairs, read_body, request_headers, send_response
from .bulk import BulkRead
from .college import TABLES, College, generate_college, zoho_datetime
from .config import SandboxConfig
from .control import handle_control
from .moodle import MoodleError, MoodleService
from .mutate import EventLog, MutateRequest, apply_mutation
from .zoho import Credits, ZohoAuth, ZohoResponse, ZohoService, error

log = logging.getLogger("integration_pipelines.sandbox")

MOODLE_PATH = "/webservice/rest/server.php"


class DroppedConnection(Exception):
    """Raised after a response has started, so uvicorn aborts the connection (a 'drop' fault)."""


class _HideDroppedConnections(logging.Filter):
    """Keep uvicorn from logging a traceback for every deliberately dropped connection."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


logging.getLogger("uvicorn.error").addFilter(_HideDroppedConnections())


class SandboxApp:
    """The ASGI application. All college access happens under ``self.lock``."""

    def __init__(self, config: SandboxConfig, base_url: str, college: College | None = None):
        self.config = config
        self.base_url = base_url.rstrip("/")
        self.college = college or generate_college(config.students, config.seed, **config.college_knobs)
        self.college.start_clock()
        self.lock = threading.RLock()
        self.moodle = MoodleService(
            self.college,
            self.base_url,
            config.moodle_token,
            {config.moodle_limited_token: frozenset(config.moodle_limited_capabilities)},
        )
        self.zoho_auth = ZohoAuth(self.college, config, self.base_url)
        self.zoho = ZohoService(self.college, config)
        self.credits = Credits(self.college, config.daily_credits())
        self._fault_rng = random.Random(config.seed * 1_000_003 + 17)
        self.zoho_in_flight = 0
        self.request_count = 0
        self.delayed_count = 0  # data requests held for config.response_delay_seconds
        self.fault_count: dict[str, int] = {}
        self.bulk = BulkRead(self.college, config)
        self.events = EventLog(config, self.base_url)

    # ---- ASGI entry --------------------------------------------------------------------------
    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/_sandbox/"):
            await handle_control(self, scope, receive, send)
            return
        is_moodle = path == MOODLE_PATH
        is_zoho = path.startswith("/crm/")
        if path == "/oauth/v2/token":
            await self._oauth(scope, receive, send)
            return
        if not (is_moodle or is_zoho):
            await send_response(
                send,
                404,
                {
                    "code": "INVALID_URL_PATTERN",
                    "details": {},
                    "message": "Please check if the URL trying to access is a correct one",
                    "status": "error",
                },
            )
            return
        self.request_count += 1
        if await self._maybe_fault(send, is_zoho):
            return
        if is_moodle:
            await self._response_delay()
            await self._moodle(scope, receive, send)
        else:
            await self._zoho(scope, receive, send)

    # ---- latency -----------------------------------------------------------------------------
    async def _response_delay(self) -> None:
        """Hold a data request (Moodle WS, Zoho CRM and Bulk Read) for ``response_delay_seconds``.

        The Zoho token endpoint, the ``/_sandbox`` control routes and faulted requests are not held.
        """
        if self.config.response_delay_seconds > 0:
            self.delayed_count += 1
            await asyncio.sleep(self.config.response_delay_seconds)

    # ---- faults ------------------------------------------------------------------------------
    async def _maybe_fault(self, send: Any, is_zoho: bool) -> bool:
        """Draw from the seeded fault stream; on a fault answer it (without touching state)."""
        cfg = self.config
        if cfg.fault_rate <= 0 or not cfg.fault_kinds:
            return False
        with self.lock:
            if self._fault_rng.random() >= cfg.fault_rate:
                return False
            kind = self._fault_rng.choice(cfg.fault_kinds)
            status_5xx = self._fault_rng.choice((500, 502, 503))
        self.fault_count[kind] = self.fault_count.get(kind, 0) + 1
        if kind == "429":
            body = (
                {"code": "TOO_MANY_REQUESTS", "details": {}, "message": "too many requests", "status": "error"}
                if is_zoho
                else {"error": "too many requests"}
            )
            await send_response(send, 429, body, {"Retry-After": cfg.fault_retry_after_seconds})
        elif kind == "5xx":
            body = (
                {
                    "code": "INTERNAL_ERROR",
                    "details": {},
                    "message": "Internal server error occurred.",
                    "status": "error",
                }
                if is_zoho and status_5xx == 500
                else None
            )
            if body is None:
                await send_response(
                    send,
                    status_5xx,
                    raw=b"<html><body><h1>Service Unavailable</h1></body></html>",
                    content_type="text/html",
                )
            else:
                await send_response(send, status_5xx, body)
        elif kind == "timeout":
            # Hold the response past the client's timeout, then give up with a gateway timeout.
            await asyncio.sleep(cfg.fault_delay_seconds)
            await send_response(
                send, 504, raw=b"<html><body><h1>Gateway Timeout</h1></body></html>", content_type="text/html"
            )
        else:  # "drop": start a response, then abort the connection mid-way
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"100")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"partial":', "more_body": True})
            raise DroppedConnection("injected fault: connection dropped")
        return True

    # ---- Moodle ------------------------------------------------------------------------------
    async def _moodle(self, scope: dict, receive: Any, send: Any) -> None:
        pairs = query_pairs(scope)
        if scope["method"] == "POST":
            body = await read_body(receive)
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        elif scope["method"] != "GET":
            await send_response(
                send,
                405,
                {"exception": "moodle_exception", "errorcode": "invalidrequest", "message": "Method not allowed"},
            )
            return
        with self.lock:
            try:
                answer = self.moodle.call(pairs)
            except MoodleError as exc:
                answer = exc.body
        # Moodle answers errors with HTTP 200 as well.
        await send_response(send, 200, answer, {"Access-Control-Allow-Origin": "*"})

    # ---- Zoho OAuth ----------------------------------------------------------------------------
    async def _oauth(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["method"] != "POST":
            await send_response(send, 405, {"error": "invalid_request"})
            return
        params = dict(query_pairs(scope))
        body = await read_body(receive)
        if body:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        with self.lock:
            resp = self.zoho_auth.refresh(params)
        await send_response(send, resp.status, resp.body)

    # ---- Zoho CRM ------------------------------------------------------------------------------
    async def _zoho(self, scope: dict, receive: Any, send: Any) -> None:
        limit = self.config.concurrency_limit()
        if self.zoho_in_flight >= limit:
            await send_response(
                send,
                429,
                {
                    "code": "TOO_MANY_REQUESTS",
                    "details": {"limit": limit},
                    "message": "concurrency limit exceeded",
                    "status": "error",
                },
                {"Retry-After": 1},
            )
            return
        self.zoho_in_flight += 1
        try:
            await self._response_delay()  # held while counted as in flight
            resp = await self._zoho_route(scope, receive)
        finally:
            self.zoho_in_flight -= 1
        if resp.drop_answer:
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
            await send({"type": "http.response.body", "body": b'{"data":[', "more_body": True})
            raise DroppedConnection("injected write fault: the upsert was applied, its answer is lost")
        if resp.raw is not None:
            await send_response(
                send,
                resp.status,
                raw=resp.raw,
                headers=resp.headers,
                content_type=resp.headers.pop("content-type", "application/zip"),
            )
        else:
            await send_response(send, resp.status, resp.body, resp.headers)

    async def _zoho_route(self, scope: dict, receive: Any) -> ZohoResponse:
        headers = request_headers(scope)
        method = scope["method"]
        path = scope["path"].rstrip("/")
        params = dict(query_pairs(scope))
        body_bytes = await read_body(receive) if method in ("POST", "PUT", "PATCH") else b""
        with self.lock:
            denied = self.zoho_auth.check(headers.get("authorization"))
            if denied:
                return denied
            cost = 50 if (path == "/crm/bulk/v8/read" and method == "POST") else 1
            if not self.credits.charge(cost):
                return error(
                    429,
                    "TOO_MANY_REQUESTS",
                    "api credits exhausted",
                    {"limit": self.credits.limit},
                    {"Retry-After": 3600},
                )
            resp = self._zoho_dispatch(method, path, params, headers, body_bytes)
            if self.credits.total * 2 >= self.credits.limit:
                resp.headers["X-API-CREDITS-REMAINING"] = str(self.credits.remaining())
            return resp

    def _zoho_dispatch(self, method: str, path: str, params: dict, headers: dict, body: bytes) -> ZohoResponse:
        parts = path.split("/")[1:]  # ["crm", "v8", ...]
        if parts[:3] == ["crm", "bulk", "v8"] and len(parts) >= 4 and parts[3] == "read":
            return self.bulk.route(method, parts[4:], body)
        if parts[:2] != ["crm", "v8"] or len(parts) < 3:
            return error(404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")
        rest = parts[2:]
        if method == "GET":
            if rest == ["settings", "modules"]:
                return self.zoho.settings_modules()
            if rest == ["settings", "fields"]:
                return self.zoho.settings_fields(params)
            if rest == ["users"]:
                return self.zoho.users(params)
            if rest == ["org"]:
                return self.zoho.org()
            if len(rest) == 1:
                return self.zoho.list_records(rest[0], params, headers)
            if len(rest) == 3 and rest[1:] == ["actions", "count"]:
                return self.zoho.record_count(rest[0], params)
            if len(rest) == 2 and rest[1] == "deleted":
                return self.zoho.deleted_records(rest[0], params, headers)
            if len(rest) == 2:
                return self.zoho.get_record(rest[0], rest[1], params)
        if method == "POST" and len(rest) == 2 and rest[1] == "upsert":
            try:
                parsed = json.loads(body or b"null")
            except ValueError:
                return error(400, "INVALID_DATA", "invalid data", {"param_name": "body"})
            return self.zoho.upsert(rest[0], parsed)
        return error(404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")


# ----------------------------------------------------------------------------------------------
# Running it
# ----------------------------------------------------------------------------------------------
@dataclass
class Sandbox:
    """A running sandbox (as yielded by :func:`run_sandbox`)."""

    config: SandboxConfig
    app: SandboxApp
    base_url: str

    @property
    def moodle_url(self) -> str:
        """Moodle wwwroot (the REST endpoint is ``{moodle_url}/webservice/rest/server.php``)."""
        return self.base_url

    @property
    def zoho_api_domain(self) -> str:
        return self.base_url

    @property
    def zoho_accounts_url(self) -> str:
        return self.base_url

    @property
    def college(self) -> College:
        return self.app.college

    @property
    def lock(self) -> threading.RLock:
        return self.app.lock

    def mutate(self, **params: Any) -> dict:
        """Apply a mutation in-process (same as ``POST /_sandbox/mutate``); returns its summary."""
        return apply_mutation(self.app, MutateRequest(**params))

    def truth(self) -> dict[str, list[dict]]:
        with self.app.lock:
            return self.app.college.truth()

    def client_environment(self) -> dict[str, str]:
        """The variables that point the project's settings and resources at this sandbox."""
        return {
            "MOODLE_URL": self.moodle_url,
            "MOODLE_TOKEN": self.config.moodle_token,
            "ZOHO_API_DOMAIN": self.zoho_api_domain,
            "ZOHO_ACCOUNTS_URL": self.zoho_accounts_url,
            "ZOHO_CLIENT_ID": self.config.zoho_client_id,
            "ZOHO_CLIENT_SECRET": self.config.zoho_client_secret,
            "ZOHO_REFRESH_TOKEN": self.config.zoho_refresh_token,
        }


@contextmanager
def run_sandbox(config: SandboxConfig | None = None, college: College | None = None) -> Iterator[Sandbox]:
    """Run a sandbox on a background thread for the duration of the ``with`` block."""
    config = config or SandboxConfig()
    sock = bind(config.host, config.port)
    # The app must know its own URL before it serves: it is Zoho's api_domain in token answers.
    base_url = f"http://{config.host}:{sock.getsockname()[1]}"
    app = SandboxApp(config, base_url, college)
    with serve_in_thread(app, sock, name="sandbox-server"):
        yield Sandbox(config, app, base_url)


def serve(config: SandboxConfig, on_ready: Any = None) -> None:
    """Run the sandbox in the foreground until interrupted (the CLI's ``sandbox serve``)."""
    sock = bind(config.host, config.port)
    port = sock.getsockname()[1]
    base_url = f"http://{config.host}:{port}"
    app = SandboxApp(config, base_url)
    if on_ready:
        on_ready(Sandbox(config, app, base_url))
    server = uvicorn.Server(uvicorn_config(app))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


__all__ = ["SandboxApp", "Sandbox", "run_sandbox", "serve", "TABLES", "zoho_datetime"]
