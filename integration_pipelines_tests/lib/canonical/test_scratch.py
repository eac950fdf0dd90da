"""Scratch tables: one per purpose and transaction, a second of the same purpose beside it, and
never rows left by an earlier transaction (both backends)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, func, insert, select

from integration_pipelines.lib.canonical.scratch import drop_scratch, scratch_table
from integration_pipelines.lib.warehouse.engine import begin_write


def ids() -> Column:
    return Column("user_id", BigInteger, primary_key=True)


def test_two_of_one_purpose_are_two_tables_and_the_name_comes_back_after_a_drop(warehouse):
    with begin_write(warehouse) as conn:
        first = scratch_table(conn, "test_reached", ids())
        second = scratch_table(conn, "test_reached", ids())
        assert first.name != second.name
        conn.execute(insert(first), [{"user_id": 1}])
        assert conn.execute(select(func.count()).select_from(second)).scalar_one() == 0
        drop_scratch(conn, first)
        again = scratch_table(conn, "test_reached", ids())
        assert again is first  # the same Table object: its statements stay compiled
        drop_scratch(conn, again, second)


def test_a_table_an_earlier_transaction_left_behind_comes_back_empty(warehouse):
    with warehouse.connect() as conn:  # one connection: temporary tables are the connection's
        with conn.begin():
            left = scratch_table(conn, "test_left", ids())
            conn.execute(insert(left), [{"user_id": 1}, {"user_id": 2}])
            # committed without drop_scratch
        with conn.begin():
            again = scratch_table(conn, "test_left", ids())
            assert again.name == left.name
            assert conn.execute(select(func.count()).select_from(again)).scalar_one() == 0
            drop_scratch(conn, again)


def test_a_name_held_by_a_rolled_back_transaction_is_free_again(warehouse):
    with warehouse.connect() as conn:
        transaction = conn.begin()
        held = scratch_table(conn, "test_rolled_back", ids())
        transaction.rollback()  # the table went with it, without drop_scratch
        with conn.begin():
            again = scratch_table(conn, "test_rolled_back", ids())
            assert again.name == held.name
            drop_scratch(conn, again)
