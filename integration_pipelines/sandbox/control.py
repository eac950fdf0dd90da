"""Control routes under ``/_sandbox/`` (never faulted, never authenticated: the sandbox is local).

- ``GET  /_sandbox/health``            ``{"ok": true}``
- ``GET  /_sandbox/state``             counts per module/table, clock, auth and credit counters, CPU seconds
- ``POST /_sandbox/mutate``            body: :class:`~.mutate.MutateRequest` JSON; answers the summary
- ``GET  /_sandbox/events?since=&limit=``  emitted Moodle events (webhook bodies), oldest first
- ``GET  /_sandbox/truth``             ``{"meta": {...}, "tables": {table: [rows]}}``, streamed

This module sits below the app: what the routes read of a running sandbox is the
:class:`ControlledSandbox` protocol, which the app (``server.SandboxApp``) satisfies.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from pydantic import ValidationError

from .asgi import read_body, send_response
from .college import TABLES, zoho_datetime
from .mutate import MutableSandbox, MutateRequest, apply_mutation

if TYPE_CHECKING:
    from .zoho import Credits, ZohoAuth


class ControlledSandbox(MutableSandbox, Protocol):
    """What the control routes read of a running sandbox, beyond what a mutation needs."""

    @property
    def request_count(self) -> int: ...

    @property
    def fault_count(self) -> dict[str, int]: ...

    @property
    def zoho_auth(self) -> ZohoAuth: ...

    @property
    def credits(self) -> Credits: ...


def truth_meta(app: MutableSandbox) -> dict:
    col = app.college
    return {"students": col.size, "seed": col.seed, "now": zoho_datetime(col.clock()), "knobs": col.knobs}


def iter_truth_json(app: MutableSandbox, chunk_rows: int = 5000) -> Iterator[bytes]:
    """The truth document as JSON chunks; rows are produced ``chunk_rows`` at a time under the lock,
    so memory stays at one chunk even for a ~1M-row grades table."""
    with app.lock:
        meta = truth_meta(app)
    yield b'{"meta":' + json.dumps(meta).encode() + b',"tables":{'
    for t_i, table in enumerate(TABLES):
        yield (b"," if t_i else b"") + json.dumps(table).encode() + b":["
        with app.lock:
            rows_iter = app.college.iter_truth(table)
        first = True
        while True:
            with app.lock:
                rows = list(itertools.islice(rows_iter, chunk_rows))
            if not rows:
                break
            part = ",".join(json.dumps(r, separators=(",", ":")) for r in rows)
            yield (b"" if first else b",") + part.encode()
            first = False
        yield b"]"
    yield b"}}"


async def handle_control(app: ControlledSandbox, scope: dict, receive: Any, send: Any) -> None:
    path = scope["path"].rstrip("/")
    method = scope["method"]
    query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
    if path == "/_sandbox/health":
        await send_response(send, 200, {"ok": True})
    elif path == "/_sandbox/state" and method == "GET":
        with app.lock:
            state = app.college.summary()
            state.update(
                {
                    "clock": app.college.clock(),
                    "requests": app.request_count,
                    "faults": app.fault_count,
                    "zoho_refreshes": app.zoho_auth.refresh_count,
                    "zoho_credits_remaining": app.credits.remaining(),
                    "events": len(app.events.events),
                    # CPU the sandbox process has spent, so a benchmark can tell what serving
                    # a sync's requests cost the server apart from what reading them cost the client.
                    "cpu_seconds": time.process_time(),
                }
            )
        await send_response(send, 200, state)
    elif path == "/_sandbox/mutate" and method == "POST":
        body = await read_body(receive)
        try:
            req = MutateRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            await send_response(
                send, 422, {"error": "invalid mutate request", "details": json.loads(exc.json(include_url=False))}
            )
            return
        summary = apply_mutation(app, req)
        await send_response(send, 200, summary)
    elif path == "/_sandbox/events" and method == "GET":
        try:
            since = int(query.get("since", 0))
            limit = int(query.get("limit", 1000))
        except ValueError:
            await send_response(send, 400, {"error": "since and limit must be integers"})
            return
        with app.lock:
            events = app.events.events[since : since + limit]
            total = len(app.events.events)
        await send_response(send, 200, {"events": events, "next_since": since + len(events), "total": total})
    elif path == "/_sandbox/truth" and method == "GET":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        for chunk in iter_truth_json(app):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    else:
        await send_response(send, 404, {"error": "unknown sandbox control route"})
