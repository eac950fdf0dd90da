"""A synced sandbox college behind the real API sidecar, and a headless Chromium to drive it.

Once per test session (per xdist worker): a sandbox college over real HTTP, `full_sync` run by
Dagster in-process into a SQLite warehouse, API keys (an admin, a student, and an admin of another
tenant), a few logged events in each status for each of the two tenants (written by the events
pipeline's own log functions), and the API served by uvicorn on a free loopback port. The browser
is Debian's Chromium (`/usr/bin/chromium`, installed by `.ci/run`), driven by Playwright;
Playwright's own browsers are never downloaded. axe-core comes from npm (`package.json` beside
this file), installed on first use.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from integration_pipelines.api import create_app
from integration_pipelines.lib.events import log
from integration_pipelines.lib.events.models import InboxEvent
from integration_pipelines.lib.serving import serve_in_thread
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.api_keys import create_key
from integration_pipelines.lib.warehouse.schema import payments, students
from integration_pipelines.sandbox.server import Sandbox
from integration_pipelines.settings import Settings
from integration_pipelines_tests.e2e import running_pipeline

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
HERE = Path(__file__).parent
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
REPO = HERE.parent.parent
# Each run writes its screenshots here (gitignored); the README shows two copied to docs/screenshots/.
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", REPO / "docs" / "screenshots" / "run"))
OTHER_TENANT = "other-college"
# A secret the API is configured with, which the console's configuration must never show.
WEBHOOK_SECRET = "console-webhook-secret-for-tests"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
# Bounds that keep a broken page from stalling the suite: no wait in these tests is longer.
ACTION_TIMEOUT_MS = 10_000


@dataclass
class College:
    """The running college: the API's URL, its keys and the student the student key reads."""

    url: str
    sandbox: Sandbox
    engine_url: str
    admin_key: str
    student_key: str
    other_tenant_admin_key: str
    student: dict  # the canonical students row of the student key's student
    other_student: dict  # another student of the same tenant
    event_ids: dict[str, list[str]]  # status -> event ids logged in it
    other_tenant_event_ids: dict[str, list[str]]  # the same for the other tenant


def _pick_students(conn) -> tuple[dict, dict]:
    """A linked student with paid payments (so receipts show), and another student."""
    paid = (
        select(payments.c.student_key)
        .where(payments.c.status == "paid", payments.c.deleted_at.is_(None))
        .group_by(payments.c.student_key)
    )
    rows = (
        conn.execute(
            select(students)
            .where(
                students.c.zoho_id.is_not(None),
                students.c.moodle_user_id.is_not(None),
                students.c.deleted_at.is_(None),
                students.c.student_key.in_(paid),
            )
            .order_by(students.c.student_key)
        )
        .mappings()
        .all()
    )
    assert len(rows) >= 2, "the sandbox college should hold linked students with paid payments"
    return dict(rows[0]), dict(rows[1])


def _log_events(engine, tenant_id: str, prefix: str = "web") -> dict[str, list[str]]:
    """A tenant's events in the log in every status, through the events pipeline's own log functions."""
    wanted = {"processed": 6, "failed": 3, "dead": 2, "pending": 1}
    rows, by_status = [], {}
    i = 0
    for status, count in wanted.items():
        for _ in range(count):
            event_id = f"{prefix}-{status}-{i:02d}"
            event = InboxEvent(
                event_id=event_id,
                tenant_id=tenant_id,
                sender="local_webhooks",
                received_at=T0 + timedelta(hours=i),
                body={"eventname": "\\core\\event\\user_graded", "relateduserid": 900 + i, "courseid": 7},
            )
            event_type = "user_graded" if i % 2 else "user_updated"
            rows.append(
                log.log_row(
                    event,
                    event_type=event_type,
                    record_id=str(900 + i),
                    user_id=900 + i,
                    time=T0,
                    file_name=f"{i}.json",
                )
            )
            by_status.setdefault(status, []).append(event_id)
            i += 1
    with engine.begin() as conn:
        log.insert_new(conn, rows)
        now = T0 + timedelta(days=1)
        log.mark_done(conn, {e: ("processed", None) for e in by_status["processed"]}, now)
        failed = [(event_id, 0) for event_id in by_status["failed"]]
        log.mark_failed(conn, failed, "moodle answered 503", now, max_attempts=5, base_seconds=30)
        # One attempt short of dead, so the failure below is its last.
        dead = [(event_id, 4) for event_id in by_status["dead"]]
        log.mark_failed(conn, dead, "user 901 not found", now, max_attempts=5, base_seconds=30)
    return by_status


