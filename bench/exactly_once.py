"""Exactly once under failure: event files dropped, processing SIGKILLed part-way, recovered.

    .venv/bin/python bench/exactly_once.py [--events 20000] [--kills 3] [--backend sqlite|postgresql]

A college of Moodle users, enrolments and assignment grade items is landed raw and applied, as a
full_sync would. Then `--events` distinct valid events are dropped into the inbox in shuffled
order (so updates of one grade arrive out of order): grades given and changed (`user_graded`,
each with its own time), grades deleted, activity completions, and events this project ignores;
plus 10% repeats of them under other file names (as if dropped by hand twice) and 1% malformed
files. A worker process drains the inbox (claim a batch, `EventProcessor.process_batch`, the
code `process_events` runs) and is killed with SIGKILL `--kills` times part-way, each time
after it has applied more; a last worker recovers the claimed batches and finishes.

It then checks, and exits 1 unless all hold:
- the canonical grades and the raw completions equal an independent replay of the valid events
  in timestamp order (plain Python over the generated events);
- the log holds each valid event_id exactly once, processed or ignored;
- every malformed file sits in quarantine beside its `.reason`; the inbox and claims are empty.

The CI-sized run is `integration_pipelines_tests/lib/events/test_events_exactly_once.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from integration_pipelines.lib.canonical.apply import apply_table, canonical_tables  # noqa: E402
from integration_pipelines.lib.events.inbox import EventsInbox  # noqa: E402
from integration_pipelines.lib.events.models import InboxEvent, LocalWebhooksBody, derived_event_id  # noqa: E402
from integration_pipelines.lib.events.process import EventProcessor  # noqa: E402
from integration_pipelines.lib.mapping import load_mapping  # noqa: E402
from integration_pipelines.lib.raw_sync import RawLander  # noqa: E402
from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema  # noqa: E402
from integration_pipelines.lib.warehouse.engine import begin_write  # noqa: E402
from integration_pipelines.lib.warehouse.schema import grades, integration_events_log, raw_records  # noqa: E402

TENANT = "college"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BASE_TIME = 1_795_000_000  # Moodle seconds (2026-11)
USERS, ASSIGNMENTS = 300, 12


def item_of(assignment: int) -> dict:
    return {
        "id": 1000 + assignment,
        "itemname": f"Assignment {assignment}",
        "itemtype": "mod",
        "itemmodule": "assign",
        "iteminstance": 500 + assignment,
        "idnumber": "",
        "grademin": 0,
        "grademax": 100,
        "scaleid": None,
        "cmid": 700 + assignment,
        "courseid": 1 + assignment % 3,
    }


def seed_college(url: str) -> None:
    """Moodle users enrolled as students in three courses, and the assignments' grade items."""
    engine = create_warehouse_engine(url)
    ensure_schema(engine)
    mapping = load_mapping()
    with begin_write(engine) as conn:
        lander = RawLander(conn, TENANT, "moodle", ("users", "enrolments", "grade_items"), snapshot=False)
        for u in range(USERS):
            uid = 10_000 + u
            user = {"id": uid, "firstname": "S", "lastname": f"N{u}", "email": f"s{u}@x.ac.uk", "idnumber": ""}
            lander.land("users", str(uid), user, EPOCH)
            for course in (1, 2, 3):
                enrolment = {"courseid": course, "userid": uid, "suspended": False, "roles": [{"shortname": "student"}]}
                lander.land("enrolments", f"{course}:{uid}", enrolment, EPOCH)
        for a in range(ASSIGNMENTS):
            lander.land("grade_items", str(1000 + a), item_of(a), EPOCH)
        lander.finish()
        for table in canonical_tables():
            apply_table(conn, table, TENANT, mapping, full=True)
    engine.dispose()


