"""Every dashboard tab and console page, light and dark: a screenshot of each (under
docs/screenshots/run/, which the README names) and no critical or serious axe-core violation;
and both pages fit a phone's width."""

from __future__ import annotations

import pytest

from integration_pipelines_tests.web.conftest import axe_violations, screenshot, set_theme, settled, sign_in

DASHBOARD_TABS = ("Profile", "Academics", "Finance", "Classes", "Grades")
CONSOLE_TABS = ("Students", "Event log", "Failed and dead", "Sync history", "Configuration")


def _settle(page, tab: str) -> None:
    panel_id = page.get_by_role("tab", name=tab).get_attribute("aria-controls")
    settled(page, panel_id)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_dashboard_tab_is_accessible_and_photographed(college, page, axe_source, theme):
    sign_in(page, college.url, "/dashboard", college.student_key)
    set_theme(page, theme)
    problems = {}
    for tab in DASHBOARD_TABS:
        page.get_by_role("tab", name=tab).click()
        _settle(page, tab)
        assert screenshot(page, f"dashboard-{tab.lower()}-{theme}").stat().st_size > 0
        problems[tab] = axe_violations(page, axe_source)
    assert problems == {tab: [] for tab in DASHBOARD_TABS}


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_every_console_page_is_accessible_and_photographed(college, page, axe_source, theme):
    sign_in(page, college.url, "/admin", college.admin_key)
    set_theme(page, theme)
    problems = {}
    for tab in CONSOLE_TABS:
        page.get_by_role("tab", name=tab).click()
        if tab == "Students":
            page.get_by_label("Name, email, username or student number").fill(college.other_student["first_name"][:2])
            page.locator("#panel-students .results, #panel-students [role=alert]").first.wait_for()
        _settle(page, tab)
        name = tab.lower().replace(" ", "-")
        assert screenshot(page, f"console-{name}-{theme}").stat().st_size > 0
        problems[tab] = axe_violations(page, axe_source)
    assert problems == {tab: [] for tab in CONSOLE_TABS}


def test_the_sign_in_form_is_accessible(college, page, axe_source):
    for path in ("/dashboard", "/admin"):
        page.goto(f"{college.url}{path}")
        page.evaluate("sessionStorage.clear()")
        page.reload()
        page.get_by_label("API key", exact=False).first.wait_for()
        assert axe_violations(page, axe_source) == [], path


@pytest.mark.parametrize(("path", "key"), [("/dashboard", "student_key"), ("/admin", "admin_key")])
def test_both_pages_fit_a_phone(college, browser, path, key):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        sign_in(page, college.url, path, getattr(college, key))
        tabs = DASHBOARD_TABS if path == "/dashboard" else CONSOLE_TABS
        for tab in tabs:
            page.get_by_role("tab", name=tab).click()
            _settle(page, tab)
            # Wide tables scroll inside their own box; the page itself never scrolls sideways.
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} {tab}: {overflow}px wider than the phone"
        screenshot(page, f"phone{path.replace('/', '-')}")
    finally:
        context.close()
