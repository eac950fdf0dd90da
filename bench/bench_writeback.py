"""Write-back benchmark: BTEC grades written to the sandbox's Zoho per second, and credits per 1,000.

    .venv/bin/python bench/bench_writeback.py [--students 2000] [--response-delay 0,0.25] [--backend sqlite]

For each response delay, a sandbox college (in its own process, answers held that long, as a real
Zoho's would be) is synced into a fresh warehouse by the `full_sync` job; then the write-back
(`lib/outbound/writeback.py: write_back`, batches of 100, the client's default retry policy) sends
every grade Zoho lacks. Reported: the grades sent, the wall time and grades per second, the
batches, the credits the run counted and the credits the sandbox charged (its own account), per
1,000 grades; and the second run's time, which finds nothing to send.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import httpx
from common import ROOT, SANDBOX_CREDENTIALS, fresh_warehouse, pipeline_environment, record, sandbox_process

sys.path.insert(0, str(ROOT))


def credits_remaining(base: str) -> int:
    return httpx.get(f"{base}/_sandbox/state", timeout=30).json()["zoho_credits_remaining"]


def measure(base: str, url: str, data_dir: str) -> dict:
    os.environ.update(pipeline_environment(base, url, data_dir))
    from dagster import DagsterInstance

    from integration_pipelines.definitions import defs
    from integration_pipelines.defs.mapping import FIELD_MAPPING
    from integration_pipelines.lib.outbound.writeback import write_back
    from integration_pipelines.lib.warehouse import create_warehouse_engine
    from integration_pipelines.lib.zoho import ZohoClient
    from integration_pipelines.settings import get_settings

    with DagsterInstance.ephemeral() as instance:
        assert defs.resolve_job_def("full_sync").execute_in_process(instance=instance).success
    settings = get_settings()
    engine = create_warehouse_engine(url)

    def client() -> ZohoClient:
        return ZohoClient(
            base,
            base,
            SANDBOX_CREDENTIALS["ZOHO_CLIENT_ID"],
            SANDBOX_CREDENTIALS["ZOHO_CLIENT_SECRET"],
            SANDBOX_CREDENTIALS["ZOHO_REFRESH_TOKEN"],
        )

    before = credits_remaining(base)
    started = time.perf_counter()
    first = write_back(engine, client, settings.tenant_id, FIELD_MAPPING)
    elapsed = time.perf_counter() - started
    charged = before - credits_remaining(base)
    started = time.perf_counter()
    second = write_back(engine, client, settings.tenant_id, FIELD_MAPPING)
    again = time.perf_counter() - started
    engine.dispose()
    assert second.sent == 0, second
    return {"report": first, "elapsed": elapsed, "charged": charged, "again": again}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--students", type=int, default=2000)
    parser.add_argument("--response-delay", default="0,0.25")
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    lines = [
        f"`bench/bench_writeback.py --students {args.students} --backend {args.backend}`: after a full_sync, "
        "every grade the sandbox's Zoho lacks written back in batches of 100 (one request at a time), "
        "then a second run that finds nothing to send.",
        "",
        "| answers held | grades sent | wall time | grades/s | batches | credits counted | credits charged "
        "(sandbox) | credits per 1,000 grades | second run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for delay in args.response_delay.split(","):
        extra = ("--response-delay", delay) if float(delay) > 0 else ()
        with sandbox_process(args.students, 7, *extra) as base, tempfile.TemporaryDirectory() as directory:
            with fresh_warehouse(args.backend, directory) as url:
                figures = measure(base, url, directory)
        report = figures["report"]
        rate = report.sent / figures["elapsed"] if figures["elapsed"] else 0.0
        per_thousand = 1000 * figures["charged"] / report.sent if report.sent else 0.0
        lines.append(
            f"| {float(delay):.2f} s | {report.sent:,} | {figures['elapsed']:.2f} s | {rate:,.0f} | {report.batches} | "
            f"{report.credits_used} | {figures['charged']} | {per_thousand:.1f} | {figures['again']:.2f} s |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        f"Load while measuring (`uptime` before the runs, other engineers' work beside it): {load}.",
        "An upsert costs one credit per call of up to 100 records, so 10 credits per 1,000 grades is the floor; "
        "a batch resent after a lost answer costs one more.",
    ]
    record(f"Grade write-back to Zoho ({args.backend})", lines)


if __name__ == "__main__":
    main()
