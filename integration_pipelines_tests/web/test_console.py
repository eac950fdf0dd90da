"""The admin console in headless Chromium against the sidecar on a synced sandbox college."""

from __future__ import annotations

import csv
import io
import json
import re

import httpx
from playwright.sync_api import expect
from sqlalchemy import create_engine, select

from integration_pipelines.lib.warehouse.schema import integration_events_log
from integration_pipelines_tests.web.conftest import WEBHOOK_SECRET, settled, sign_in


def open_console(page, college, tab: str, key: str | None = None) -> None:
    sign_in(page, college.url, "/admin", key or college.admin_key)
    page.get_by_role("tab", name=tab).click()


def api_events(college, **params) -> httpx.Response:
    """The events API as the console's admin key reads it."""
    return httpx.get(
        f"{college.url}/v1/events", params=params, headers={"Authorization": f"Bearer {college.admin_key}"}
    )


def shown_event_ids(page) -> list[str]:
    return page.locator("#panel-events tbody tr").evaluate_all("rows => rows.map(r => r.dataset.eventId)")


def test_the_event_log_filters_and_exports_a_csv_whose_rows_match_the_api(college, page):
    open_console(page, college, "Event log")
    panel = page.locator("#panel-events")
    page.locator("#panel-events tbody tr").first.wait_for()
    everything = api_events(college, limit=50).json()["events"]
    assert shown_event_ids(page) == [e["event_id"] for e in everything]

    panel.get_by_label("Status").select_option("failed")
    panel.get_by_label("Type").fill("user_graded")
    page.get_by_role("button", name="Apply filters").click()
    settled(page, "panel-events")
    expected = api_events(college, status="failed", type="user_graded", limit=50).json()["events"]
    assert expected, "the seeded log holds failed user_graded events"
    assert shown_event_ids(page) == [e["event_id"] for e in expected]

    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    exported = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    from_api = list(
        csv.DictReader(io.StringIO(api_events(college, status="failed", type="user_graded", format="csv").text))
    )
    assert exported == from_api and [r["event_id"] for r in exported] == [e["event_id"] for e in expected]

    # A Moodle user id in the search box filters by user; the full JSON of an event opens in a dialog.
    panel.get_by_label("Status").select_option("")
    panel.get_by_label("Type").fill("")
    user = expected[0]["user_id"]
    panel.get_by_label("Event id or Moodle user id").fill(str(user))
    page.get_by_role("button", name="Apply filters").click()
    settled(page, "panel-events")
    assert shown_event_ids(page) == [e["event_id"] for e in api_events(college, user=user).json()["events"]]
    page.get_by_role("button", name=f"Show the JSON of event {expected[0]['event_id']}").click()
    shown = json.loads(page.locator("#event-json").text_content() or "")
    assert shown["event_id"] == expected[0]["event_id"] and shown["payload"]["body"]["relateduserid"] == user


def test_the_event_log_pages_by_fifty(college, page):
    open_console(page, college, "Event log")
    page.locator("#panel-events tbody tr").first.wait_for()
    assert page.locator("#panel-events tbody tr").count() <= 50
    assert page.get_by_text("Page 1").is_visible()


def test_retry_puts_a_failed_event_back_in_line_and_retry_all_takes_every_match(college, page):
    engine = create_engine(college.engine_url)
    c = integration_events_log.c

    def logged(event_id):
        with engine.connect() as conn:
            return conn.execute(select(c.status, c.retry_count).where(c.event_id == event_id)).one()

    failed = college.event_ids["failed"][0]
    assert logged(failed) == ("failed", 1)
    open_console(page, college, "Failed and dead")
    row = page.locator(f'#panel-failed tr[data-event-id="{failed}"]')
    row.get_by_role("button", name=f"Retry event {failed}").click()
    expect(row.locator(".event-status")).to_have_text("queued for retry")
    # The events API requeues as due now with a fresh count of attempts (status stays `failed`
    # until the next retry pass applies it).
    assert logged(failed) == ("failed", 0)

    # "Retry all matching" of one type takes every failed and dead event of that type, and only those.
    graded = [e for e in college.event_ids["failed"] + college.event_ids["dead"] if logged(e)[1] > 0]
    assert {logged(e)[0] for e in graded} == {"failed", "dead"}
    untouched = {e: logged(e) for e in college.event_ids["processed"] + college.event_ids["pending"]}
    page.locator("#panel-failed").get_by_label("Type").fill("user_graded")
    page.get_by_role("button", name="Show matching").click()
    settled(page, "panel-failed")
    of_type = [e for e in graded if page.locator(f'#panel-failed tr[data-event-id="{e}"]').count()]
    assert of_type and len(of_type) < len(graded)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Retry all matching").click()
    expect(page.locator("#retry-all-result")).to_have_text(re.compile(r"^Queued (\d+) of \1 for retry\.$"))
    assert {e for e in graded if logged(e) == ("failed", 0)} == set(of_type)
    assert {e: logged(e) for e in untouched} == untouched
    # The other tenant's failed and dead events of that type were not this console's to retry.
    theirs = college.other_tenant_event_ids["failed"] + college.other_tenant_event_ids["dead"]
    assert all(logged(e)[1] > 0 for e in theirs)
    engine.dispose()


