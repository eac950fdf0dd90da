"""Sync benchmark: full_sync and incremental_sync against a sandbox college, on SQLite and PostgreSQL.

    .venv/bin/python bench/bench_sync.py [--sizes 25000,50000,100000] [--backends sqlite,postgresql]

For each college size, with the sandbox in its own process:
- full_sync into an empty warehouse: wall time, source records read per second, HTTP requests,
  and the job process's peak RSS (each job runs in a child process; dbt's own subprocess and the
  sandbox are not counted);
- a mutation (1% of Zoho records changed, 0.2% deleted, new Moodle grades for 1% of students),
  then incremental_sync for the window it fell in: wall time and requests as a share of full_sync's;
- the limits the full sync is measured against: the rate at which the sandbox serves the same
  records (the records full_sync read, over the CPU time the sandbox spent answering its
  requests: the sandbox is one process, so that is the most it could serve them at), and
  PostgreSQL's COPY rate for the canonical grades rows. For reference, the sandbox's best case is
  also measured: one module read page by page with bare httpx.
PostgreSQL is reached at TEST_POSTGRES_URL (see scripts/start-test-postgres.sh).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime

import httpx
from common import ROOT, SANDBOX_CREDENTIALS, record, sandbox_process

DEFAULT_PG = "postgresql+psycopg://integration:integration@127.0.0.1:5432/integration_test"


def child(job: str, partition: str | None) -> None:
    """Run one job in this process and print its figures as JSON (the parent sets the environment)."""
    from dagster import DagsterInstance

    from integration_pipelines.definitions import defs

    started = time.perf_counter()
    with DagsterInstance.ephemeral() as instance, open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet  # dagster-dbt echoes dbt's log to stdout
        try:
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance,
                partition_key=partition,
                raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            )
        finally:
            sys.stdout = stdout
    seconds = time.perf_counter() - started
    metadata = {}
    for event in result.get_asset_materialization_events():
        m = event.event_specific_data.materialization
        metadata[m.asset_key.to_user_string()] = {
            k: v.value for k, v in m.metadata.items() if isinstance(v.value, int | float)
        }
    print(
        json.dumps(
            {
                "success": result.success,
                "seconds": seconds,
                "metadata": metadata,
                "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def run_child(job: str, env: dict[str, str], partition: str | None = None) -> dict:
    args = [sys.executable, __file__, "--child", job] + (["--partition", partition] if partition else [])
    out = subprocess.run(args, env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{out.stderr[-3000:]}")
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    if not figures["success"]:
        raise RuntimeError(f"{job} did not succeed:\n{out.stderr[-3000:]}")
    return figures


def sandbox_state(base: str) -> dict:
    return httpx.get(f"{base}/_sandbox/state", timeout=60).json()


def source_records(metadata: dict) -> int:
    return sum(m.get("rows_read", 0) for key, m in metadata.items() if key.startswith(("raw_", "zoho_", "moodle_")))


def postgres_database(admin_url: str) -> tuple[str, callable]:
    from sqlalchemy.engine import make_url

    from integration_pipelines_tests.postgres import PostgresDatabases

    databases = PostgresDatabases(make_url(admin_url), prefix="bench")
    return databases.create(), databases.close


def copy_rate(url: str) -> tuple[int, float]:
    """PostgreSQL COPY rate for the canonical grades rows: the most the warehouse could write."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(url)
    with psycopg.connect(
        host=u.host, port=u.port or 5432, user=u.username, password=u.password, dbname=u.database
    ) as conn:
        buffer = io.BytesIO()
        with conn.cursor().copy("COPY grades TO STDOUT") as copy:
            for chunk in copy:
                buffer.write(chunk)
        rows = buffer.getvalue().count(b"\n")
        conn.execute("CREATE TEMPORARY TABLE grades_copy (LIKE grades)")
        started = time.perf_counter()
        with conn.cursor().copy("COPY grades_copy FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        return rows, time.perf_counter() - started


def measure(size: int, backends: list[str], pg_admin: str) -> list[str]:
    from bench_sources import serve_rate

    from integration_pipelines.lib.mapping import load_mapping

    lines = []
    with sandbox_process(size) as base:
        registrations = load_mapping().zoho.entities["registrations"]
        served, served_s = serve_rate(base, registrations.module, registrations.source_fields)
        serve = served / served_s
        lines.append(f"| {size:,} | sandbox best-case serve rate (one module, bare httpx) | {serve:,.0f} records/s | |")
        for backend in backends:
            with tempfile.TemporaryDirectory() as directory:
                drop = None
                if backend == "postgresql":
                    url, drop = postgres_database(pg_admin)
                else:
                    url = f"sqlite:///{directory}/warehouse.db"
                env = {
                    **SANDBOX_CREDENTIALS,
                    "MOODLE_URL": base,
                    "ZOHO_API_DOMAIN": base,
                    "ZOHO_ACCOUNTS_URL": base,
                    "WAREHOUSE_URL": url,
                    "INTEGRATION_DATA_DIR": directory,
                    "DAGSTER_HOME": directory,
                }
                try:
                    before = sandbox_state(base)
                    full = run_child("full_sync", env)
                    after = sandbox_state(base)
                    full_requests = after["requests"] - before["requests"]
                    records = source_records(full["metadata"])
                    rate = records / full["seconds"]
                    serve_same = records / (after["cpu_seconds"] - before["cpu_seconds"])
                    lines.append(
                        f"| {size:,} | {backend}: sandbox serve limit for full_sync's records | "
                        f"{serve_same:,.0f} records/s ({after['cpu_seconds'] - before['cpu_seconds']:.0f} "
                        "CPU s to serve them) | |"
                    )
                    change = httpx.post(
                        f"{base}/_sandbox/mutate",
                        json={
                            "zoho_change_share": 0.01,
                            "zoho_delete_share": 0.002,
                            "moodle_new_grades": size // 100,
                        },
                        timeout=600,
                    ).json()
                    window = datetime.fromisoformat(change["now_iso"]).astimezone(UTC).strftime("%Y-%m-%d")
                    before = sandbox_state(base)["requests"]
                    incremental = run_child("incremental_sync", env, window)
                    incremental_requests = sandbox_state(base)["requests"] - before
                    limit = serve_same
                    if backend == "postgresql":
                        copied, copy_s = copy_rate(url)
                        limit = min(serve_same, copied / copy_s)
                        lines.append(
                            f"| {size:,} | PostgreSQL COPY rate (canonical grades) | "
                            f"{copied / copy_s:,.0f} rows/s ({copied:,} rows) | |"
                        )
                    lines += [
                        f"| {size:,} | {backend}: full_sync | {full['seconds']:.0f} s, {records:,} source records, "
                        f"{rate:,.0f} records/s = {rate / limit:.0%} of the smaller limit | "
                        f"peak RSS {full['maxrss_mb']:.0f} MB |",
                        f"| {size:,} | {backend}: full_sync requests | {full_requests:,} | |",
                        f"| {size:,} | {backend}: incremental_sync | {incremental['seconds']:.0f} s, "
                        f"{incremental_requests:,} requests = {incremental_requests / full_requests:.1%} of full_sync's"
                        f" | peak RSS {incremental['maxrss_mb']:.0f} MB |",
                    ]
                    print("\n".join(lines[-5:]), flush=True)
                finally:
                    if drop:
                        drop()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--child")
    parser.add_argument("--partition")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.partition)
        return
    pg_admin = os.environ.get("TEST_POSTGRES_URL", DEFAULT_PG)
    lines = ["| students | measure | figure | memory |", "|---|---|---|---|"]
    for size in (int(s) for s in args.sizes.split(",")):
        lines += measure(size, args.backends.split(","), pg_admin)
    record(
        f"Syncs at {' and '.join(f'{int(n):,}' for n in args.sizes.split(','))} students "
        f"({args.backends.replace(',', ', ')})",
        lines
        + [
            "",
            "Targets (issue 5): full_sync at least 50% of the smaller limit; peak RSS under 400 MB and flat as the "
            "college grows; incremental requests at most 5% of full_sync's.",
        ],
    )


if __name__ == "__main__":
    main()
