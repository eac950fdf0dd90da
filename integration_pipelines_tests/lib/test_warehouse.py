"""The warehouse schema and the one upsert path, on SQLite and PostgreSQL."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import Column, func, inspect, select, text

from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema, upsert_rows
from integration_pipelines.lib.warehouse.engine import schema_head, schema_revision
from integration_pipelines.lib.warehouse.raw import raw_row
from integration_pipelines.lib.warehouse.schema import payments, students
from integration_pipelines.lib.warehouse.upsert import Snapshot, encode_json

T0 = datetime(2026, 9, 1, 8, 0, tzinfo=UTC)


def student(key: str = "zoho:1", *, email: str = "amina@example.ac.uk", modified: datetime = T0, **extra):
    row = {
        "tenant_id": "default",
        "student_key": key,
        "zoho_id": key.removeprefix("zoho:"),
        "moodle_user_id": 42,
        "student_number": "S0001",
        "first_name": "Amina",
        "last_name": "Khan",
        "email": email,
        "program_zoho_id": None,
        "status": "active",
        "identity_match": "crm_field",
        "source_modified_at": modified,
    }
    row.update(extra)
    return row


def stored(engine, key: str = "zoho:1"):
    with engine.connect() as conn:
        return conn.execute(select(students).where(students.c.student_key == key)).mappings().one()


def test_schema_is_versioned_and_idempotent(warehouse):
    assert schema_revision(warehouse) == schema_head()
    ensure_schema(warehouse)  # a second call is a no-op, not an error
    assert schema_revision(warehouse) == schema_head()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    engine = create_warehouse_engine(f"sqlite:///{tmp_path / 'nested' / 'warehouse.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_upsert_inserts_then_skips_unchanged_rows(warehouse):
    rows = [student(f"zoho:{i}", email=f"s{i}@example.ac.uk") for i in range(5)]
    with warehouse.begin() as conn:
        first = upsert_rows(conn, "students", rows, now=T0 + timedelta(hours=1))
    assert first.as_metadata() == {"inserted": 5, "updated": 0, "unchanged": 0}

    with warehouse.begin() as conn:
        # Same content, even with a newer source timestamp: nothing is written.
        again = [dict(r, source_modified_at=T0 + timedelta(days=1)) for r in rows]
        second = upsert_rows(conn, "students", again, now=T0 + timedelta(hours=2))
    assert second.as_metadata() == {"inserted": 0, "updated": 0, "unchanged": 5}
    row = stored(warehouse, "zoho:3")
    assert row["updated_at"] == T0 + timedelta(hours=1)
    assert row["source_modified_at"] == T0


def test_upsert_updates_changed_rows_and_keeps_created_at(warehouse):
    with warehouse.begin() as conn:
        upsert_rows(conn, "students", [student()], now=T0 + timedelta(hours=1))
    with warehouse.begin() as conn:
        counts = upsert_rows(
            conn,
            "students",
            [student(email="amina.khan@example.ac.uk", modified=T0 + timedelta(days=1))],
            now=T0 + timedelta(hours=30),
        )
    assert counts.as_metadata() == {"inserted": 0, "updated": 1, "unchanged": 0}
    row = stored(warehouse)
    assert row["email"] == "amina.khan@example.ac.uk"
    assert row["created_at"] == T0 + timedelta(hours=1)
    assert row["updated_at"] == T0 + timedelta(hours=30)
    assert row["source_modified_at"] == T0 + timedelta(days=1)


def test_an_older_source_timestamp_never_overwrites_a_newer_one(warehouse):
    with warehouse.begin() as conn:
        upsert_rows(conn, "students", [student(email="new@example.ac.uk", modified=T0 + timedelta(days=2))])
    with warehouse.begin() as conn:
        counts = upsert_rows(conn, "students", [student(email="old@example.ac.uk", modified=T0)])
    assert counts.as_metadata() == {"inserted": 0, "updated": 0, "unchanged": 1}
    assert stored(warehouse)["email"] == "new@example.ac.uk"


def test_within_one_call_the_newest_version_of_a_key_wins(warehouse):
    rows = [
        student(email="newest@example.ac.uk", modified=T0 + timedelta(days=3)),
        student(email="older@example.ac.uk", modified=T0 + timedelta(days=1)),
    ]
    with warehouse.begin() as conn:
        counts = upsert_rows(conn, "students", rows)
    assert counts.as_metadata() == {"inserted": 1, "updated": 0, "unchanged": 1}
    assert stored(warehouse)["email"] == "newest@example.ac.uk"


def test_soft_delete_is_a_change_and_a_resurrection_is_too(warehouse):
    with warehouse.begin() as conn:
        upsert_rows(conn, "students", [student()])
    with warehouse.begin() as conn:
        gone = student(deleted_at=T0 + timedelta(days=1), modified=T0 + timedelta(days=1))
        deleted = upsert_rows(conn, "students", [gone])
    assert deleted.updated == 1
    assert stored(warehouse)["deleted_at"] == T0 + timedelta(days=1)
    with warehouse.begin() as conn:
        back = upsert_rows(conn, "students", [student(modified=T0 + timedelta(days=2))])
    assert back.updated == 1
    assert stored(warehouse)["deleted_at"] is None


def test_upsert_streams_many_rows_in_batches(warehouse):
    rows = (student(f"zoho:{i}", email=f"s{i}@example.ac.uk") for i in range(2_500))
    with warehouse.begin() as conn:
        counts = upsert_rows(conn, "students", rows)
    assert counts.inserted == 2_500
    with warehouse.connect() as conn:
        assert conn.execute(select(func.count()).select_from(students)).scalar() == 2_500


def test_upsert_rejects_naive_timestamps_and_missing_keys(warehouse):
    with warehouse.begin() as conn:
        with pytest.raises(ValueError, match="timezone-aware"):
            upsert_rows(conn, "students", [student(modified=datetime(2026, 1, 1))])
        with pytest.raises(ValueError, match="student_key"):
            upsert_rows(conn, "students", [student(student_key=None)])


def test_snapshot_soft_deletes_what_it_did_not_see_within_its_scope(warehouse):
    rows = [student(f"zoho:{i}", email=f"s{i}@example.ac.uk") for i in range(5)]
    other_tenant = student("zoho:9", tenant_id="other")
    with warehouse.begin() as conn:
        upsert_rows(conn, "students", [*rows, other_tenant])
    with warehouse.begin() as conn:
        snapshot = Snapshot(conn, "students", {"tenant_id": "default"})
        # Seen means staged: unchanged rows, which cost no write, were seen all the same.
        counts = upsert_rows(conn, "students", [rows[0], rows[2], rows[4]], snapshot=snapshot)
        assert (counts.unchanged, snapshot.seen) == (3, 3)
        assert snapshot.delete_missing(now=T0 + timedelta(days=1)) == 2
    assert stored(warehouse, "zoho:1")["deleted_at"] == T0 + timedelta(days=1)
    assert stored(warehouse, "zoho:2")["deleted_at"] is None
    with warehouse.connect() as conn:
        assert conn.execute(select(students.c.deleted_at).where(students.c.tenant_id == "other")).scalar() is None
    # Deleting is idempotent: the second snapshot finds nothing new to delete.
    with warehouse.begin() as conn:
        snapshot = Snapshot(conn, "students", {"tenant_id": "default"})
        upsert_rows(conn, "students", [rows[0], rows[2], rows[4]], snapshot=snapshot)
        assert snapshot.delete_missing() == 0


def test_a_snapshot_sees_every_batch_of_a_large_read(warehouse):
    from integration_pipelines.lib.warehouse.upsert import BATCH_SIZE

    many = [student(f"zoho:{i}", email=f"s{i}@example.ac.uk") for i in range(BATCH_SIZE * 2 + 7)]
    with warehouse.begin() as conn:
        upsert_rows(conn, "students", many)
    with warehouse.begin() as conn:
        snapshot = Snapshot(conn, "students", {"tenant_id": "default"})
        upsert_rows(conn, "students", many[1:], snapshot=snapshot)
        assert snapshot.seen == len(many) - 1
        assert snapshot.delete_missing() == 1
    assert stored(warehouse, "zoho:0")["deleted_at"] is not None


def test_snapshot_scope_must_leave_exactly_one_key_column(warehouse):
    with warehouse.begin() as conn, pytest.raises(ValueError, match="all key columns but one"):
        Snapshot(conn, "raw_records", {"tenant_id": "default"})


def _is_expression_index(index) -> bool:
    return any(not isinstance(expression, Column) for expression in index.expressions)


def _index_definitions(conn) -> dict[str, str]:
    """Every index of the database by name, with its definition: read from the catalogue, since
    SQLAlchemy cannot reflect SQLite's expression-based indexes (it skips them with a warning)."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    else:
        rows = conn.exec_driver_sql("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()")
    return dict(rows.all())


