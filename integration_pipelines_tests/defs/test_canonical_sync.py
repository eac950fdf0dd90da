"""The canonical model end to end, on both backends, against a sandbox college over HTTP.

One college is synced in sequence: full_sync (compared row by row with the generator's truth),
full_sync again (writes nothing), a mutation of both sources, incremental_sync for the window
the mutation fell in (equal to the new truth, at a fraction of the requests), and a last
full_sync that reconciles. The college size is E2E_STUDENTS (2,000 by default);
`test_full_sync_10k.py` compares a 10,000-student college.

One thing is set aside in every comparison, on both sides: Moodle accounts whose student Zoho
deleted before the warehouse ever saw it, and that carry no configured key (see
`truth.unobservable_users`). Nothing any API returns connects them.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.sandbox.college import TABLES
from integration_pipelines_tests.conftest import BACKENDS, empty_warehouse_url
from integration_pipelines_tests.e2e import materializations, running_pipeline
from integration_pipelines_tests.truth import differences, unobservable_users

pytestmark = pytest.mark.slow

# Large enough that the incremental run's fixed cost (two calls per Zoho module, one per 50 Moodle
# assignments) is small beside a full sync, as it is for any real college.
STUDENTS = int(os.environ.get("E2E_STUDENTS", "2000"))


def written(metadata: dict[str, dict]) -> dict[str, tuple[int, int, int]]:
    """(inserted, updated, deleted) of every materialization that wrote rows."""
    return {key: (m["inserted"], m["updated"], m["deleted"]) for key, m in metadata.items() if "inserted" in m}


def window_of(now_iso: str) -> str:
    return datetime.fromisoformat(now_iso).astimezone(UTC).strftime("%Y-%m-%d")


@pytest.fixture(scope="module", params=BACKENDS)
def college(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"canonical-{request.param}")
    with (
        empty_warehouse_url(request.param, request, directory) as url,
        running_pipeline(url, directory, students=STUDENTS, seed=5) as pipeline,
    ):
        engine = create_warehouse_engine(url)
        sandbox, state = pipeline.sandbox, {}

        def served() -> int:
            return sandbox.app.request_count

        def compare(truth=None) -> dict[str, list[str]]:
            hidden = unobservable_users(sandbox.college, engine)
            truth = truth or {t: sandbox.college.iter_truth(t) for t in TABLES}
            return {t: differences(engine, t, truth[t], unobservable=hidden) for t in TABLES}

        start = served()
        first = pipeline.run("full_sync", marts=False)
        state["full"] = materializations(first)
        state["checks"] = {e.check_name: e.passed for e in first.get_asset_check_evaluations()}
        state["full_requests"] = served() - start
        state["truth_after_full"] = {t: list(sandbox.college.iter_truth(t)) for t in TABLES}
        state["full_diffs"] = compare(state["truth_after_full"])
        state["full_again"] = materializations(pipeline.run("full_sync", marts=False))

        change = sandbox.mutate(zoho_change_share=0.01, zoho_delete_share=0.002, moodle_new_grades=STUDENTS // 5)
        state["mutation"] = change
        window = window_of(change["now_iso"])
        start = served()
        state["incremental"] = materializations(pipeline.run("incremental_sync", partition_key=window, marts=False))
        state["incremental_requests"] = served() - start
        state["incremental_diffs"] = compare()
        state["incremental_again"] = materializations(
            pipeline.run("incremental_sync", partition_key=window, marts=False)
        )

        sandbox.mutate(moodle_suspend_enrolments=3, moodle_user_updates=3, zoho_change_share=0.0)
        pipeline.run("full_sync", marts=False)
        state["reconciled_diffs"] = compare()

        first_day = datetime.fromisoformat(change["now_iso"]).astimezone(UTC) - timedelta(days=6)
        days = (first_day.strftime("%Y-%m-%d"), window)
        state["backfill"] = pipeline.run_range("incremental_sync", *days, marts=False)
        state["backfill_again"] = pipeline.run_range("incremental_sync", *days, marts=False)
        engine.dispose()
        yield state


@pytest.mark.parametrize("table", TABLES)
def test_full_sync_equals_the_generators_truth(college, table):
    assert college["full_diffs"][table] == []
    assert any(not row["deleted"] for row in college["truth_after_full"][table]), "the college has rows here"


def test_full_sync_reports_what_it_read_and_requested(college):
    full = college["full"]
    for key in ("raw_zoho_students", "raw_moodle_users", "students", "grades"):
        assert full[key]["rows_read"] > 0, key
    assert full["raw_zoho_students"]["requests"] > 0
    assert full["students"]["unmatched_share"] > 0  # the sandbox's deliberate mess is counted, not dropped


def test_every_asset_check_passes_on_the_sandbox_college(college):
    assert len(college["checks"]) >= 10
    assert [name for name, passed in college["checks"].items() if not passed] == []


def test_second_full_sync_writes_nothing(college):
    assert {k: v for k, v in written(college["full_again"]).items() if v != (0, 0, 0)} == {}


@pytest.mark.parametrize("table", TABLES)
def test_incremental_sync_equals_the_new_truth(college, table):
    assert college["incremental_diffs"][table] == []


def test_incremental_sync_reads_only_the_window(college):
    incremental = college["incremental"]
    changed = sum(incremental[k]["rows_read"] for k in incremental if k.endswith("_changes"))
    assert changed > 0
    assert incremental["zoho_students_changes"]["window_start"].startswith(window_of(college["mutation"]["now_iso"]))
    assert college["incremental_requests"] <= 0.05 * college["full_requests"], (
        college["incremental_requests"],
        college["full_requests"],
    )


def test_rerunning_a_window_changes_nothing(college):
    assert {k: v for k, v in written(college["incremental_again"]).items() if v != (0, 0, 0)} == {}


@pytest.mark.parametrize("table", TABLES)
def test_a_later_full_sync_reconciles_what_increments_cannot_see(college, table):
    assert college["reconciled_diffs"][table] == []


def test_a_seven_day_backfill_is_one_run_and_idempotent(college):
    first, again = college["backfill"], college["backfill_again"]
    assert first.success and again.success
    # One run materialized all seven windows of every change asset.
    partitions = {
        e.partition
        for e in first.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "zoho_students_changes"
    }
    assert len(partitions) == 7
    assert {k: v for k, v in written(materializations(again)).items() if v[:2] != (0, 0)} == {}
