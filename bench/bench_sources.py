"""Sources benchmark: how fast the sandbox serves, how fast the clients read, how many requests a crawl costs.

    .venv/bin/python bench/bench_sources.py [--students 100000]

Runs the sandbox in its own process, then:
1. the serve rate: one module read page by page with bare httpx (no client logic), records/s;
2. the Moodle client's full snapshot crawl: records/s and requests, against the budget
   3 × courses + users / 100;
3. the Zoho client's full read of every module with the default mapping's fields: records/s and requests.
Figures are printed and written to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time

import httpx
from common import SANDBOX_CREDENTIALS, record, sandbox_process

from integration_pipelines.lib.mapping import load_mapping
from integration_pipelines.lib.moodle import MoodleClient
from integration_pipelines.lib.zoho import ZohoClient


def serve_rate(base: str, module: str, fields: list[str]) -> tuple[int, float]:
    """Records/s the sandbox serves for one module, read with page_token and nothing else."""
    token = httpx.post(
        f"{base}/oauth/v2/token",
        params={
            "grant_type": "refresh_token",
            "refresh_token": SANDBOX_CREDENTIALS["ZOHO_REFRESH_TOKEN"],
            "client_id": SANDBOX_CREDENTIALS["ZOHO_CLIENT_ID"],
            "client_secret": SANDBOX_CREDENTIALS["ZOHO_CLIENT_SECRET"],
        },
    ).json()["access_token"]
    headers = {"Authorization": f"Zoho-oauthtoken {token}"}
    params = {"fields": ",".join(fields), "per_page": 200, "sort_by": "id", "sort_order": "asc"}
    records, started = 0, time.perf_counter()
    with httpx.Client(headers=headers, timeout=60) as http:
        while True:
            answer = http.get(f"{base}/crm/v8/{module}", params=params)
            if answer.status_code == 204:
                break
            body = answer.json()
            records += len(body["data"])
            next_token = body["info"].get("next_page_token")
            if not body["info"]["more_records"] or not next_token:
                break
            params = {**params, "page_token": next_token}
    return records, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=100_000)
    args = parser.parse_args()
    mapping = load_mapping()
    started = time.perf_counter()
    with sandbox_process(args.students) as base:
        startup = time.perf_counter() - started
        registrations = mapping.zoho.entities["registrations"]
        served, served_s = serve_rate(base, registrations.module, registrations.source_fields)

        with MoodleClient(base, SANDBOX_CREDENTIALS["MOODLE_TOKEN"]) as moodle:
            kinds: dict[str, int] = {}
            t0 = time.perf_counter()
            for item in moodle.crawl_snapshot(grades=True):
                kinds[item.kind] = kinds.get(item.kind, 0) + 1
            moodle_s = time.perf_counter() - t0
            moodle_requests = moodle.counter.total
        courses, users = kinds.get("course", 0), kinds.get("user", 0)
        budget = 3 * courses + users / 100

        with ZohoClient(
            base,
            base,
            SANDBOX_CREDENTIALS["ZOHO_CLIENT_ID"],
            SANDBOX_CREDENTIALS["ZOHO_CLIENT_SECRET"],
            SANDBOX_CREDENTIALS["ZOHO_REFRESH_TOKEN"],
            max_concurrency=10,
        ) as zoho:
            zoho_records: dict[str, int] = {}
            t0 = time.perf_counter()
            for entity in mapping.zoho.entities.values():
                zoho_records[entity.module] = sum(1 for _ in zoho.iter_records(entity.module, entity.source_fields))
            zoho_s = time.perf_counter() - t0
            zoho_requests = zoho.counter.total

    moodle_total, zoho_total = sum(kinds.values()), sum(zoho_records.values())
    record(
        f"Sources at {args.students:,} students",
        [
            "| measure | figure |",
            "|---|---|",
            f"| sandbox generation and start | {startup:.1f} s |",
            f"| sandbox serve rate (Zoho {registrations.module}, bare httpx, page_token) | "
            f"{served / served_s:,.0f} records/s ({served:,} records in {served_s:.1f} s) |",
            f"| Moodle client crawl (courses, enrolments, users, grade reports) | "
            f"{moodle_total / moodle_s:,.0f} records/s ({moodle_total:,} records in {moodle_s:.1f} s) |",
            f"| Moodle requests per full crawl | {moodle_requests:,} for {courses:,} courses and {users:,} users; "
            f"budget 3 × courses + users/100 = {budget:,.0f} ({'within' if moodle_requests <= budget else 'OVER'}) |",
            f"| Zoho client full read (8 modules, mapped fields) | "
            f"{zoho_total / zoho_s:,.0f} records/s ({zoho_total:,} records in {zoho_s:.1f} s) |",
            f"| Zoho requests per full read | {zoho_requests:,} (≈ records/200 plus token and deleted-list calls) |",
            "",
            "Records per kind (Moodle): " + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())) + ".",
            "Records per module (Zoho): " + ", ".join(f"{k} {v:,}" for k, v in zoho_records.items()) + ".",
        ],
    )


if __name__ == "__main__":
    main()
