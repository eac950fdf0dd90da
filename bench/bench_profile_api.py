"""Profile API benchmark: 50 concurrent clients reading random students' full profiles.

    .venv/bin/python bench/bench_profile_api.py [--students 100000] [--backends sqlite,postgresql]
        [--clients 50] [--seconds 20] [--workers 2] [--rate 1500] [--warehouse-url URL]

For each backend: a sandbox college (in its own process) is synced into a fresh warehouse by
`full_sync` (in process, on an ephemeral Dagster instance), an admin key is created, and the API
is served as users serve it (`integration-pipelines api serve --workers N`, a process per core).
`--warehouse-url` measures a warehouse synced before instead (no sandbox, no sync).

Two loads, each for `--seconds`, from `--clients` keep-alive connections reading
`GET /v1/students/profile` of random students (by moodle_user_id or zoho_id):
- saturating: each connection asks again as soon as its answer came. Its requests/s is the API's
  capacity; its latency is mostly queueing (50 requests in flight: Little's law).
- paced: each connection waits a random time before each request (exponential, on average
  clients / rate), so that the clients together offer about `--rate` requests/s, as users
  between pages do. Its p50 and p99 are the latency a user sees at that load.
The load comes from `wrk` (Debian's package, a C program that leaves the cores to the API) when it
is installed, else (saturating only) from Python clients in this process.
The limit it is measured against: the same SQL the route runs (the student's lookup and one read
per mart), through the same driver, in one process per core with no HTTP: the raw lookup rate.

Figures depend on the machine's load: `uptime`'s load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import BIN, ROOT, free_port, fresh_warehouse, pipeline_environment, record, sandbox_process
from sqlalchemy import text
from sqlalchemy.engine import make_url

sys.path.insert(0, str(ROOT))

from integration_pipelines.api.profile import _ACADEMICS, _CLASSES, _FINANCE, _FIND, _GRADES  # noqa: E402
from integration_pipelines.lib.warehouse import create_warehouse_engine  # noqa: E402
from integration_pipelines.lib.warehouse.api_keys import create_key  # noqa: E402
from integration_pipelines.lib.warehouse.engine import begin_write  # noqa: E402


def load_average() -> str:
    return os.getloadavg().__repr__()


def full_sync(url: str, sandbox: str, directory: Path) -> float:
    from dagster import DagsterInstance

    os.environ.update(pipeline_environment(sandbox, url, directory))
    from integration_pipelines.definitions import defs

    started = time.perf_counter()
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("full_sync").execute_in_process(instance=instance, raise_on_error=True)
    assert result.success
    return time.perf_counter() - started


def identifiers(url: str) -> list[tuple[str, str]]:
    engine = create_warehouse_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT moodle_user_id, zoho_id FROM student_profile")).all()
    engine.dispose()
    return [("zoho_id", z) if z else ("moodle_user_id", str(m)) for m, z in rows]


def serve(url: str, directory: Path, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "WAREHOUSE_URL": url, "INTEGRATION_DATA_DIR": str(directory)}
    process = subprocess.Popen(
        [str(BIN / "integration-pipelines"), "api", "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
            return process
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the API did not start") from None
            time.sleep(0.2)


async def drive(base: str, key: str, ids: list[tuple[str, str]], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        rng = random.Random(n)
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            while time.perf_counter() < stop:
                name, value = rng.choice(ids)
                started = time.perf_counter()
                answer = await http.get("/v1/students/profile", params={name: value})
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 200:
                    errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def drive_wrk(
    base: str, key: str, ids: list[tuple[str, str]], clients: int, seconds: float, rate: float | None = None
) -> dict:
    """The same load from wrk (`bench/profile_requests.lua`); paced to about `rate` requests/s if given."""
    think_ms = clients * 1000 / rate if rate else 0
    with tempfile.NamedTemporaryFile("w", suffix=".ids") as listed:
        listed.write("".join(f"{name}={value}\n" for name, value in ids))
        listed.flush()
        ran = subprocess.run(
            ["wrk", "-t2", f"-c{clients}", f"-d{seconds:g}s", "-s", str(ROOT / "bench" / "profile_requests.lua"), base],
            env={**os.environ, "IDS_FILE": listed.name, "API_KEY": key, "THINK_MS": f"{think_ms:.3f}"},
            capture_output=True,
            text=True,
            check=True,
        )
    line = next(line for line in ran.stdout.splitlines() if line.startswith("RESULT "))
    requests, errors, elapsed, p50, p99 = line.split()[1:]
    return {
        "requests": int(requests),
        "errors": int(errors),
        "rps": int(requests) / float(elapsed),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
    }


def _lookups_for(url: str, ids: list[tuple[str, str]], seed: int, seconds: float) -> int:
    engine = create_warehouse_engine(url, pool_size=1, max_overflow=0)
    rng, done = random.Random(seed), 0
    stop = time.perf_counter() + seconds
    with engine.connect() as conn:
        while time.perf_counter() < stop:
            name, value = rng.choice(ids)
            value = int(value) if name == "moodle_user_id" else value
            row = conn.execute(_FIND[name], {"tenant": "default", "value": value}).mappings().first()
            assert row is not None
            params = {"tenant": "default", "key": row["student_key"]}
            for statement in (_ACADEMICS, _FINANCE, _CLASSES, _GRADES):
                conn.execute(statement, params).all()
            done += 1
    engine.dispose()
    return done


def raw_lookups(url: str, ids: list[tuple[str, str]], processes: int, seconds: float) -> float:
    """Profiles read per second by the route's own statements, one process per core, no HTTP."""
    with concurrent.futures.ProcessPoolExecutor(processes) as pool:
        started = time.perf_counter()
        each = pool.map(_lookups_for, [url] * processes, [ids] * processes, range(processes), [seconds] * processes)
        done = sum(each)
        return done / (time.perf_counter() - started)


