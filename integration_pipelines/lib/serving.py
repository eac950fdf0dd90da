"""Serving an ASGI app on a background thread (the sandbox, and the API during the demo)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening socket. Binding before the server starts (port 0 = any free port) leaves no
    window in which another process could take the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def uvicorn_config(app) -> uvicorn.Config:
    # access_log off and level warning: nothing per request, and never a token in a log line.
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="auto", timeout_graceful_shutdown=1)


@contextmanager
def serve_in_thread(
    app, sock: socket.socket | None = None, *, name: str = "asgi-server", startup_timeout: float = 15.0
) -> Iterator[str]:
    """Serve `app` with uvicorn on a background thread for the `with` block; yields its base URL.

    Pass a socket from `bind` when the app must know its own URL before it starts; by default
    it gets a free loopback port.
    """
    sock = sock or bind("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
