"""Apply-by-key benchmark: the cost of applying a few changed students as the college grows.

    .venv/bin/python bench/bench_apply.py [--sizes 10000,100000] [--changes 100] [--backends sqlite,postgresql]

For each size, a synthetic college (every identity case, enrolments, Zoho enrollments, grades:
`integration_pipelines_tests/lib/canonical/college.py`) is landed straight into the raw layer of a
fresh warehouse and applied whole, as full_sync would; then `--changes` students' raw records
change (new emails, re-keyed and second accounts, lost enrolments, deletions in Zoho) and the
landed keys are applied to every canonical table with `apply_raw_keys`, as an event batch would.
Reported: the wall time of that application (best of three rounds, each with fresh changes), and
the rows it staged and wrote. The target: at 100,000 students at most 1.5 times that at 10,000.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from common import ROOT, fresh_warehouse, record

sys.path.insert(0, str(ROOT))

from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema  # noqa: E402
from integration_pipelines_tests.lib.canonical.college import (  # noqa: E402
    RawCollege,
    mutate_college,
    synthetic_college,
)


def measure(url: str, students: int, changes: int, rounds: int = 3) -> dict:
    engine = create_warehouse_engine(url)
    ensure_schema(engine)
    college = RawCollege(engine)
    started = time.perf_counter()
    synthetic_college(college, students, seed=7)
    landed = time.perf_counter() - started
    started = time.perf_counter()
    college.apply_all()
    whole = time.perf_counter() - started
    best, staged, written = float("inf"), 0, 0
    for round_ in range(rounds):
        college.landed = []
        mutate_college(college, students, changes, seed=100 + round_)
        started = time.perf_counter()
        results = college.apply_landed()
        elapsed = time.perf_counter() - started
        if elapsed < best:
            best = elapsed
            staged = sum(r.counts.read for r in results.values())
            written = sum(r.counts.written.written + r.counts.deleted for r in results.values())
    engine.dispose()
    return {"landed": landed, "whole": whole, "apply": best, "staged": staged, "written": written}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    lines = [
        f"`bench/bench_apply.py --sizes {args.sizes} --changes {args.changes}`: {args.changes} changed students' "
        "raw keys applied to every canonical table (`apply_raw_keys`), best of three rounds.",
        "",
        "| backend | students | land raw | apply whole | apply the changes | rows staged | rows written |",
        "|---|---|---|---|---|---|---|",
    ]
    ratios = []
    for backend in args.backends.split(","):
        times = {}
        for students in sizes:
            with fresh_warehouse(backend, tempfile.mkdtemp(prefix="bench-apply-")) as url:
                figures = measure(url, students, args.changes)
            times[students] = figures["apply"]
            lines.append(
                f"| {backend} | {students:,} | {figures['landed']:.1f} s | {figures['whole']:.1f} s | "
                f"{figures['apply'] * 1000:.0f} ms | {figures['staged']:,} | {figures['written']:,} |"
            )
            print(lines[-1], flush=True)
        if len(sizes) > 1:
            ratios.append(f"{backend}: {times[sizes[-1]] / times[sizes[0]]:.2f}×")
    lines += ["", f"Apply time at {sizes[-1]:,} students over that at {sizes[0]:,}: " + ", ".join(ratios) + "."]
    record("Applying changed students by key", lines)


if __name__ == "__main__":
    main()
