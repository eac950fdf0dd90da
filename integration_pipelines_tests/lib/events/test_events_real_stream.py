"""The real stream: all 83 events a real Moodle 5.1 site fired (`captured.jsonl`), posted in the
`local_webhooks` plugin's exact request format to the receiver over real HTTP, against a sandbox
holding the same site, then processed: the canonical tables reflect the stream.

The capture site's ids are mapped onto the sandbox college's equivalents (course 2 -> a course
of the college, course module 1 and grade item 2 -> one of its numeric assignments, grade item 1
-> its course total, student02 (user 4) -> a student of it with a grade on that assignment, the
probe users 53 and 54 -> ids the college has never used), each id keeping the JSON type the
capture gave it. The sandbox is put in the state the stream leaves the site in: student02's
grade regraded to 77 at the stream's time, the probe users gone (the stream creates, grades,
unenrols and deletes them). The canonical tables must then equal a fresh full sync of the
sandbox, with student02's grade at 77 and nothing left of the probe users.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from integration_pipelines.api import create_app
from integration_pipelines.lib.events.inbox import EventsInbox
from integration_pipelines.lib.mapping import load_mapping
from integration_pipelines.lib.serving import serve_in_thread
from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
from integration_pipelines.sandbox.config import SandboxConfig
from integration_pipelines.sandbox.mutate import EventLog
from integration_pipelines.sandbox.server import run_sandbox
from integration_pipelines.settings import Settings
from integration_pipelines_tests.conftest import empty_warehouse_url
from integration_pipelines_tests.lib.events.helpers import events_bench, rows, sync_college

STREAM = Path(__file__).resolve().parents[2] / "fixtures" / "moodle_events" / "captured.jsonl"
TENANT = "sandbox"
SECRET = "sekret-token-123"
MAPPING = load_mapping()


def same_type(original: Any, value: int) -> Any:
    """`value` typed as Moodle typed the original (int or numeric string)."""
    return str(value) if isinstance(original, str) else value


class SiteMap:
    """The capture site's ids, and the sandbox's stand-ins for them."""

    def __init__(self, college):
        self.course, self.assignment, self.student = self._pick(college)
        first_free = max(college.users) + 1000
        self.users = {53: first_free, 54: first_free + 1, 4: self.student}
        self.items = {
            2: self.assignment.item_id,
            1: self.course.total_item_id,
            3: 9_000_003,  # items of the capture's course that are no assignment's
            4: 9_000_004,
        }

    @staticmethod
    def _pick(college):
        for course in sorted(college.courses.values(), key=lambda c: c.id):
            for a in course.assignments:
                if a.scale or a.grademax < 100:
                    continue
                for uid, grade in sorted(a.grades.items()):
                    user = college.users.get(uid)
                    if user is not None and not user.deleted and not user.is_teacher and grade.raw != 77:
                        return course, a, uid
        raise AssertionError("no numeric assignment with a graded student")

    def user(self, value: Any) -> Any:
        if value is None or int(value) not in self.users:
            return value
        return same_type(value, self.users[int(value)])

    def event(self, data: dict) -> dict:
        out = dict(data)
        name = data["eventname"].rsplit("\\", 1)[-1]
        for key in ("userid", "relateduserid"):
            out[key] = self.user(data[key])
        if name.startswith("user_") and not name.startswith(("user_enrolment", "user_graded")):
            out["objectid"] = self.user(data["objectid"])
        if data["courseid"] not in (0, "0"):
            out["courseid"] = same_type(data["courseid"], self.course.id)
        level = data["contextlevel"]
        if level == 50:
            out["contextinstanceid"] = same_type(data["contextinstanceid"], self.course.id)
        elif level == 70:
            out["contextinstanceid"] = same_type(data["contextinstanceid"], self.assignment.cmid)
        elif level == 30:
            out["contextinstanceid"] = self.user(data["contextinstanceid"])
        other = data.get("other")
        if isinstance(other, dict):
            other = dict(other)
            if "itemid" in other and name in ("user_graded", "grade_deleted"):
                other["itemid"] = same_type(other["itemid"], self.items[int(other["itemid"])])
            if "relateduserid" in other:
                other["relateduserid"] = self.user(other["relateduserid"])
            if "courseid" in other:
                other["courseid"] = same_type(other["courseid"], self.course.id)
            if isinstance(other.get("userenrolment"), dict):
                ue = dict(other["userenrolment"])
                ue["userid"] = self.user(ue["userid"])
                ue["courseid"] = same_type(ue["courseid"], self.course.id)
                other["userenrolment"] = ue
            out["other"] = other
        return out


def plugin_request(data: dict) -> bytes:
    """The body local_webhooks sends: get_data(), then host, token, extra, json_encode()d."""
    return EventLog.php_json({**data, "host": "127.0.0.1", "token": SECRET, "extra": "extra-field-value"})


@pytest.fixture
def site(warehouse_url, tmp_path, monkeypatch):
    monkeypatch.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EVENTS_WEBHOOK_SECRETS", json.dumps({TENANT: SECRET}))
    with run_sandbox(SandboxConfig(students=40, seed=9)) as sandbox:
        engine = create_warehouse_engine(warehouse_url)
        ensure_schema(engine)
        sync_college(engine, sandbox, TENANT, MAPPING)
        yield sandbox, engine
        engine.dispose()


def test_the_captured_stream_is_accepted_and_the_canonical_tables_reflect_it(site, request, tmp_path):
    sandbox, engine = site
    stream = [json.loads(line)["data"] for line in STREAM.read_text().splitlines()]
    assert len(stream) == 83
    ids = SiteMap(sandbox.college)
    mapped = [ids.event(data) for data in stream]
    before = rows(engine, "grades", TENANT)
    grade_key = f"moodle:{ids.assignment.id}:{ids.student}"
    assert before[grade_key]["raw_grade"] != 77

    # The site's state after the stream: student02 regraded to 77 when the stream says.
    regrade = next(
        d for d in mapped if d["eventname"].endswith("user_graded") and str(d["relateduserid"]) == str(ids.student)
    )
    with sandbox.lock:
        grade = ids.assignment.grades[ids.student]
        grade.raw, grade.timemodified = 77, regrade["timecreated"]

    settings = Settings()
    with serve_in_thread(create_app(settings), name="api") as url, httpx.Client(base_url=url) as http:
        headers = {"Content-Type": "application/json", "User-Agent": "MoodleBot/5.1 (+http://127.0.0.1:8089)"}
        statuses = [
            http.post("/v1/events/moodle", content=plugin_request(d), headers=headers).status_code for d in mapped
        ]
    # Moodle fired some events twice with identical data in the same second (the plugin's own
    # response_answer): identical get_data() is one event to a receiver deriving ids from it, so
    # the second copy answers 200 duplicate. Every other event is a new one.
    bodies = [json.dumps(d, sort_keys=True) for d in mapped]
    distinct = len(set(bodies))
    repeated = {json.loads(b)["eventname"] for b in bodies if bodies.count(b) > 1}
    assert repeated == {"\\local_webhooks\\event\\response_answer"}
    assert set(statuses) == {200, 202} and statuses.count(202) == distinct

    assert settings.events_inbox_dir is not None
    bench = events_bench(engine, sandbox, tmp_path, TENANT, MAPPING)
    bench.inbox = EventsInbox.at(settings.events_inbox_dir)
    bench.processor.inbox = bench.inbox
    results = bench.process_all()
    outcomes = {k: sum(r.outcomes[k] for r in results) for k in ("processed", "ignored", "failed", "dead")}
    assert outcomes["failed"] == outcomes["dead"] == 0
    assert outcomes["processed"] + outcomes["ignored"] == distinct
    applied = {json.dumps(d, sort_keys=True) for d in mapped if d["eventname"].rsplit("\\", 1)[-1] not in IGNORED}
    assert outcomes["processed"] == len(applied)

    after = {table: rows(engine, table, TENANT) for table in ("students", "enrollments", "grades")}
    assert after["grades"][grade_key]["raw_grade"] == 77
    probes = {ids.users[53], ids.users[54]}
    for table, found in after.items():
        assert not [r for r in found.values() if r.get("moodle_user_id") in probes], table

    with empty_warehouse_url(engine.dialect.name, request, tmp_path / "fresh") as fresh_url:
        (tmp_path / "fresh").mkdir(exist_ok=True)
        fresh = create_warehouse_engine(fresh_url)
        ensure_schema(fresh)
        sync_college(fresh, sandbox, TENANT, MAPPING)
        for table, found in after.items():
            truth = rows(fresh, table, TENANT)
            strip = lambda rs: {k: {c: v for c, v in r.items() if c != "source_modified_at"} for k, r in rs.items()}  # noqa: E731
            assert strip(found) == strip(truth), table
        fresh.dispose()


# Event types of the stream this project does not apply.
IGNORED = {
    "user_password_updated",
    "notification_sent",
    "role_assigned",
    "role_unassigned",
    "assessable_uploaded",
    "submission_created",
    "assessable_submitted",
    "config_log_created",
    "service_added",
    "service_updated",
    "response_answer",
}
