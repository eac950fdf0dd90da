"""Read-ahead A/B: a source snapshot read and landed into SQLite with the reading in a process of
its own, in a thread, or in neither (the readers' own threads read ahead of the landing).

    .venv/bin/python bench/bench_read_ahead.py [--students 5000] [--delay 0.0] [--modes none,thread,process]

Each mode reads the Moodle snapshot (`read_moodle_snapshot`, concurrency 8) and the Zoho snapshot
(`read_zoho_modules`, the edition's concurrency) from a sandbox in its own process and lands them
into a fresh SQLite warehouse as the raw assets do; wall time per source is printed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from common import SANDBOX_CREDENTIALS, sandbox_process
from pydantic import SecretStr

from integration_pipelines.lib.mapping import load_mapping
from integration_pipelines.lib.moodle import MoodleClient
from integration_pipelines.lib.raw_sync import RawLander, land_modules
from integration_pipelines.lib.read_ahead import ReadAhead
from integration_pipelines.lib.source_reads import ZohoModule, read_moodle_snapshot, read_zoho_modules
from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.zoho import ZohoClient

ENTITIES = ("courses", "enrolments", "users", "grade_items", "grades")


def reader(mode: str, produce, *args):
    if mode == "none":
        return produce(*args)
    return ReadAhead(produce, *args, process=mode == "process")


def run(mode: str, base: str, url: str) -> tuple[float, float]:
    engine = create_warehouse_engine(url)
    ensure_schema(engine)
    moodle = partial(MoodleClient, base, SecretStr(SANDBOX_CREDENTIALS["MOODLE_TOKEN"]))
    zoho = partial(
        ZohoClient,
        base,
        base,
        SANDBOX_CREDENTIALS["ZOHO_CLIENT_ID"],
        SecretStr(SANDBOX_CREDENTIALS["ZOHO_CLIENT_SECRET"]),
        SecretStr(SANDBOX_CREDENTIALS["ZOHO_REFRESH_TOKEN"]),
    )
    t0 = time.perf_counter()
    records = reader(mode, read_moodle_snapshot, moodle, datetime.now(UTC), 8)
    with begin_write(engine) as conn, records if mode != "none" else _nothing():
        lander = RawLander(conn, "default", "moodle", ENTITIES, snapshot=True)
        for entity, record_id, payload, modified_at in records:
            lander.land(entity, record_id, payload, modified_at)
        lander.finish()
    moodle_s = time.perf_counter() - t0
    modules = [ZohoModule(e, m.module, tuple(m.source_fields)) for e, m in load_mapping().zoho.entities.items()]
    t0 = time.perf_counter()
    records = reader(mode, read_zoho_modules, zoho, modules)
    with begin_write(engine) as conn, records if mode != "none" else _nothing():
        for _ in land_modules(conn, "default", "zoho", [m.module for m in modules], records, snapshot=True):
            pass
    zoho_s = time.perf_counter() - t0
    engine.dispose()
    return moodle_s, zoho_s


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=5000)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--modes", default="none,thread,process")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    extra = ("--response-delay", str(args.delay)) if args.delay else ()
    with sandbox_process(args.students, 7, *extra) as base, tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in args.modes.split(","):
                url = f"sqlite:///{Path(tmp) / f'{mode}-{r}.db'}"
                moodle_s, zoho_s = run(mode, base, url)
                print(f"| {mode} | {moodle_s:.1f} s | {zoho_s:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