def _declared_terms(index) -> list[str]:
    """What an index's definition must mention: its columns, and the JSON paths of its expressions."""
    from integration_pipelines.lib.warehouse.sql import json_integer

    terms = []
    for expression in index.expressions:
        if isinstance(expression, Column):
            terms.append(expression.name)
        elif isinstance(expression, json_integer):
            terms.extend(expression.path)
    return terms


def test_migrations_match_the_declared_schema(warehouse):
    import warnings

    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from integration_pipelines.lib.warehouse import metadata
    from integration_pipelines.lib.warehouse.sql import json_integer

    with warehouse.connect() as conn, warnings.catch_warnings():
        # SQLite: neither SQLAlchemy nor alembic can reflect an expression-based index, and say so.
        warnings.filterwarnings("ignore", message=".*expression-based index")
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        in_database = _index_definitions(conn)
        reflected = (
            {ix["name"]: ix for table in metadata.tables for ix in inspect(conn).get_indexes(table)}
            if conn.dialect.name == "postgresql"
            else {}
        )

    expression_indexes = {
        ix.name: ix for table in metadata.tables.values() for ix in table.indexes if _is_expression_index(ix)
    }
    # The raw layer's index of Moodle records by user (json_integer(payload, 'userid')) is one.
    by_user = [
        ix
        for ix in expression_indexes.values()
        if ix.table is metadata.tables["raw_records"]
        and any(isinstance(e, json_integer) and e.path == ("userid",) for e in ix.expressions)
    ]
    assert len(by_user) == 1, sorted(expression_indexes)
    # alembic cannot compare an expression-based index (PostgreSQL reports it removed and added,
    # SQLite skips it), so each is checked apart: it exists under its name, over what it declares.
    for name, index in expression_indexes.items():
        assert name in in_database, f"expression-based index {name} is not in the database"
        definition = in_database[name]
        for term in _declared_terms(index):
            assert term in definition, (name, term, definition)
        if index.dialect_options[warehouse.dialect.name]["where"] is not None:
            assert " WHERE " in definition.upper(), definition
        if reflected:
            assert len(reflected[name]["column_names"]) == len(index.expressions), reflected[name]
    remaining = [
        d
        for d in diff
        if not (
            isinstance(d, tuple)
            and d[0] in ("add_index", "remove_index")
            and d[1].name in expression_indexes
            and _is_expression_index(d[1])
        )
    ]
    assert remaining == []