def test_another_tenants_admin_key_shows_only_that_tenants_events(college, page):
    mine = {e for ids in college.event_ids.values() for e in ids}
    theirs = college.other_tenant_event_ids
    open_console(page, college, "Event log", key=college.other_tenant_admin_key)
    page.locator("#panel-events tbody tr").first.wait_for()
    shown = shown_event_ids(page)
    assert set(shown) == {e for ids in theirs.values() for e in ids} and not mine & set(shown)

    page.get_by_role("tab", name="Failed and dead").click()
    settled(page, "panel-failed")
    failing = page.locator("#panel-failed tbody tr").evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    assert set(failing) == set(theirs["failed"] + theirs["dead"])


def test_the_search_finds_a_student_by_a_prefix_of_their_name_and_opens_their_dashboard(college, page, marts):
    student = college.other_student
    open_console(page, college, "Students")
    page.get_by_label("Name, email, username or student number").fill(student["first_name"][:3].lower())
    link = page.locator("#search-results").get_by_role("link", name=f"{student['first_name']} {student['last_name']}")
    link.first.click()
    page.wait_for_url(f"**/dashboard?zoho_id={student['zoho_id']}*")
    page.locator("#profile-facts").wait_for()
    assert student["email"] in (page.locator("#profile-facts").text_content() or "")


def test_the_sync_buttons_say_that_dagster_is_not_configured(college, page):
    open_console(page, college, "Sync history")
    status = page.locator("#sync-launcher")
    status.get_by_text("No Dagster webserver is configured").wait_for()
    for job in ("full_sync", "incremental_sync"):
        assert page.get_by_role("button", name=f"Start {job}").is_disabled()
    settled(page, "panel-syncs")
    history = httpx.get(
        f"{college.url}/v1/sync/history", headers={"Authorization": f"Bearer {college.admin_key}"}
    ).json()["items"]
    shown = page.locator("#panel-syncs tbody tr").count()
    assert shown == len(history)


def test_the_configuration_masks_every_secret_and_tests_both_connections(college, page):
    open_console(page, college, "Configuration")
    page.locator('[data-setting="moodle_token"]').wait_for()
    assert page.locator('[data-setting="moodle_token"]').text_content() == "********"
    assert json.loads(page.locator('[data-setting="events_webhook_secrets"]').text_content() or "") == {
        "default": "********"
    }
    html = page.content()
    for secret in (college.sandbox.config.moodle_token, college.sandbox.config.zoho_client_secret, WEBHOOK_SECRET):
        assert secret not in html
    assert page.locator("#panel-config").get_by_role("cell", name="Payment_Status").is_visible()

    page.get_by_role("button", name="Test connection: Moodle").click()
    page.locator("#conn-moodle").get_by_text("Reached").wait_for()
    assert "site: " in (page.locator("#conn-moodle").text_content() or "")
    page.get_by_role("button", name="Test connection: Zoho").click()
    page.locator("#conn-zoho").get_by_text("Reached").wait_for()
    assert "edition: " in (page.locator("#conn-zoho").text_content() or "")


def test_a_student_key_cannot_open_the_console(college, page):
    sign_in(page, college.url, "/admin", college.student_key)
    page.get_by_text("The admin console needs an admin key").wait_for()
    assert page.locator("#panel-events").count() == 0
    for path in ("/v1/admin/config", "/v1/students/search?q=a", "/v1/sync/history"):
        response = httpx.get(f"{college.url}{path}", headers={"Authorization": f"Bearer {college.student_key}"})
        assert response.status_code == 403, path
