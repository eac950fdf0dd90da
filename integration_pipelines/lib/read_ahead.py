"""Reading a source ahead of the code that consumes it."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from queue import Full, Queue
from typing import TypeVar

T = TypeVar("T")

_DONE = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def read_ahead(items: Iterable[T], *, chunk: int = 500, depth: int = 4) -> Iterator[T]:
    """Iterate `items` in a background thread, up to `depth` chunks of `chunk` items ahead.

    Reading a source is mostly waiting for its answers; landing what it answered is mostly our
    own work. Reading ahead overlaps the two, so a sync takes the longer of them rather than
    their sum. Items arrive in their order; an error raised while reading is raised here, at the
    point the consumer reaches it; a consumer that stops early stops the reading too (and closes
    `items`, so a generator's own cleanup runs).
    """
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                queue.put(entry, timeout=0.1)
                return True
            except Full:
                continue
        return False

    iterator = iter(items)  # here, so that something not iterable fails in the caller

    def produce() -> None:
        batch: list = []
        try:
            for item in iterator:
                batch.append(item)
                if len(batch) >= chunk:
                    if not put(batch):
                        return
                    batch = []
            if batch and not put(batch):
                return
            put(_DONE)
        except BaseException as error:  # handed to the consumer, raised after what came before it
            if not batch or put(batch):
                put(_Failed(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=produce, name="read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            # The reader always ends with _DONE or _Failed unless the consumer stopped it first.
            entry = queue.get()
            if entry is _DONE:
                return
            if isinstance(entry, _Failed):
                raise entry.error
            yield from entry
    finally:
        stop.set()
        reader.join()