def moodle_event(name: str, rng: random.Random, at: int, user: int, assignment: int) -> dict:
    """A local_webhooks body of one event, with Moodle's own mixing of int and string ids."""
    item = item_of(assignment)
    course = str(item["courseid"])
    common = {
        "component": "core",
        "crud": "u",
        "edulevel": 1,
        "contextid": 63,
        "contextlevel": 50,
        "contextinstanceid": course,
        "userid": "48",
        "courseid": course,
        "relateduserid": str(user) if rng.random() < 0.5 else user,
        "anonymous": 0,
        "timecreated": at,
        "host": "moodle.example",
        "extra": "",
    }
    if name == "user_graded":
        final = rng.choice([rng.randint(0, 100), round(rng.uniform(0, 100), 2)])
        other = {"itemid": str(item["id"]), "overridden": False, "finalgrade": final}
        return {
            "eventname": "\\core\\event\\user_graded",
            "action": "graded",
            "target": "user",
            "objecttable": "grade_grades",
            "objectid": str(rng.randint(1, 10**6)),
            **common,
            "other": other,
        }
    if name == "grade_deleted":
        other = {"itemid": str(item["id"]), "overridden": False, "finalgrade": "50.00000"}
        return {
            "eventname": "\\core\\event\\grade_deleted",
            "action": "deleted",
            "target": "grade",
            "objecttable": "grade_grades",
            "objectid": str(rng.randint(1, 10**6)),
            **{**common, "crud": "d"},
            "other": other,
        }
    if name == "course_module_completion_updated":
        other = {"relateduserid": user, "overrideby": None, "completionstate": rng.choice([0, 1])}
        return {
            "eventname": "\\core\\event\\course_module_completion_updated",
            "action": "updated",
            "target": "course_module_completion",
            "objecttable": "course_modules_completion",
            "objectid": rng.randint(1, 10**6),
            **{**common, "contextlevel": 70, "contextinstanceid": str(item["cmid"])},
            "other": other,
        }
    other = {"id": rng.randint(1, 10**6), "component": "", "itemid": 0}  # ignored: role_assigned
    return {
        "eventname": "\\core\\event\\role_assigned",
        "action": "assigned",
        "target": "role",
        "objecttable": "role",
        "objectid": "5",
        **{**common, "crud": "c"},
        "other": other,
    }


