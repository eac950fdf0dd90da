"""A snapshot lands batch by batch: on SQLite, another writer (an event batch beside a sync) takes
its turn between two batches instead of waiting for the whole read."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from integration_pipelines.lib.raw_sync import land_moodle_snapshot
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.engine import begin_write, ensure_schema, write_in_steps
from integration_pipelines.lib.warehouse.schema import raw_records
from integration_pipelines.lib.warehouse.upsert import BATCH_SIZE

MODIFIED = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize("stepped", [True, False], ids=["in steps", "one transaction"])
def test_another_writer_commits_between_two_batches_of_a_snapshot(tmp_path, stepped):
    path = tmp_path / "warehouse.db"
    engine = create_warehouse_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    turns: list[bool] = []

    def users():
        for user in range(1, 2 * BATCH_SIZE + 1):
            if user == BATCH_SIZE + 1:  # the first batch is written; the crawl reads on
                other = sqlite3.connect(path, timeout=0, isolation_level=None)
                try:
                    other.execute("BEGIN IMMEDIATE")  # the write lock, without waiting for it
                    other.execute("COMMIT")
                    turns.append(True)
                except sqlite3.OperationalError:  # database is locked
                    turns.append(False)
                finally:
                    other.close()
            yield "users", user, {"id": user, "username": f"u{user}"}, MODIFIED

    with write_in_steps(engine) if stepped else begin_write(engine) as conn:
        counts = land_moodle_snapshot(conn, "default", users())
    assert turns == [stepped]
    with engine.connect() as conn:
        landed = conn.execute(select(func.count()).select_from(raw_records)).scalar_one()
    assert counts["users"].read == landed == 2 * BATCH_SIZE
    engine.dispose()


def test_a_failed_step_keeps_the_batches_before_it_and_never_deletes(tmp_path):
    """A read that fails part-way keeps what earlier steps landed (newer records, each whole) and
    soft-deletes nothing: the deletes of a snapshot come only at its end."""
    engine = create_warehouse_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    ensure_schema(engine)
    with write_in_steps(engine) as conn:
        land_moodle_snapshot(conn, "default", (("users", u, {"id": u}, MODIFIED) for u in range(1, 11)))

    def failing():
        for user in range(1, BATCH_SIZE + 2):
            yield "users", user + 100, {"id": user + 100}, MODIFIED
        raise ConnectionError("the crawl broke off")

    with pytest.raises(ConnectionError), write_in_steps(engine) as conn:
        land_moodle_snapshot(conn, "default", failing())
    with engine.connect() as conn:
        live = conn.execute(
            select(func.count()).select_from(raw_records).where(raw_records.c.deleted_at.is_(None))
        ).scalar_one()
    assert live == 10 + BATCH_SIZE  # the first run's ten, none deleted; the failed run's first batch
    engine.dispose()


def test_a_record_another_writer_lands_during_a_snapshot_is_not_deleted_for_its_absence(tmp_path):
    """An event batch lands a new user while a sync's crawl runs (the crawl read the users before
    the user existed): the snapshot's end must not take the user for deleted at the source."""
    engine = create_warehouse_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    ensure_schema(engine)

    def crawl():
        for user in range(1, BATCH_SIZE + 2):
            if user == BATCH_SIZE + 1:  # a batch is committed: the event batch takes its turn
                with begin_write(engine) as other:
                    land_one_user_as_an_event_does(other)
            yield "users", user, {"id": user}, MODIFIED

    with write_in_steps(engine) as conn:
        counts = land_moodle_snapshot(conn, "default", crawl())
    assert counts["users"].deleted == 0
    with engine.connect() as conn:
        event_user = conn.execute(
            select(raw_records.c.deleted_at).where(raw_records.c.record_id == "999999")
        ).scalar_one()
    assert event_user is None
    engine.dispose()


def land_one_user_as_an_event_does(conn) -> None:
    """What an event batch lands: one user, by key (no snapshot)."""
    from integration_pipelines.lib.raw_sync import RawLander

    lander = RawLander(conn, "default", "moodle", ("users",), snapshot=False)
    lander.land("users", 999999, {"id": 999999}, MODIFIED)
    lander.finish()
