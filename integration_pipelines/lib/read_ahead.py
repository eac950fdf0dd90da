"""Reading a source ahead of the code that lands what it answered.

Reading a source is waiting for its answers and decoding them; landing what it answered is
fingerprinting and writing. Reading ahead overlaps the two, so a sync takes the longer of them
rather than their sum. A thread overlaps the waiting; a process of its own also takes the
decoding and shaping off the landing process's interpreter, which a thread shares (one GIL), so
large reads (snapshots) run on two cores instead of one.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import queue
import resource
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

# How long the consumer waits for a message before checking that the reader is still alive.
_ALIVE_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class _Done:
    result: Any
    peak_rss_mb: float


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class ReadAhead(Generic[T]):
    """Iterate what `produce(*args)` yields in a background thread or process, up to `depth`
    chunks of `chunk` items ahead of the consumer.

    Items arrive in their order. An error raised while reading is raised here, after the items
    that came before it. What the producer's generator returns is kept as `result` once the
    iteration ends (a client's request count, say). Leaving the `with` block stops the reading,
    whether or not it was finished, and closes the producer's generator where it runs.

    In a process (`process=True`), `produce` and `args` are pickled to a new interpreter
    (spawned, not forked: the consumer may hold threads and locks), so `produce` must be a
    module-level function and its arguments plain data or picklable factories. The reader
    process dies with the process that started it, however that one ends (`kill -9` included):
    it asks Linux for SIGKILL when its parent goes (`PR_SET_PDEATHSIG`), and elsewhere a thread
    of its own watches for the parent to go.
    """

    def __init__(
        self, produce: Callable[..., Iterator[T]], *args: Any, process: bool = False, chunk: int = 500, depth: int = 8
    ):
        self.result: Any = None
        self.reader_peak_rss_mb: float | None = None
        if process:
            context = multiprocessing.get_context("spawn")
            self._queue, self._stop = context.Queue(maxsize=depth), context.Event()
            worker = context.Process
        else:
            self._queue, self._stop = queue.Queue(maxsize=depth), threading.Event()
            worker = threading.Thread
        self._worker = worker(
            target=_produce_into,
            args=(produce, args, self._queue, self._stop, chunk, os.getpid() if process else None),
            name=f"read-ahead-{getattr(produce, '__name__', 'source')}",
            daemon=True,
        )

    def __enter__(self) -> ReadAhead[T]:
        self._worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._worker.join(timeout=30)
        if isinstance(self._worker, multiprocessing.process.BaseProcess):
            if self._worker.is_alive():  # stuck in a request: it holds nothing worth waiting for
                self._worker.terminate()
                self._worker.join()
            self._worker.close()

    def __iter__(self) -> Iterator[T]:
        while True:
            message = self._next_message()
            if isinstance(message, list):
                yield from message
            elif isinstance(message, _Done):
                self.result, self.reader_peak_rss_mb = message.result, message.peak_rss_mb
                return
            else:
                raise message.error

    def _next_message(self) -> list | _Done | _Failed:
        while True:
            try:
                return self._queue.get(timeout=_ALIVE_CHECK_SECONDS)
            except queue.Empty:
                if self._worker.is_alive():
                    continue
            try:  # it may have ended just after its last message arrived
                return self._queue.get(timeout=_ALIVE_CHECK_SECONDS)
            except queue.Empty:
                exit_code = getattr(self._worker, "exitcode", None)
                raise RuntimeError(
                    f"{self._worker.name} ended without finishing (exit code {exit_code}); a process that "
                    "failed before it could report (while starting, say) wrote its error to stderr"
                ) from None


def _die_with_parent(parent_pid: int) -> None:
    """In a reader process: end when the process that started it ends, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:

        def watch() -> None:
            while os.getppid() == parent_pid:
                threading.Event().wait(_ALIVE_CHECK_SECONDS)
            os._exit(1)

        threading.Thread(target=watch, name="read-ahead-parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:  # it went before the signal was asked for
        os._exit(1)


_PR_SET_PDEATHSIG = 1


def _produce_into(
    produce: Callable[..., Iterator[Any]], args: tuple, out, stop, chunk: int, parent_pid: int | None
) -> None:
    """The reading side: runs in the reader thread, or in the reader process (`parent_pid` set)."""
    process = parent_pid is not None
    if process:
        _die_with_parent(parent_pid)

    def put(message) -> bool:
        while not stop.is_set():
            try:
                out.put(message, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    generator = None
    batch: list = []
    try:
        generator = produce(*args)
        while True:
            try:
                batch.append(next(generator))
            except StopIteration as finished:
                result = finished.value
                break
            if len(batch) >= chunk:
                if not put(batch):
                    return
                batch = []
        if batch and not put(batch):
            return
        put(_Done(result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    except BaseException as error:  # handed to the consumer, raised after what came before it
        if not batch or put(batch):
            put(_Failed(_portable(error) if process else error))
    finally:
        if generator is not None:
            generator.close()
        if process and stop.is_set():
            out.cancel_join_thread()  # the consumer stopped reading: exit without flushing to it


def _portable(error: BaseException) -> BaseException:
    """The error as it can reach the consumer: across a process boundary it must pickle, and its
    traceback (which does not travel) goes along as a note."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any failure to round-trip means it cannot travel
        error = RuntimeError(f"{type(error).__name__}: {error}")
    error.add_note("Raised while reading ahead:\n" + "".join(traceback.format_exception(error)).rstrip())
    return error