def generate(count: int, seed: int) -> list[dict]:
    """`count` distinct valid events, each at its own second (so "newest" is never a tie)."""
    rng = random.Random(seed)
    kinds = ["user_graded"] * 7 + ["grade_deleted", "course_module_completion_updated", "role_assigned"]
    events = []
    # Few keys, many events: each grade is given, changed and deleted several times.
    for i in range(count):
        user = 10_000 + rng.randrange(min(USERS, max(10, count // 40)))
        events.append(moodle_event(rng.choice(kinds), rng, BASE_TIME + i, user, rng.randrange(ASSIGNMENTS)))
    return events


def drop(inbox: EventsInbox, events: list[dict], seed: int) -> tuple[set[str], list[str]]:
    """Drop the events (shuffled), 10% repeats by hand and 1% malformed files; returns the valid
    event ids and the malformed files' names."""
    rng = random.Random(seed + 1)
    ids, files = set(), []
    received = datetime.now(UTC)
    for body in events:
        parsed = LocalWebhooksBody.model_validate({"token": "", **body})
        event_id = derived_event_id(TENANT, parsed.event())
        ids.add(event_id)
        event = InboxEvent(
            event_id=event_id, tenant_id=TENANT, sender="local_webhooks", received_at=received, body=body
        )
        files.append(event.to_json())
    files += [rng.choice(files[: len(events)]) for _ in range(len(events) // 10)]  # repeats
    rng.shuffle(files)
    for i, content in enumerate(files):
        path = inbox.tmp / f"{i}.tmp"
        path.write_bytes(content)
        os.replace(path, inbox.inbox / f"drop-{i:07d}.json")
    malformed = []
    for i in range(max(1, len(events) // 100)):
        name = f"malformed-{i:05d}.json"
        garbage = rng.choice([b"{not json", b'{"event_id": "x"}', json.dumps({"sender": "zoho", "body": []}).encode()])
        (inbox.inbox / name).write_bytes(garbage)
        malformed.append(name)
    return ids, malformed


def replay(events: list[dict]) -> tuple[dict, dict]:
    """The state the valid events leave, applied in timestamp order by plain Python: grades by
    (assignment, user), activity completions by (cm, user)."""
    grade_state: dict[tuple[int, int], float | None] = {}
    completion_state: dict[tuple[int, int], int] = {}
    for e in sorted(events, key=lambda e: e["timecreated"]):
        name = e["eventname"].rsplit("\\", 1)[-1]
        user = int(e["relateduserid"])
        if name in ("user_graded", "grade_deleted"):
            assignment = int(e["other"]["itemid"]) - 1000 + 500
            grade_state[(assignment, user)] = e["other"]["finalgrade"] if name == "user_graded" else None
        elif name == "course_module_completion_updated":
            completion_state[(int(e["contextinstanceid"]), user)] = e["other"]["completionstate"]
    return {k: v for k, v in grade_state.items() if v is not None}, completion_state


def worker(url: str, inbox_dir: str, batch_size: int) -> None:
    """Drain the inbox: first the batches claimed by an earlier (killed) worker, then new ones."""
    engine = create_warehouse_engine(url)
    inbox = EventsInbox.at(Path(inbox_dir))
    processor = EventProcessor(engine, inbox, load_mapping())
    for batch in inbox.batches():
        processor.process_batch(batch)
    n = 0
    while names := inbox.waiting(batch_size):
        batch = f"w{os.getpid()}-{n}"
        inbox.claim(batch, names)
        processor.process_batch(batch)
        n += 1
    engine.dispose()


def logged_count(url: str) -> int:
    engine = create_warehouse_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                select(func.count()).where(integration_events_log.c.status.in_(["processed", "ignored"]))
            ).scalar_one()
    finally:
        engine.dispose()


def run(url: str, workdir: Path, events: int, kills: int, batch_size: int, seed: int = 7) -> dict:
    seed_college(url)
    inbox = EventsInbox.at(workdir / "events" / "inbox")
    generated = generate(events, seed)
    valid_ids, malformed = drop(inbox, generated, seed)
    started = time.perf_counter()
    killed = 0
    command = [sys.executable, __file__, "--worker", url, str(inbox.inbox), str(batch_size)]
    for k in range(kills):
        process = subprocess.Popen(command)
        target = len(valid_ids) * (k + 1) // (kills + 2)
        while process.poll() is None and logged_count(url) < target:
            time.sleep(0.05)
        if process.poll() is None:
            # A moment later, so the kill lands inside a batch rather than between two.
            time.sleep(random.Random(k).uniform(0.0, 0.3))
            os.kill(process.pid, signal.SIGKILL)
            killed += 1
        process.wait()
    subprocess.run(command, check=True)
    elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "killed": killed, **check(url, inbox, generated, valid_ids, malformed)}


def check(url: str, inbox: EventsInbox, generated, valid_ids, malformed) -> dict:
    expected_grades, expected_completions = replay(generated)
    engine = create_warehouse_engine(url)
    g = grades.c
    with engine.connect() as conn:
        found_grades = {
            (a, u): v
            for a, u, v in conn.execute(
                select(g.moodle_assignment_id, g.moodle_user_id, g.raw_grade).where(
                    g.tenant_id == TENANT, g.deleted_at.is_(None)
                )
            )
        }
        r = raw_records.c
        found_completions = {
            (int(p["cmid"]), int(p["userid"])): p["completionstate"]
            for (p,) in conn.execute(select(r.payload).where(r.tenant_id == TENANT, r.entity == "activity_completions"))
        }
        log_ids = list(conn.execute(select(integration_events_log.c.event_id)).scalars())
        log_statuses = set(conn.execute(select(integration_events_log.c.status).distinct()).scalars())
    engine.dispose()
    problems = []
    if {k: float(v) for k, v in expected_grades.items()} != found_grades:
        missing = set(expected_grades) ^ set(found_grades)
        differing = [k for k in expected_grades if k in found_grades and float(expected_grades[k]) != found_grades[k]]
        problems.append(f"grades differ: {len(missing)} keys on one side only, {len(differing)} values differ")
    if expected_completions != found_completions:
        problems.append("activity completions differ from the replay")
    if len(log_ids) != len(set(log_ids)) or set(log_ids) != valid_ids:
        problems.append(f"log holds {len(log_ids)} rows for {len(valid_ids)} valid events")
    if not log_statuses <= {"processed", "ignored"}:
        problems.append(f"log statuses {sorted(log_statuses)}")
    quarantined = {p.name for p in inbox.quarantine.iterdir()}
    for name in malformed:
        if name not in quarantined or f"{name}.reason" not in quarantined:
            problems.append(f"{name} is not in quarantine with its reason")
    if list(inbox.inbox.iterdir()) or inbox.batches():
        problems.append("files left in the inbox or in claims")
    return {
        "valid_events": len(valid_ids),
        "grades": len(found_grades),
        "completions": len(found_completions),
        "quarantined": len(malformed),
        "problems": problems,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="exactly-once-") as tmp:
        work = Path(tmp)
        if args.backend == "sqlite":
            outcome = run(f"sqlite:///{work / 'warehouse.db'}", work, args.events, args.kills, args.batch_size)
        else:
            from sqlalchemy.engine import make_url

            from integration_pipelines_tests.postgres import PostgresDatabases

            admin = make_url(
                os.environ.get(
                    "TEST_POSTGRES_URL", "postgresql+psycopg://integration:integration@127.0.0.1:5432/integration_test"
                )
            )
            databases = PostgresDatabases(admin)
            url = databases.create()
            try:
                outcome = run(url, work, args.events, args.kills, args.batch_size)
            finally:
                databases.drop(url)
                databases.close()
    print(json.dumps(outcome, indent=2))
    if outcome["problems"] or outcome["killed"] < args.kills:
        sys.exit(1)


if __name__ == "__main__":
    main()
