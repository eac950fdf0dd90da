"""mutate: what it changes, and the Moodle events it emits in the reference webhook shape."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx

from integration_pipelines.sandbox import SandboxConfig, run_sandbox

from .conftest import MOODLE_EVENTS
from .shapes import json_type

ALL_MOODLE_CHANGES = {
    "zoho_new_students": 1,
    "moodle_new_grades": 4,
    "moodle_regrades": 3,
    "moodle_suspend_enrolments": 2,
    "moodle_user_updates": 2,
    "moodle_completions": 2,
    "moodle_delete_users": 1,
}


def reference_bodies() -> dict[str, list[dict]]:
    """Every captured variant per event name: the webhook POST bodies, plus get_data() files."""
    out: dict[str, list[dict]] = {}
    for line in (MOODLE_EVENTS / "webhook_posts.jsonl").read_text().splitlines():
        body = json.loads(json.loads(line)["body"])
        out.setdefault(body["eventname"], []).append(body)
    for path in MOODLE_EVENTS.glob("*.json"):
        data = json.loads(path.read_text())
        if "eventname" in data:
            out.setdefault(data["eventname"], []).append({**data, "host": "", "token": "", "extra": ""})
    return out


def signature(body: dict) -> tuple:
    """Key order and JSON type of every key (and of every key inside ``other``)."""
    other = body["other"]
    other_sig = tuple((k, json_type(v)) for k, v in other.items()) if isinstance(other, dict) else json_type(other)
    if isinstance(other, dict) and isinstance(other.get("userenrolment"), dict):
        other_sig += tuple((k, json_type(v)) for k, v in other["userenrolment"].items())
    return tuple((k, json_type(v)) for k, v in body.items() if k != "other") + (other_sig,)


def test_every_emitted_event_matches_a_captured_variant():
    refs = reference_bodies()
    with run_sandbox(SandboxConfig(students=80, seed=4, college_knobs={"unmatched_share": 0.2})) as sb:
        summary = sb.mutate(**ALL_MOODLE_CHANGES)
        events = httpx.get(sb.base_url + "/_sandbox/events").json()["events"]
    assert summary["events"]["emitted"] == len(events) > 0
    names = {e["eventname"] for e in events}
    assert {
        "\\core\\event\\user_created",
        "\\core\\event\\user_graded",
        "\\mod_assign\\event\\submission_graded",
        "\\core\\event\\user_enrolment_updated",
        "\\core\\event\\user_deleted",
        "\\core\\event\\course_completed",
    } <= names
    for e in events:
        variants = {signature(r) for r in refs[e["eventname"]]}
        assert signature(e) in variants, e


def test_grading_fires_item_total_then_submission_events():
    with run_sandbox(SandboxConfig(students=40, seed=4)) as sb:
        sb.mutate(moodle_new_grades=1)
        events = httpx.get(sb.base_url + "/_sandbox/events").json()["events"]
    assert [e["eventname"] for e in events] == [
        "\\core\\event\\user_graded",
        "\\core\\event\\user_graded",
        "\\mod_assign\\event\\submission_graded",
    ]
    assert events[1]["userid"] == -1  # the gradebook regrading the course total
    assert isinstance(events[2]["objectid"], int) and isinstance(events[0]["objectid"], str)


def test_mutation_changes_truth_and_moodle_answers():
    with run_sandbox(SandboxConfig(students=40, seed=4)) as sb:
        before = {
            (g["moodle_user_id"], g["moodle_grade_item_id"]) for g in sb.truth()["grades"] if g["source"] == "moodle"
        }
        sb.mutate(moodle_new_grades=3, zoho_new_students=1)
        after_truth = sb.truth()
        after = {
            (g["moodle_user_id"], g["moodle_grade_item_id"]) for g in after_truth["grades"] if g["source"] == "moodle"
        }
        assert len(after - before) == 3
        # the new student is in Moodle with the crmid field, and enrolled
        users = httpx.get(
            sb.moodle_url + "/webservice/rest/server.php",
            params={
                "wstoken": sb.config.moodle_token,
                "wsfunction": "core_user_get_users",
                "moodlewsrestformat": "json",
                "criteria[0][key]": "email",
                "criteria[0][value]": "%@student.example.ac.uk",
            },
        ).json()["users"]
        crmids = {u["customfields"][0]["value"] for u in users if "customfields" in u}
        newest = max((s for s in after_truth["students"] if s["zoho_id"]), key=lambda s: int(s["zoho_id"]))
        assert newest["zoho_id"] in crmids and newest["moodle_user_id"] is not None
        assert len(after_truth["students"]) == len([1 for _ in sb.college.iter_truth("students")])


def test_events_are_posted_to_the_webhook_url():
    received: list[tuple[dict, bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{hook.server_port}/moodle-webhook"
        with run_sandbox(SandboxConfig(students=30, seed=4, webhook_url=url)) as sb:
            sb.mutate(moodle_user_updates=2)
            sb.app.events.wait_delivered()
            assert sb.app.events.delivered == 2
    finally:
        hook.shutdown()
    headers, body = received[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("MoodleBot/5.1")
    assert headers["X-Moodle-Token"] == "sandbox-webhook-token"
    event = json.loads(body)
    assert event["eventname"] == "\\core\\event\\user_updated"
    assert list(event)[-3:] == ["host", "token", "extra"]
    assert b'"\\\\core\\\\event\\\\user_updated"' in body
