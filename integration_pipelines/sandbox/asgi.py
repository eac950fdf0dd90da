"""ASGI plumbing shared by the app (``server``) and the control routes (``control``).

Plain functions over ASGI's ``scope``/``receive``/``send``, so a route handler answers a
request without reaching back into the app that dispatched it.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl


def json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


async def read_body(receive: Any) -> bytes:
    """The whole request body (empty when the client disconnects first)."""
    chunks = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            break
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    return b"".join(chunks)


async def send_response(
    send: Any,
    status: int,
    body: Any = None,
    headers: dict | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
) -> None:
    """One complete response: ``body`` as compact JSON, or ``raw`` bytes, or nothing."""
    payload = raw if raw is not None else (b"" if body is None else json_bytes(body))
    hdrs = [(b"content-length", str(len(payload)).encode())]
    if body is not None or raw is not None:
        hdrs.append((b"content-type", content_type.encode()))
    for k, v in (headers or {}).items():
        hdrs.append((k.lower().encode(), str(v).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": payload})


def request_headers(scope: dict) -> dict[str, str]:
    """Request headers with lower-cased names."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def query_pairs(scope: dict) -> list[tuple[str, str]]:
    """The query string as (name, value) pairs, blanks kept."""
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
