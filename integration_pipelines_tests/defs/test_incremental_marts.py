"""Incremental marts: after a change to a few students, `process_events` rebuilds those students'
mart rows and no others, and the marts then hold exactly what a full build makes (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select, text, update

from integration_pipelines.defs.mapping import FIELD_MAPPING
from integration_pipelines.lib.canonical.apply import apply_raw_keys
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.warehouse.schema import mart_refresh_queue, payments, raw_records
from integration_pipelines_tests.conftest import BACKENDS, empty_warehouse_url
from integration_pipelines_tests.e2e import running_pipeline

PER_STUDENT_MODELS = (
    "stg_students",
    "student_profile",
    "student_academics",
    "student_finance",
    "student_classes",
    "student_grades",
)


@pytest.fixture(scope="module", params=BACKENDS)
def synced(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"incremental-marts-{request.param}")
    with (
        empty_warehouse_url(request.param, request, directory) as url,
        running_pipeline(url, directory, students=60, seed=17) as pipeline,
    ):
        pipeline.run("full_sync")
        engine = create_warehouse_engine(url)
        yield pipeline, engine
        engine.dispose()


def mart_rows(engine: Engine) -> dict[str, dict[str, list[tuple]]]:
    """Every per-student model's rows by student (built_at apart), and each student's build times."""
    content: dict[str, dict[str, list[tuple]]] = {}
    with engine.connect() as conn:
        for model in PER_STUDENT_MODELS:
            rows = conn.execute(text(f"SELECT * FROM {model}")).mappings().all()
            by_student: dict[str, list[tuple]] = {}
            for row in rows:
                values = tuple(str(v) for k, v in sorted(row.items()) if k != "built_at")
                by_student.setdefault(row["student_key"], []).append(values)
            content[model] = {k: sorted(v) for k, v in by_student.items()}
    return content


def built_at(engine: Engine, model: str) -> dict[str, set]:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT student_key, built_at FROM {model}")).all()
    times: dict[str, set] = {}
    for key, at in rows:
        times.setdefault(key, set()).add(str(at))
    return times


def change_one_payment(engine: Engine) -> tuple[str, str]:
    """Double the amount of one Zoho payment in the raw layer, and apply it as an event batch does.
    Its student's key, and the payment's id."""
    with begin_write(engine) as conn:
        student_key, zoho_id = conn.execute(
            select(payments.c.student_key, payments.c.zoho_id)
            .where(payments.c.deleted_at.is_(None), payments.c.student_key.like("zoho:%"))
            .order_by(payments.c.payment_key)
            .limit(1)
        ).one()
        raw = raw_records.c
        where = (raw.tenant_id == "default", raw.source == "zoho", raw.entity == "Payments", raw.record_id == zoho_id)
        payload, modified = conn.execute(select(raw.payload, raw.source_modified_at).where(*where)).one()
        payload["Amount"] = float(payload["Amount"]) * 2 + 1
        later = modified + timedelta(hours=1)
        payload["Modified_Time"] = later.isoformat()
        now = datetime.now(UTC)
        conn.execute(
            update(raw_records).where(*where).values(payload=payload, source_modified_at=later, updated_at=now)
        )
        apply_raw_keys(conn, "default", FIELD_MAPPING, [("zoho", "Payments", zoho_id)], now=now)
    return student_key, zoho_id


def run_process_events(pipeline):
    """A `process_events` run with no batch: a retry pass (none due), then the mart refresh."""
    from integration_pipelines.definitions import defs

    result = defs.resolve_job_def("process_events").execute_in_process(instance=pipeline.instance)
    assert result.success
    return result


def test_a_changed_student_is_rebuilt_alone_and_the_marts_equal_a_full_build(synced):
    pipeline, engine = synced
    before = built_at(engine, "student_finance")
    student_key, zoho_id = change_one_payment(engine)
    with engine.connect() as conn:
        queued = conn.execute(select(mart_refresh_queue.c.student_key)).scalars().all()
    assert queued == [student_key]

    run_process_events(pipeline)

    after = built_at(engine, "student_finance")
    rebuilt = {key for key in after if after[key] != before.get(key)}
    assert rebuilt == {student_key}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mart_refresh_queue)).scalar_one() == 0
        amount, total = conn.execute(
            text("SELECT amount_cents, total_fees_cents FROM student_finance WHERE zoho_id = :id"), {"id": zoho_id}
        ).one()
        stored = conn.execute(select(payments.c.amount).where(payments.c.zoho_id == zoho_id)).scalar_one()
    assert amount == round(float(stored) * 100)
    incremental = mart_rows(engine)

    # A full build of the same canonical tables makes the same rows.
    from integration_pipelines.definitions import defs
    from integration_pipelines.defs.marts.assets import dbt_marts

    full = defs.resolve_job_def("full_sync").execute_in_process(
        instance=pipeline.instance, asset_selection=list(dbt_marts.keys)
    )
    assert full.success
    assert mart_rows(engine) == incremental
    assert total >= amount


def test_a_deleted_student_leaves_every_mart(synced):
    pipeline, engine = synced
    with engine.connect() as conn:
        student_key, zoho_id = conn.execute(
            text(
                "SELECT student_key, zoho_id FROM students WHERE deleted_at IS NULL AND zoho_id IS NOT NULL "
                "AND moodle_user_id IS NULL ORDER BY student_key LIMIT 1"
            )
        ).one()
    now = datetime.now(UTC)
    raw = raw_records.c
    where = (raw.tenant_id == "default", raw.source == "zoho", raw.entity == "Students", raw.record_id == zoho_id)
    with begin_write(engine) as conn:
        conn.execute(update(raw_records).where(*where).values(deleted_at=now, updated_at=now))
        apply_raw_keys(conn, "default", FIELD_MAPPING, [("zoho", "Students", zoho_id)], now=now)

    run_process_events(pipeline)

    rows = mart_rows(engine)
    assert all(student_key not in rows[model] for model in PER_STUDENT_MODELS)
    assert rows["student_profile"]  # the others are still there


def test_a_payment_moved_to_another_student_leaves_the_first_ones_finance(synced):
    pipeline, engine = synced
    with engine.connect() as conn:
        (giver, payment), (taker, taker_zoho) = (
            conn.execute(
                text(
                    "SELECT p.student_key, p.zoho_id FROM payments p "
                    "WHERE p.deleted_at IS NULL AND p.zoho_id IS NOT NULL ORDER BY p.payment_key LIMIT 1"
                )
            ).one(),
            conn.execute(
                text(
                    "SELECT s.student_key, s.zoho_id FROM students s "
                    "WHERE s.deleted_at IS NULL AND s.zoho_id IS NOT NULL ORDER BY s.student_key DESC LIMIT 1"
                )
            ).one(),
        )
    assert giver != taker
    now = datetime.now(UTC)
    raw = raw_records.c
    where = (raw.tenant_id == "default", raw.source == "zoho", raw.entity == "Payments", raw.record_id == payment)
    with begin_write(engine) as conn:
        payload, modified = conn.execute(select(raw.payload, raw.source_modified_at).where(*where)).one()
        payload["Student"] = {**payload["Student"], "id": taker_zoho}
        later = modified + timedelta(hours=1)
        conn.execute(
            update(raw_records).where(*where).values(payload=payload, source_modified_at=later, updated_at=now)
        )
        apply_raw_keys(conn, "default", FIELD_MAPPING, [("zoho", "Payments", payment)], now=now)
        queued = set(conn.execute(select(mart_refresh_queue.c.student_key)).scalars())
    assert queued == {giver, taker}

    run_process_events(pipeline)

    with engine.connect() as conn:
        owner = (
            conn.execute(text("SELECT student_key FROM student_finance WHERE zoho_id = :id"), {"id": payment})
            .scalars()
            .all()
        )
    assert owner == [taker]


def test_a_failed_refresh_names_the_model_and_leaves_its_students_for_the_next_one(synced):
    """dbt runs inside the step's process: its failure fails the step with the model's name, and
    the claimed students stay queued until a later refresh succeeds."""
    from integration_pipelines.definitions import defs

    pipeline, engine = synced
    student_key, zoho_id = change_one_payment(engine)
    with begin_write(engine) as conn:
        conn.execute(text("ALTER TABLE payments RENAME TO payments_elsewhere"))
    try:
        failed = defs.resolve_job_def("process_events").execute_in_process(
            instance=pipeline.instance, raise_on_error=False
        )
    finally:
        with begin_write(engine) as conn:
            conn.execute(text("ALTER TABLE payments_elsewhere RENAME TO payments"))
    assert not failed.success
    (failure,) = [event for event in failed.all_events if event.is_step_failure]
    assert failure.step_key == "refresh_marts"
    assert "student_finance" in str(failure.step_failure_data.error)
    with engine.connect() as conn:
        assert conn.execute(select(mart_refresh_queue.c.student_key, mart_refresh_queue.c.claim)).all() == [
            (student_key, failed.run_id)
        ]

    run_process_events(pipeline)

    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(mart_refresh_queue)).scalar_one() == 0
        amount = conn.execute(
            text("SELECT amount_cents FROM student_finance WHERE zoho_id = :id"), {"id": zoho_id}
        ).scalar_one()
        stored = conn.execute(select(payments.c.amount).where(payments.c.zoho_id == zoho_id)).scalar_one()
    assert amount == round(float(stored) * 100)