def test_payment_amounts_round_trip_exactly(warehouse):
    def payment(key: str, amount: Decimal) -> dict:
        return {
            "tenant_id": "default",
            "payment_key": key,
            "zoho_id": key.removeprefix("zoho:"),
            "student_key": "zoho:1",
            "student_zoho_id": "1",
            "kind": "fee",
            "amount": amount,
            "currency": "GBP",
            "method": "card",
            "status": "paid",
            "due_date": None,
            "paid_on": None,
            "source_modified_at": T0,
        }

    amounts = {"zoho:1": Decimal("9999999999.99"), "zoho:2": Decimal("12.50")}
    with warehouse.begin() as conn:
        counts = upsert_rows(conn, "payments", [payment(key, amount) for key, amount in amounts.items()])
    assert counts.inserted == 2
    with warehouse.connect() as conn:
        read = dict(conn.execute(select(payments.c.payment_key, payments.c.amount)).all())
        assert read == amounts
        assert [str(v) for v in read.values()] == [str(v) for v in amounts.values()]  # two places, exactly
        if conn.dialect.name == "sqlite":
            stored_text = conn.exec_driver_sql(
                "SELECT amount, typeof(amount) FROM payments WHERE payment_key = 'zoho:2'"
            ).one()
            assert tuple(stored_text) == ("12.50", "text")


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 9, 1, 8, 0, tzinfo=UTC),
        datetime(2026, 9, 1, 8, 0, 0, 123456, tzinfo=UTC),
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_bulk_writes_store_timestamps_exactly_as_sqlalchemy_binds_them(value):
    from sqlalchemy.dialects import sqlite

    from integration_pipelines.lib.warehouse.types import UTCDateTime, sqlite_timestamp_text

    dialect = sqlite.dialect()
    assert sqlite_timestamp_text(value) == UTCDateTime().dialect_impl(dialect).bind_processor(dialect)(value)
    with pytest.raises(ValueError, match="timezone-aware"):
        sqlite_timestamp_text(value.replace(tzinfo=None))


def test_a_sync_transaction_refreshes_statistics_only_of_tables_it_wrote_in_bulk(warehouse_url):
    from dagster import build_init_resource_context

    from integration_pipelines.defs.resources import WarehouseResource
    from integration_pipelines.lib.warehouse.engine import ANALYZE_MIN_ROWS, rows_written
    from integration_pipelines.lib.warehouse.raw import raw_row

    resource = WarehouseResource(url=warehouse_url)
    resource.setup_for_execution(build_init_resource_context())
    try:
        with resource.begin() as conn:
            many = (student(f"zoho:{i}", email=f"s{i}@example.ac.uk") for i in range(ANALYZE_MIN_ROWS))
            upsert_rows(conn, "students", many)
            upsert_rows(
                conn, "raw_records", [raw_row("default", "zoho", "Programs", i, {"id": i}, T0) for i in range(5)]
            )
            assert rows_written(conn) == {"students": ANALYZE_MIN_ROWS, "raw_records": 5}
        if resource.backend == "postgresql":
            # reltuples is -1 until a table is first analysed (or vacuumed).
            with resource.engine.connect() as conn:
                analysed = dict(
                    conn.execute(
                        text("SELECT relname, reltuples FROM pg_class WHERE relname IN ('students', 'raw_records')")
                    ).all()
                )
            assert analysed == {"students": ANALYZE_MIN_ROWS, "raw_records": -1}
    finally:
        resource.teardown_after_execution(build_init_resource_context())


