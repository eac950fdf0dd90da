"""Applying raw keys touches only the rows they reach, and reaches the same state as applying
everything (both backends)."""

from __future__ import annotations

import pytest

from integration_pipelines_tests.lib.canonical.college import RawCollege, mutate_college, synthetic_college


def assert_full_apply_changes_nothing(college: RawCollege) -> None:
    for table, result in college.apply_all().items():
        counts = result.counts
        assert (counts.written.inserted, counts.written.updated, counts.deleted) == (0, 0, 0), table


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_keys_applied_reach_what_a_whole_recomputation_would(warehouse, seed):
    college = RawCollege(warehouse)
    synthetic_college(college, students=300, seed=seed)
    college.apply_all()
    college.landed = []
    mutate_college(college, students=300, changes=40, seed=seed)
    college.apply_landed()
    assert_full_apply_changes_nothing(college)


@pytest.mark.parametrize("seed", [4, 5])
def test_a_change_window_applied_by_watermark_reaches_it_too(warehouse, seed):
    college = RawCollege(warehouse)
    synthetic_college(college, students=300, seed=seed)
    college.apply_all()
    mutate_college(college, students=300, changes=40, seed=seed)
    college.apply_changes()
    assert_full_apply_changes_nothing(college)


@pytest.mark.parametrize("applied_by", ["keys", "watermark"])
def test_ten_changed_students_in_ten_thousand_touch_tens_of_rows(warehouse, applied_by):
    """The acceptance test of apply by key: each table's merge stages and writes O(10) rows,
    not O(10,000), as its own counts say; whether an event batch applies the keys it landed or
    incremental_sync the records landed since each table's watermark (where a table that follows
    the students once took every student the last full sync wrote for a changed one)."""
    college = RawCollege(warehouse)
    synthetic_college(college, students=10_000, seed=7)
    college.apply_all()
    college.landed = []
    mutate_college(college, students=10_000, changes=10, seed=7)
    results = college.apply_landed() if applied_by == "keys" else college.apply_changes()
    for table, result in results.items():
        counts = result.counts
        examined = counts.read  # rows staged into the merge, and rows soft-deleted
        written = counts.written.inserted + counts.written.updated + counts.deleted
        assert examined <= 60 and written <= 60, (table, examined, written)
    assert results["students"].counts.read > 0 and results["enrollments"].counts.read > 0
    assert_full_apply_changes_nothing(college)


def test_a_second_batch_of_keys_reuses_every_compiled_statement(warehouse):
    """An event batch's application is SQL built once per process: the next batch's statements come
    from SQLAlchemy's compiled cache (a scratch table made anew per batch once defeated it, and
    compiling was a fifth of a batch's client time)."""
    from sqlalchemy import event
    from sqlalchemy.engine.default import CACHE_MISS

    college = RawCollege(warehouse)
    synthetic_college(college, students=200, seed=8)
    college.apply_all()
    compiled: list[list[str]] = []

    def note_compiled(conn, cursor, statement, parameters, context, executemany):
        if compiled and context is not None and context.cache_hit is CACHE_MISS:
            compiled[-1].append(statement)  # during an application (the raw changes' own are not asserted)

    event.listen(warehouse, "before_cursor_execute", note_compiled)
    try:
        for round_ in range(2):
            college.landed = []
            mutate_college(college, students=200, changes=20, seed=20 + round_)
            compiled.append([])
            college.apply_landed()
    finally:
        event.remove(warehouse, "before_cursor_execute", note_compiled)
    first, second = compiled
    assert first  # the first batch's statements are compiled: the check can see a compilation
    assert second == []
