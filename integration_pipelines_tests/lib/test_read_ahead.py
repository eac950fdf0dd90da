"""Reading a source ahead of its consumer, in a thread or a process: order, results, errors and
early stops. Producers are module-level so that a spawned reader process can import them."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from integration_pipelines.lib.moodle import MoodleAuthError
from integration_pipelines.lib.read_ahead import ReadAhead

MODES = pytest.mark.parametrize("process", [False, True], ids=["thread", "process"])


def count_to(n: int):
    yield from range(n)
    return f"counted {n}"


def where_am_i():
    yield os.getpid(), threading.current_thread().name


def fail_after(n: int, error: BaseException):
    yield from range(n)
    raise error


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("cannot pickle this")


def fail_unpicklably():
    yield 1
    raise Unpicklable("the source broke")


def endless(closed_marker: str):
    try:
        i = 0
        while True:
            yield i
            i += 1
    finally:
        Path(closed_marker).write_text(f"closed after {i}")


def dies_without_a_word():
    yield 1
    os._exit(3)


@MODES
def test_items_arrive_in_order_across_chunks_and_the_result_after_them(process):
    with ReadAhead(count_to, 2_345, process=process, chunk=100, depth=2) as reader:
        assert list(reader) == list(range(2_345))
    assert reader.result == "counted 2345"
    with ReadAhead(count_to, 0, process=process) as reader:
        assert list(reader) == []


@MODES
def test_reading_happens_in_another_thread_or_process(process):
    with ReadAhead(where_am_i, process=process) as reader:
        ((pid, thread),) = list(reader)
    if process:
        assert pid != os.getpid()
        assert reader.reader_peak_rss_mb > 0
    else:
        assert (pid, thread) == (os.getpid(), "read-ahead-where_am_i")


def test_an_error_while_reading_is_raised_after_the_items_before_it():
    error = MoodleAuthError(
        "Moodle refused the token: check MOODLE_TOKEN",
        wsfunction="core_course_get_courses",
        errorcode="invalidtoken",
        exception="moodle_exception",
        moodle_message="Invalid token",
    )
    received = []
    with pytest.raises(MoodleAuthError, match="check MOODLE_TOKEN") as raised:
        with ReadAhead(fail_after, 5, error, chunk=2) as reader:
            for item in reader:
                received.append(item)
    assert received == [0, 1, 2, 3, 4]
    assert (raised.value.errorcode, raised.value.wsfunction) == ("invalidtoken", "core_course_get_courses")


def test_an_error_in_a_reader_process_is_raised_after_the_items_before_it_with_where_it_was_raised():
    received = []
    with pytest.raises(KeyError, match="no such row") as raised:
        with ReadAhead(fail_after, 5, KeyError("no such row"), process=True, chunk=2) as reader:
            for item in reader:
                received.append(item)
    assert received == [0, 1, 2, 3, 4]
    assert "in fail_after" in "\n".join(raised.value.__notes__)


def test_an_error_that_cannot_cross_to_the_consumer_arrives_as_its_type_and_message():
    with pytest.raises(RuntimeError, match="Unpicklable: the source broke"):
        with ReadAhead(fail_unpicklably, process=True) as reader:
            list(reader)


@MODES
def test_a_consumer_that_stops_early_stops_the_reader_and_closes_the_source(process, tmp_path):
    marker = tmp_path / "closed"
    with ReadAhead(endless, str(marker), process=process, chunk=10, depth=2) as reader:
        for item in reader:
            if item == 25:
                break
    # Leaving the block waited for the reader: the source was closed, not abandoned, after at
    # most `depth` chunks (plus the one it was filling) past the consumer.
    closed_after = int(marker.read_text().removeprefix("closed after "))
    assert 26 <= closed_after <= 26 + 10 * 4


def test_a_reader_process_that_dies_without_a_word_is_an_error_not_a_hang():
    with pytest.raises(RuntimeError, match="exit code 3"):
        with ReadAhead(dies_without_a_word, process=True, chunk=1) as reader:
            list(reader)
