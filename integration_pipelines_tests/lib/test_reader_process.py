"""A reader process dies with its parent: `kill -9` of a run leaves no reader behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PARENT = """
import sys, threading
from integration_pipelines.lib.read_ahead import ReadAhead
from integration_pipelines_tests.lib.test_read_ahead import endless

reader = ReadAhead(endless, sys.argv[1], process=True, chunk=10, depth=2)
reader.__enter__()
print(reader._worker.pid, flush=True)
threading.Event().wait()  # as a run does while it lands: until it is killed
"""


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its exit status waits to be read


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_sigkill_of_the_parent_leaves_no_reader_process(tmp_path):
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "closed")],
        stdout=subprocess.PIPE,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        text=True,
    )
    try:
        reader_pid = int(parent.stdout.readline())
        assert wait_until(lambda: alive(reader_pid), 30), "the reader started"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        assert wait_until(lambda: not alive(reader_pid), 30), f"reader {reader_pid} outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
