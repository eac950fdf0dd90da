"""Starting a sync on a Dagster webserver through its own GraphQL API (the kept client,
`dagster-graphql`), for the admin console's buttons.

The client package imports Dagster, so it is imported only when a launch is asked for: the API
itself imports no Dagster, and a sidecar that never launches never loads it.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from urllib.parse import urlsplit

CODE_LOCATION = "integration_pipelines"
LAUNCH_TIMEOUT_S = 30


class DagsterLaunchError(RuntimeError):
    """The webserver could not be reached, or refused the run; the message says which."""


def _refusal(job: str, dagster_url: str, exc: Exception) -> str:
    """One readable sentence from the client's error (its args are (kind, message with a stack trace))."""
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    if text.strip().startswith("Exception occured during execution") or str(exc).startswith("Exception occured"):
        return f"{job} was not started: {dagster_url} did not answer"
    unset = sorted(set(re.findall(r'environment variable "([A-Z0-9_]+)" which is not set', text)))
    if unset:
        return f"{job} was not started on {dagster_url}: the webserver's environment lacks {', '.join(unset)}"
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    return f"{job} was not started on {dagster_url}: {first[:300]}"


def run_url(dagster_url: str, run_id: str) -> str:
    """The run's page in the Dagster UI."""
    return f"{dagster_url.rstrip('/')}/runs/{run_id}"


def launch_sync(dagster_url: str, job: str, *, today: date) -> str:
    """Submit one run of `job` and return its run id.

    `incremental_sync` is partitioned by day; like its hourly schedule, one run covers
    yesterday's and today's windows (a single-run partition range)."""
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    parts = urlsplit(dagster_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DagsterLaunchError(f"DAGSTER_WEBSERVER_URL must be an http(s) URL, not {dagster_url!r}")
    tags = None
    if job == "incremental_sync":
        tags = {
            "dagster/asset_partition_range_start": (today - timedelta(days=1)).isoformat(),
            "dagster/asset_partition_range_end": today.isoformat(),
        }
    try:
        # The client reads the server's schema when it is made: that is where an unreachable one fails.
        client = DagsterGraphQLClient(
            parts.hostname,
            port_number=parts.port,
            use_https=parts.scheme == "https",
            path_prefix=parts.path.rstrip("/"),
            timeout=LAUNCH_TIMEOUT_S,
        )
        return client.submit_job_execution(job, repository_location_name=CODE_LOCATION, tags=tags)
    except DagsterGraphQLClientError as exc:
        raise DagsterLaunchError(_refusal(job, dagster_url, exc)) from exc
    except Exception as exc:  # noqa: BLE001 - transport failures of gql/requests, named for the admin
        raise DagsterLaunchError(f"{job} was not started: {dagster_url} did not answer ({type(exc).__name__})") from exc
