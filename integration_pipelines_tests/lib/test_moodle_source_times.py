"""Moodle raw rows carry the source's time, not the sync's: two snapshots of the same, unchanged
college land identical rows, and a changed course lands with a newer time.

The real Moodle client reads the sandbox over HTTP; each snapshot lands in a fresh SQLite
warehouse, as `moodle_snapshot` lands it (`read_moodle_snapshot` into a `RawLander`).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from integration_pipelines.lib.raw_sync import MOODLE_SNAPSHOT_ENTITIES, land_moodle_snapshot
from integration_pipelines.lib.source_reads import UNKNOWN_SOURCE_TIME, read_moodle_snapshot
from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
from integration_pipelines.lib.warehouse.schema import raw_records
from integration_pipelines.lib.warehouse.upsert import SyncCounts
from integration_pipelines.sandbox import SandboxConfig, run_sandbox
from integration_pipelines_tests.lib.test_clients_sandbox import moodle_client

ENTITIES = {*MOODLE_SNAPSHOT_ENTITIES, "completions"}


def snapshot(sb: Any, engine) -> dict[str, SyncCounts]:
    """One Moodle snapshot of the sandbox landed in `engine`, as the `moodle_snapshot` asset does."""
    with engine.begin() as conn:
        return land_moodle_snapshot(conn, "default", read_moodle_snapshot(lambda: moodle_client(sb), 4))


def rows(engine) -> dict[tuple[str, str], tuple[datetime, str]]:
    r = raw_records.c
    with engine.connect() as conn:
        found = conn.execute(
            select(r.entity, r.record_id, r.source_modified_at, r.fingerprint).where(r.source == "moodle")
        )
        return {(e, i): (modified, fingerprint) for e, i, modified, fingerprint in found}


def warehouse(path: Path):
    engine = create_warehouse_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    return engine


def test_two_snapshots_of_an_unchanged_college_land_the_same_source_times(tmp_path):
    first, second = warehouse(tmp_path / "first.db"), warehouse(tmp_path / "second.db")
    with run_sandbox(SandboxConfig(students=100, seed=11)) as sb:
        snapshot(sb, first)
        time.sleep(2)  # the sync's clock moves on; the source's does not
        snapshot(sb, second)
    a, b = rows(first), rows(second)
    assert {e for e, _ in a} == ENTITIES
    assert a.keys() == b.keys()
    differing = [key for key in a if a[key][0] != b[key][0]]
    assert differing == [], f"{len(differing)} of {len(a)} raw Moodle rows differ in source_modified_at"
    assert a == b  # same payloads (fingerprints) too
    # Courses carry Moodle's own timemodified; users and enrolments, which have none, the epoch.
    assert all(modified > UNKNOWN_SOURCE_TIME for (e, _), (modified, _) in a.items() if e == "courses")
    assert all(modified == UNKNOWN_SOURCE_TIME for (e, _), (modified, _) in a.items() if e in ("users", "enrolments"))
    first.dispose()
    second.dispose()


def test_a_changed_course_gets_a_newer_time_and_unknown_times_do_not_block_changes(tmp_path):
    engine = warehouse(tmp_path / "warehouse.db")
    with run_sandbox(SandboxConfig(students=100, seed=11)) as sb:
        snapshot(sb, engine)
        before = rows(engine)
        # No mutate knob edits a course; an editor renaming one moves its timemodified, as Moodle does.
        # The users and enrolments the mutation changes keep the unknown (epoch) time.
        sb.mutate(advance_seconds=3600, zoho_change_share=0, zoho_delete_share=0, moodle_user_updates=3)
        with sb.lock:
            course = next(iter(sb.college.courses.values()))
            course.fullname += " (renamed)"
            course.timemodified = sb.college.clock()
            course_id, renamed_at = str(course.id), course.timemodified
        counts = snapshot(sb, engine)
    after = rows(engine)
    assert after[("courses", course_id)][0].timestamp() == renamed_at
    assert after[("courses", course_id)][0] > before[("courses", course_id)][0]
    assert after[("courses", course_id)][1] != before[("courses", course_id)][1]
    assert counts["courses"].written.updated == 1
    # A changed user with the same (unknown) source time is written all the same (`<=`).
    changed_users = [k for k in before if k[0] == "users" and after.get(k, before[k])[1] != before[k][1]]
    assert counts["users"].written.updated == len(changed_users) > 0
    assert all(after[k][0] == UNKNOWN_SOURCE_TIME for k in changed_users)
    engine.dispose()