@pytest.fixture(scope="session")
def college(tmp_path_factory) -> Iterator[College]:
    tmp = tmp_path_factory.mktemp("web")
    warehouse_url = f"sqlite:///{tmp / 'warehouse.db'}"
    with running_pipeline(warehouse_url, tmp, students=40, seed=17) as pipeline, pytest.MonkeyPatch.context() as env:
        pipeline.run("full_sync")
        env.delenv("DAGSTER_WEBSERVER_URL", raising=False)
        env.setenv("EVENTS_WEBHOOK_SECRETS", json.dumps({Settings().tenant_id: WEBHOOK_SECRET}))
        settings = Settings()
        engine = create_warehouse_engine(warehouse_url)
        try:
            with engine.begin() as conn:
                student, other = _pick_students(conn)
                _, admin_key = create_key(conn, settings.tenant_id, "admin", label="web tests")
                _, student_key = create_key(conn, settings.tenant_id, "student", student_key=student["student_key"])
                _, other_admin = create_key(conn, OTHER_TENANT, "admin", label="another college")
            event_ids = _log_events(engine, settings.tenant_id)
            other_tenant_event_ids = _log_events(engine, OTHER_TENANT, prefix="web-other")
        finally:
            engine.dispose()
        with serve_in_thread(create_app(settings), name="web-api") as url:
            yield College(
                url=url,
                sandbox=pipeline.sandbox,
                engine_url=warehouse_url,
                admin_key=admin_key,
                student_key=student_key,
                other_tenant_admin_key=other_admin,
                student=student,
                other_student=other,
                event_ids=event_ids,
                other_tenant_event_ids=other_tenant_event_ids,
            )


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's browser build, installed from npm (the lock file beside this file) on first use."""
    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is needed to install axe-core for the accessibility checks", pytrace=False)
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True, timeout=300)
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context):
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    assert not errors, f"the page raised: {errors}"


def sign_in(page, base_url: str, path: str, key: str) -> None:
    """Open a page and sign in with a key, as a person would (forgetting any key this tab held)."""
    page.goto(f"{base_url}{path}")
    page.evaluate("sessionStorage.clear()")
    page.reload()
    page.get_by_label("API key", exact=False).first.fill(key)
    page.get_by_role("button", name="Open").click()
    page.locator("#app").wait_for(state="visible")


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def set_theme(page, theme: str) -> None:
    """Set the theme through the toggle, as a person would."""
    toggle = page.get_by_role("button", name="Dark theme")
    if (toggle.get_attribute("aria-pressed") == "true") != (theme == "dark"):
        toggle.click()
    assert page.evaluate("document.documentElement.dataset.theme") == theme


def axe_violations(page, axe_source: str) -> list[dict]:
    """Critical and serious axe-core violations on the page as it is now."""
    page.evaluate(axe_source)
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})); }"
    )
    return [v for v in result if v["impact"] in ("critical", "serious")]


@pytest.fixture
def marts(college) -> None:
    """The five profile marts must be built; they arrive with the profile-API issue (16)."""
    import httpx

    health = httpx.get(f"{college.url}/v1/health").json()
    missing = [mart["name"] for mart in health["marts"] if not mart["exists"]]
    if missing:
        pytest.skip(f"the profile marts {', '.join(missing)} are not built on this branch yet (issue 16)")


def settled(page, panel_id: str) -> None:
    """Wait until a panel has finished loading (the pages' CSP forbids evaluating strings, so
    this waits on an attribute, not on a JavaScript predicate)."""
    page.locator(f'#{panel_id}:not([aria-busy="true"])').wait_for(state="attached")
