"""Reading a source ahead of its consumer: order, errors and early stops."""

from __future__ import annotations

import threading

import pytest

from integration_pipelines.lib.read_ahead import read_ahead


def test_items_arrive_in_order_across_chunks():
    assert list(read_ahead(range(2_345), chunk=100, depth=2)) == list(range(2_345))
    assert list(read_ahead([])) == []


def test_reading_happens_in_another_thread():
    def source():
        yield threading.current_thread().name

    assert list(read_ahead(source())) == ["read-ahead"]


def test_an_error_while_reading_is_raised_after_the_items_before_it():
    def source():
        yield from range(5)
        raise ConnectionError("source went away")

    received = []
    with pytest.raises(ConnectionError, match="source went away"):
        for item in read_ahead(source(), chunk=2):
            received.append(item)
    assert received == [0, 1, 2, 3, 4]


def test_a_consumer_that_stops_early_stops_the_reader_and_closes_the_source():
    produced, closed = [], threading.Event()

    def source():
        try:
            for i in range(1_000_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    for item in read_ahead(source(), chunk=10, depth=2):
        if item == 25:
            break
    assert closed.wait(5)
    # The reader got at most `depth` chunks (plus the one it was filling) past the consumer.
    assert len(produced) <= 26 + 10 * 4