def test_writers_that_read_first_take_turns_instead_of_failing(warehouse_url):
    """Two sync steps at once (two runs, say): each reads, then writes. On SQLite a transaction
    that took the write lock only at its first write would fail at once ("database is locked",
    busy timeout or not) if the other committed after its read; a write transaction waits its turn."""
    import threading

    from integration_pipelines.lib.warehouse.engine import begin_write

    first, second = create_warehouse_engine(warehouse_url), create_warehouse_engine(warehouse_url)
    ensure_schema(first)
    first_has_read, second_committed = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other_step() -> None:
        try:
            first_has_read.wait()
            with begin_write(second) as conn:
                upsert_rows(conn, "students", [student("zoho:2", email="b@example.ac.uk")])
            second_committed.set()
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    thread = threading.Thread(target=other_step)
    thread.start()
    try:
        with begin_write(first) as conn:
            assert conn.execute(select(func.count()).select_from(students)).scalar() == 0
            first_has_read.set()
            # On SQLite the other writer cannot commit while this transaction is open: it waits
            # (this wait ends unanswered). PostgreSQL lets it commit; both write either way.
            second_committed.wait(timeout=2 if first.dialect.name == "sqlite" else 30)
            upsert_rows(conn, "students", [student("zoho:1")])
        thread.join()
    finally:
        first.dispose()
        second.dispose()
    assert errors == []
    assert {stored(first, key)["student_key"] for key in ("zoho:1", "zoho:2")} == {"zoho:1", "zoho:2"}


def test_encoded_json_lands_as_it_is():
    payload = encode_json({"b": 1, "a": [1, "é"]})
    assert payload == '{"a":[1,"é"],"b":1}'
    row = raw_row("default", "zoho", "Programs", 1, payload, T0)
    assert row["payload"] is payload  # stored as its reader encoded it, not encoded again


def test_an_unchanged_raw_record_is_not_rewritten_and_a_changed_one_is(warehouse):
    """The merge fingerprints rows in SQL: a record landed again with the same content, however it
    reached us (a dict in another key order, or JSON a reader process encoded), costs no write."""
    from integration_pipelines.lib.warehouse.schema import raw_records

    def land(payload, now: datetime):
        with warehouse.begin() as conn:
            return upsert_rows(conn, "raw_records", [raw_row("default", "zoho", "Programs", 1, payload, T0)], now=now)

    def stored_raw():
        with warehouse.connect() as conn:
            return conn.execute(select(raw_records)).mappings().one()

    assert land({"id": "1", "Name": "IT", "Credits": 60}, T0).inserted == 1
    first = stored_raw()
    assert len(first["fingerprint"]) == 32
    same_content = [
        {"Credits": 60, "Name": "IT", "id": "1"},
        pickle.loads(pickle.dumps(encode_json({"id": "1", "Name": "IT", "Credits": 60}))),
    ]
    for i, payload in enumerate(same_content, start=1):
        assert land(payload, T0 + timedelta(hours=i)).as_metadata() == {"inserted": 0, "updated": 0, "unchanged": 1}
    assert stored_raw()["updated_at"] == T0 and stored_raw()["fingerprint"] == first["fingerprint"]

    assert land({"id": "1", "Name": "IT", "Credits": 90}, T0 + timedelta(hours=5)).updated == 1
    changed = stored_raw()
    assert changed["payload"] == {"id": "1", "Name": "IT", "Credits": 90}
    assert changed["updated_at"] == T0 + timedelta(hours=5) and changed["fingerprint"] != first["fingerprint"]


def test_fingerprints_cover_every_business_column_and_only_those(warehouse):
    """A change of any business value changes the stored fingerprint; a newer source time alone
    does not (tested above: the row is then left unchanged)."""
    base = student()
    with warehouse.begin() as conn:
        upsert_rows(conn, "students", [base], now=T0)
    fingerprints = {stored(warehouse)["fingerprint"]}
    changes = {"moodle_user_id": 43, "first_name": "Amína", "program_zoho_id": "900", "identity_match": None}
    for i, (column, value) in enumerate(changes.items(), start=1):
        with warehouse.begin() as conn:
            counts = upsert_rows(conn, "students", [dict(base, **{column: value})], now=T0 + timedelta(hours=i))
        assert counts.updated == 1, column
        fingerprints.add(stored(warehouse)["fingerprint"])
        base = dict(base, **{column: value})
    assert len(fingerprints) == len(changes) + 1
