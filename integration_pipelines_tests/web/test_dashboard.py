"""The student dashboard in headless Chromium against the sidecar on a synced sandbox college:
each tab shows the profile API's figures (finance also checked against the generator's truth),
and a student key opens its own profile only."""

from __future__ import annotations

from decimal import Decimal

import httpx

from integration_pipelines_tests.web.conftest import settled, sign_in


def profile_of(college, student: dict) -> dict:
    response = httpx.get(
        f"{college.url}/v1/students/profile",
        params={"zoho_id": student["zoho_id"]},
        headers={"Authorization": f"Bearer {college.admin_key}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def open_tab(page, name: str):
    page.get_by_role("tab", name=name).click()
    panel = page.locator(f"#panel-{name.lower()}")
    settled(page, f"panel-{name.lower()}")
    return panel


def rows(panel, caption: str) -> list[list[str]]:
    table = panel.locator("table", has=panel.page.locator("caption", has_text=caption))
    return table.locator("tbody tr").evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))")


def money(m: dict) -> str:
    return f"{m['amount']} {m['currency']}" if m["currency"] else m["amount"]


def truth_finance(college, zoho_id: str) -> dict[str, tuple[Decimal, Decimal]]:
    """Per currency, (total fees, paid) from the generator: refunded lines count neither way."""
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for p in college.sandbox.app.college.iter_truth("payments"):
        if p["student_zoho_id"] != zoho_id or p["deleted"] or p["status"] == "refunded":
            continue
        total, paid = out.get(p["currency"], (Decimal(0), Decimal(0)))
        amount = Decimal(p["amount"])
        out[p["currency"]] = (total + amount, paid + (amount if p["status"] == "paid" else 0))
    return out


def test_each_tab_shows_the_profile_apis_figures_for_the_students_own_key(college, page, marts):
    profile = profile_of(college, college.student)
    sign_in(page, college.url, "/dashboard", college.student_key)

    panel = open_tab(page, "Profile")
    facts = panel.locator("#profile-facts").text_content() or ""
    s = profile["student"]
    for value in (s["full_name"], s["email"], s["phone"], s["city"], s["country"], s["status"], s["date_of_birth"]):
        if value:
            assert value in facts

    panel = open_tab(page, "Academics")
    assert [r[1] for r in rows(panel, "Programmes")] == [p["name"] or "—" for p in profile["programs"]]
    assert len(rows(panel, "Unit registrations")) == len(profile["registrations"])

    panel = open_tab(page, "Finance")
    for summary in profile["finance_summary"]:
        cards = panel.locator(f'[data-currency="{summary["currency"]}"]')
        assert cards.locator('[data-figure="total-fees"] .value').text_content() == money(summary["total_fees"])
        assert cards.locator('[data-figure="paid"] .value').text_content() == money(summary["paid"])
        assert cards.locator('[data-figure="outstanding"] .value').text_content() == money(summary["outstanding"])
    truth = truth_finance(college, college.student["zoho_id"])
    assert {
        f["currency"]: (Decimal(f["total_fees"]["amount"]), Decimal(f["paid"]["amount"]))
        for f in profile["finance_summary"]
    } == truth
    history = rows(panel, "Payment history")
    assert [r[2] for r in history] == [money(p["amount"]) for p in profile["payments"]]
    paid = [p for p in profile["payments"] if p["receipt_url"]]
    assert paid and panel.get_by_role("button", name="Download receipt for").count() == len(paid)
    with page.expect_download() as download:
        panel.get_by_role("button", name="Download receipt for").first.click()
    assert open(download.value.path(), "rb").read(5) == b"%PDF-"

    panel = open_tab(page, "Classes")
    classes = rows(panel, "Classes")
    assert [r[0] for r in classes] == [c["name"] or "—" for c in profile["classes"]]
    for row, c in zip(classes, profile["classes"], strict=True):
        assert row[1] == (", ".join(t["full_name"] for t in c["teachers"]) or "—")
        assert row[3] == c["status"]
    links = panel.get_by_role("link").evaluate_all("links => links.map(a => a.href)")
    assert links == [c["moodle_course_url"] for c in profile["classes"] if c["moodle_course_url"]]

    panel = open_tab(page, "Grades")
    summary = profile["grade_summary"]
    for label, key in (("Distinction", "distinction"), ("Merit", "merit"), ("Pass", "pass"), ("Refer", "refer")):
        assert panel.locator(f'[data-grade="{label}"] .num').text_content() == str(summary[key])
    average = summary["average_points_per_credit"]
    expected_average = "—" if average is None else f"{average:.2f}"
    assert panel.locator('[data-figure="average"] .value').text_content() == expected_average
    assert [r[1] for r in rows(panel, "Grade history")] == [g["btec_grade"] or "—" for g in profile["grades"]]


def test_a_student_key_cannot_open_another_student(college, page, marts):
    other = college.other_student
    sign_in(page, college.url, f"/dashboard?zoho_id={other['zoho_id']}", college.student_key)
    panel = open_tab(page, "Profile")
    assert "Not your profile" in (panel.locator('[role="alert"]').text_content() or "")
    assert other["email"] not in page.content()
    response = httpx.get(
        f"{college.url}/v1/students/profile",
        params={"zoho_id": other["zoho_id"]},
        headers={"Authorization": f"Bearer {college.student_key}"},
    )
    assert response.status_code == 403


def test_an_admin_key_of_another_tenant_finds_no_student(college, page, marts):
    sign_in(page, college.url, f"/dashboard?zoho_id={college.student['zoho_id']}", college.other_tenant_admin_key)
    panel = open_tab(page, "Profile")
    assert "Student not found" in (panel.locator('[role="alert"]').text_content() or "")


def test_tabs_follow_the_arrow_keys_and_each_panel_says_when_it_cannot_load(college, page):
    # Without a student chosen, an admin key's dashboard shows the error state in the panel.
    sign_in(page, college.url, "/dashboard", college.admin_key)
    page.get_by_role("tab", name="Profile").focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.textContent") == "Academics"
    assert page.get_by_role("tab", name="Academics").get_attribute("aria-selected") == "true"
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.textContent") == "Grades"
    panel = open_tab(page, "Grades")
    assert "No student chosen" in (panel.locator('[role="alert"]').text_content() or "")


def test_the_theme_choice_is_remembered(college, page):
    sign_in(page, college.url, "/dashboard", college.student_key)
    toggle = page.get_by_role("button", name="Dark theme")
    start = page.evaluate("document.documentElement.dataset.theme")
    toggle.click()
    flipped = "dark" if start == "light" else "light"
    assert page.evaluate("document.documentElement.dataset.theme") == flipped
    page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == flipped
    assert page.evaluate("localStorage.getItem('ip-theme')") == flipped
