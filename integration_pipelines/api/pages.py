"""The web pages the sidecar serves: the student dashboard (`/dashboard`) and the admin console
(`/admin`), plain HTML, CSS and JavaScript modules from the package (`api/static/`, no build step).

The pages carry no data: they ask for a key and read everything through the API with it, so a
page shows exactly what its key may read. Each answer forbids framing and limits scripts, styles
and calls to this origin (photos may come from the Moodle site).
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(tags=["pages"], include_in_schema=False)

STATIC = resources.files("integration_pipelines.api") / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' http: https: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _page(name: str) -> HTMLResponse:
    return HTMLResponse((STATIC / name).read_text(encoding="utf-8"), headers=SECURITY_HEADERS)


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    """The student dashboard: profile, academics, finance, classes and grades of one student."""
    return _page("dashboard.html")


@router.get("/admin", response_class=HTMLResponse)
def admin_console() -> HTMLResponse:
    """The admin console: search, event log, failed events, sync history, configuration."""
    return _page("admin.html")


def static_files() -> StaticFiles:
    """The pages' CSS and JavaScript, mounted at `/static`."""
    return StaticFiles(directory=str(STATIC))
