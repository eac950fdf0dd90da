"""Mart refresh after a few changed students: the incremental build against the full one.

    .venv/bin/python bench/bench_mart_refresh.py [--students 25000] [--backends sqlite,postgresql]
        [--changed 10,100]

For each backend: a sandbox college (in its own process) is synced into a fresh warehouse by
`full_sync` (in process). Then, measured one after the other:
- the full build of the marts alone (`dbt_marts`, `dbt build --full-refresh`, as every sync runs it,
  and as the events' refresh ran it before the marts were incremental);
- a `process_events` run with nothing queued (a retry pass with nothing due: the run's fixed cost);
- for each `--changed` count: that many students' Zoho payments changed in the raw layer and
  applied as an event batch applies them (`apply_raw_keys`), then a `process_events` run, whose
  mart refresh rebuilds those students (`dbt run` of the incremental models).
Runs are in process on an ephemeral Dagster instance: the wall times are the runs' own, without
a launched run's process start.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from common import ROOT, fresh_warehouse, pipeline_environment, record, sandbox_process
from sqlalchemy import select, update

sys.path.insert(0, str(ROOT))

from integration_pipelines.lib.warehouse import create_warehouse_engine  # noqa: E402
from integration_pipelines.lib.warehouse.engine import begin_write  # noqa: E402
from integration_pipelines.lib.warehouse.schema import payments, raw_records  # noqa: E402


def timed_run(job_name: str, instance, **kwargs) -> float:
    from integration_pipelines.definitions import defs

    started = time.perf_counter()
    result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, raise_on_error=True, **kwargs)
    assert result.success
    return time.perf_counter() - started


def change_payments(engine, count: int, offset: int) -> None:
    """Change one Zoho payment of each of `count` students and apply them as an event batch does."""
    from integration_pipelines.defs.mapping import FIELD_MAPPING
    from integration_pipelines.lib.canonical.apply import apply_raw_keys

    now = datetime.now(UTC)
    raw = raw_records.c
    with begin_write(engine) as conn:
        chosen = conn.execute(
            select(payments.c.student_key, payments.c.zoho_id)
            .where(payments.c.deleted_at.is_(None), payments.c.zoho_id.is_not(None))
            .order_by(payments.c.student_key, payments.c.payment_key)
        ).all()
        ids, seen = [], set()
        for student_key, zoho_id in chosen:
            if student_key not in seen:
                seen.add(student_key)
                ids.append(zoho_id)
        ids = ids[offset : offset + count]
        for zoho_id in ids:
            where = (raw.source == "zoho", raw.entity == "Payments", raw.record_id == zoho_id)
            payload, modified = conn.execute(select(raw.payload, raw.source_modified_at).where(*where)).one()
            payload["Amount"] = float(payload["Amount"]) + 1
            later = modified + timedelta(hours=1)
            conn.execute(
                update(raw_records).where(*where).values(payload=payload, source_modified_at=later, updated_at=now)
            )
        apply_raw_keys(conn, "default", FIELD_MAPPING, [("zoho", "Payments", i) for i in ids], now=now)


def measure(url: str, directory: Path, sandbox: str, changed: list[int]) -> dict:
    from dagster import DagsterInstance

    os.environ.update(pipeline_environment(sandbox, url, directory))
    from integration_pipelines.defs.marts.assets import dbt_marts

    figures: dict = {}
    with DagsterInstance.ephemeral() as instance:
        figures["full_sync"] = timed_run("full_sync", instance)
        figures["full_build"] = timed_run("full_sync", instance, asset_selection=list(dbt_marts.keys))
        figures["nothing"] = timed_run("process_events", instance)
        engine = create_warehouse_engine(url)
        offset = 0
        for count in changed:
            change_payments(engine, count, offset)
            offset += count
            figures[count] = timed_run("process_events", instance)
        engine.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=25_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--changed", default="10,100")
    args = parser.parse_args()
    changed = [int(c) for c in args.changed.split(",")]
    lines = [
        f"`bench/bench_mart_refresh.py --students {args.students} --changed {args.changed}`: after a full_sync, "
        "the marts' full build alone (as every sync runs it, and as an event batch's refresh ran it before the "
        "marts were incremental), a `process_events` run with nothing to apply or rebuild (the run's fixed cost, in "
        "process), and `process_events` runs after that many students' payments changed (applied by key, then "
        "their marts rebuilt by dbt's incremental models). Load average (1, 5, 15 min) before the measurements.",
        "",
        "| backend | full_sync | marts, full build | process_events, nothing queued | "
        + " | ".join(f"process_events, {c} students changed" for c in changed)
        + " | load average |",
        "|---|---|---|---|" + "---|" * len(changed) + "---|",
    ]
    with sandbox_process(args.students) as sandbox:
        for backend in args.backends.split(","):
            directory = Path(tempfile.mkdtemp(prefix="bench-marts-"))
            load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
            with fresh_warehouse(backend, directory) as url:
                f = measure(url, directory, sandbox, changed)
            lines.append(
                f"| {backend} | {f['full_sync']:.1f} s | {f['full_build']:.1f} s | {f['nothing']:.1f} s | "
                + " | ".join(f"{f[c]:.1f} s" for c in changed)
                + f" | {load} |"
            )
            print(lines[-1], flush=True)
    record(f"Mart refresh after changed students ({args.students:,} students)", lines)


if __name__ == "__main__":
    main()
