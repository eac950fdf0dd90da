"""dbt, started so that it dies with the process that started it.

dagster-dbt runs `<dbt_executable> <global_config_flags> <command>`; this project's resource makes
that `python -m integration_pipelines.defs.marts.launcher build ...`. On Linux the launcher first
asks the kernel to SIGKILL it when its parent dies (`prctl(PR_SET_PDEATHSIG)`), then runs dbt's
own command line in this same process (what the `dbt` script does). So when a run's process is
killed (`kill -9`, the OOM killer, a node going away), dbt dies with it instead of carrying on
writing marts on behalf of a run that no longer exists; its open transaction is never committed.

The kernel delivers the signal when the *thread* that started dbt ends: dagster-dbt starts dbt from
the step's own thread, which waits for dbt's output until it exits.

This module must stay light: it runs before dbt, in every dbt process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

MODULE = "integration_pipelines.defs.marts.launcher"
# The pid of the process that starts dbt, set by the step for this one spawn. If the parent died
# before prctl took effect, dbt has already been handed to another parent and must not start.
PARENT_PID_VARIABLE = "INTEGRATION_DBT_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already has."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    expected = os.environ.get(PARENT_PID_VARIABLE)  # the spawn protocol, not configuration
    if expected and os.getppid() != int(expected):
        os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    die_with_parent()
    from dbt.cli.main import cli

    sys.exit(cli(prog_name="dbt"))


if __name__ == "__main__":
    main()