def measure(url: str, directory: Path, sandbox: str | None, args) -> dict:
    """The API's figures on the warehouse at `url`: synced first from `sandbox` if one is given."""
    sync_seconds = full_sync(url, sandbox, directory) if sandbox else None
    engine = create_warehouse_engine(url)
    with begin_write(engine) as conn:
        key = create_key(conn, "default", "admin", label="bench")[1]
    engine.dispose()
    ids = identifiers(url)
    port = free_port()
    server = serve(url, directory, port, args.workers)
    figures: dict = {}
    try:
        load_before = load_average()
        base = f"http://127.0.0.1:{port}"
        if shutil.which("wrk"):
            figures["saturating"] = drive_wrk(base, key, ids, args.clients, args.seconds)
            figures["paced"] = drive_wrk(base, key, ids, args.clients, args.seconds, rate=args.rate)
        else:
            figures["saturating"] = asyncio.run(drive(base, key, ids, args.clients, args.seconds))
    finally:
        server.terminate()
        server.wait(timeout=30)
    figures["raw_rate"] = raw_lookups(url, ids, args.workers, args.seconds)
    figures.update(sync_seconds=sync_seconds, students=len(ids), load=load_before)
    return figures


def table_row(backend: str, f: dict) -> str:
    synced = "kept" if f["sync_seconds"] is None else f"{f['sync_seconds']:.0f} s"
    saturating, paced = f["saturating"], f.get("paced")
    paced_cells = (
        f"{paced['rps']:,.0f} | {paced['p50_ms']:.1f} ms | {paced['p99_ms']:.1f} ms" if paced else "(no wrk) | | "
    )
    return (
        f"| {backend} | {f['students']:,} | {synced} | {saturating['rps']:,.0f} | {saturating['p50_ms']:.1f} ms | "
        f"{saturating['p99_ms']:.1f} ms | {paced_cells} | {f['raw_rate']:,.0f} | "
        f"{saturating['rps'] / f['raw_rate']:.0%} | {saturating['errors'] + (paced or {}).get('errors', 0)} | "
        f"{f['load']} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="API processes (default: cores)")
    parser.add_argument("--rate", type=float, default=1500.0, help="the paced load's requests/s, all clients")
    parser.add_argument("--warehouse-url", help="measure this warehouse, synced before (no sandbox, no sync)")
    args = parser.parse_args()
    load = "wrk" if shutil.which("wrk") else "Python clients in the benchmark's process"
    kept = f" --warehouse-url <{make_url(args.warehouse_url).get_backend_name()}>" if args.warehouse_url else ""
    lines = [
        f"`bench/bench_profile_api.py --students {args.students} --clients {args.clients} --seconds "
        f"{args.seconds:g} --workers {args.workers} --rate {args.rate:g}{kept}`: {args.clients} concurrent "
        f"keep-alive connections ({load}) reading random students' full profiles from `integration-pipelines "
        f"api serve --workers {args.workers}`, saturating (each asks again as soon as its answer came) and paced "
        f"(together about {args.rate:,.0f} requests/s); the limit is the route's own SQL through the same driver, "
        "one process per worker, no HTTP. The machine's load average (1, 5, 15 min) before the reads is beside "
        "each figure.",
        "",
        "| backend | students in the marts | full_sync | saturating: requests/s | p50 | p99 | "
        f"paced at {args.rate:,.0f}/s: requests/s | p50 | p99 | raw lookups/s | share of raw | errors | "
        "load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if args.warehouse_url:
        backend = make_url(args.warehouse_url).get_backend_name()
        directory = Path(tempfile.mkdtemp(prefix="bench-profile-"))
        figures = measure(args.warehouse_url, directory, None, args)
        lines.append(table_row(backend, figures))
        print(lines[-1], flush=True)
        title = f"Profile API on a kept {backend} warehouse ({figures['students']:,} students)"
    else:
        with sandbox_process(args.students) as sandbox:
            for backend in args.backends.split(","):
                directory = Path(tempfile.mkdtemp(prefix="bench-profile-"))
                with fresh_warehouse(backend, directory) as url:
                    f = measure(url, directory, sandbox, args)
                lines.append(table_row(backend, f))
                print(lines[-1], flush=True)
        title = f"Profile API at {args.students:,} students"
    lines += [
        "",
        "Targets (issue 16): p99 <= 10 ms, at least 1,500 requests/s, at least 50% of the raw lookup rate.",
    ]
    record(title, lines)


if __name__ == "__main__":
    main()
