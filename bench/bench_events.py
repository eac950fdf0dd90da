"""Events benchmark: applied events per second, against one Dagster run per event; and the time
from a file's drop to visibility in the profile API.

    .venv/bin/python bench/bench_events.py [--events 100000] [--per-run 20] [--latency 40]
                                           [--latency-students 500] [--full-sync-students 0]
                                           [--backend sqlite|postgresql]

Throughput: a college of Moodle users, enrolments and assignment grade items is landed raw and
applied (bench/exactly_once.py's), `--events` value-carrying events (grades given, changed and
deleted, completions, ignored types) are dropped into the inbox, and the batches
`process_events` would take (EVENTS_BATCH_SIZE, 2,000) are claimed and applied one after the
other with `EventProcessor.process_batch`, the code its op runs. Reported: events/s over the
whole drain. Beside it, `--per-run` events each applied by a `process_events` run of its own
(`execute_in_process` on an ephemeral instance, so a lower bound of a launched run's cost).

Latency (`--latency N`, 0 to skip): a sandbox college is synced (full_sync), then `dagster-daemon`
runs the events_inbox sensor (interval 5 s) and the receiver serves; the sandbox creates N new
students in Moodle, each firing user_created at the receiver. For each, the time from its file's
drop (the inbox file's mtime) to its profile answering 200 in the profile API. With
`--full-sync-students M`, the college has M students, and the same again while a full_sync of it,
launched through the daemon's run queue as the schedule launches it, runs beside the event batches.

Figures are taken while other engineers use the machine: the load average is recorded beside them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, ROOT, SANDBOX_CREDENTIALS, free_port, record

sys.path.insert(0, str(ROOT))

from integration_pipelines.defs.events.sensors import SENSOR_INTERVAL_SECONDS  # noqa: E402
from integration_pipelines.lib.events.inbox import EventsInbox  # noqa: E402
from integration_pipelines.lib.events.process import EventProcessor  # noqa: E402
from integration_pipelines.lib.mapping import load_mapping  # noqa: E402
from integration_pipelines.lib.warehouse import create_warehouse_engine  # noqa: E402
from integration_pipelines.lib.warehouse.api_keys import create_key  # noqa: E402
from integration_pipelines.lib.warehouse.engine import begin_write  # noqa: E402

_spec = importlib.util.spec_from_file_location("exactly_once", ROOT / "bench" / "exactly_once.py")
assert _spec is not None and _spec.loader is not None
exactly_once = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(exactly_once)


SECTION = "Events (issue 15)"


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def throughput(url: str, work: Path, events: int, batch_size: int) -> dict:
    exactly_once.seed_college(url)
    inbox = EventsInbox.at(work / "events" / "inbox")
    generated = exactly_once.generate(events, seed=11)
    rng_ids, _ = exactly_once.drop(inbox, generated, seed=11)
    for path in inbox.inbox.glob("malformed-*"):
        path.unlink()  # throughput of valid events (repeats stay: they are part of real traffic)
    engine = create_warehouse_engine(url)
    processor = EventProcessor(engine, inbox, load_mapping())
    load_before = load_average()
    started = time.perf_counter()
    applied, batches = 0, 0
    while names := inbox.waiting(batch_size):
        batch = f"bench-{batches}"
        inbox.claim(batch, names)
        result = processor.process_batch(batch)
        applied += result.outcomes["processed"] + result.outcomes["ignored"]
        batches += 1
    elapsed = time.perf_counter() - started
    engine.dispose()
    problems = exactly_once.check(url, inbox, generated, rng_ids, [])["problems"]
    return {
        "events": applied,
        "files": len(generated) + len(generated) // 10,
        "batches": batches,
        "seconds": elapsed,
        "per_second": applied / elapsed,
        "load": f"{load_before} → {load_average()}",
        "problems": problems,
    }


def one_run_per_event(url: str, work: Path, count: int) -> dict:
    """`count` events, each applied by a process_events run of its own."""
    os.environ["WAREHOUSE_URL"] = url
    os.environ["INTEGRATION_DATA_DIR"] = str(work / "per-run")
    os.environ.pop("EVENTS_INBOX_DIR", None)
    # The run's resources need credentials; these events (values, no re-fetch) never use them.
    os.environ.update({k: v for k, v in SANDBOX_CREDENTIALS.items() if k not in os.environ})
    from dagster import DagsterInstance

    from integration_pipelines.definitions import defs
    from integration_pipelines.settings import get_settings

    exactly_once.seed_college(url)
    inbox = EventsInbox.at(get_settings().events_inbox_dir)  # type: ignore[arg-type]
    generated = exactly_once.generate(count, seed=13)
    job = defs.resolve_job_def("process_events")
    logging.getLogger("dagster").setLevel(logging.ERROR)
    with DagsterInstance.ephemeral() as instance:
        started = time.perf_counter()
        for i, body in enumerate(generated):
            exactly_once.drop(inbox, [body], seed=i)
            for path in inbox.inbox.glob("malformed-*"):
                path.unlink()
            names = inbox.waiting(10)
            inbox.claim(f"one-{i}", names)
            result = job.execute_in_process(
                run_config={"ops": {"apply_event_batch": {"config": {"batch": f"one-{i}"}}}}, instance=instance
            )
            assert result.success
        elapsed = time.perf_counter() - started
    return {"events": count, "seconds": elapsed, "per_second": count / elapsed, "load": load_average()}


def latency(samples: int, students: int, full_sync_students: int, work: Path) -> list[str]:
    """Drop-to-profile latency with the daemon's sensor and the receiver running (see the docstring)."""
    from integration_pipelines.sandbox.config import SandboxConfig
    from integration_pipelines.sandbox.server import run_sandbox

    lines = []
    env = os.environ.copy()
    home = work / "dagster_home"
    secret = "bench-webhook-secret"
    # With a full_sync to measure beside, the college is that size from the start: the samples taken
    # idle then show what a college of that size costs an event too.
    with run_sandbox(SandboxConfig(students=full_sync_students or students, seed=5)) as sandbox:
        env.update(sandbox.client_environment())
        env.update(
            {
                "INTEGRATION_DATA_DIR": str(work / "latency"),
                "WAREHOUSE_URL": f"sqlite:///{work / 'latency' / 'warehouse.db'}",
                "DAGSTER_HOME": str(home),
                "EVENTS_WEBHOOK_SECRETS": json.dumps({"default": secret}),
                "EVENTS_BATCH_SIZE": "2000",
            }
        )
        env.pop("TENANT_ID", None)
        subprocess.run([str(BIN / "integration-pipelines"), "dagster-home"], env=env, check=True, capture_output=True)
        # The marts exist before the first event: one full_sync.
        subprocess.run(
            [str(BIN / "dagster"), "job", "execute", "-m", "integration_pipelines.definitions", "-j", "full_sync"],
            env=env,
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        # The profile API answers only with a key: an admin key of the tenant for the probe.
        engine = create_warehouse_engine(env["WAREHOUSE_URL"])
        with begin_write(engine) as conn:
            _, api_key = create_key(conn, "default", "admin", label="bench_events latency")
        engine.dispose()
        port = free_port()
        api = subprocess.Popen(
            [str(BIN / "integration-pipelines"), "api", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        daemon = subprocess.Popen(
            [
                "env",
                "--default-signal=INT,TERM",
                str(BIN / "dagster-daemon"),
                "run",
                "-w",
                str(ROOT / "workspace.yaml"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        try:
            import httpx

            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    httpx.get(f"{base}/v1/health", timeout=2)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            sandbox.config.webhook_url = f"{base}/v1/events/moodle"
            sandbox.config.webhook_token = secret
            sandbox.config.tenant_id = "default"
            time.sleep(15)  # the daemon loads the code location and starts the sensor
            os.environ["DAGSTER_HOME"] = str(home)
            figures = measure_latency(sandbox, base, api_key, samples, work / "latency" / "events")
            lines.append(row("idle", figures))
            breakdown = run_breakdown(home)
            if full_sync_students:
                lines.append(
                    during_launched_full_sync(sandbox, full_sync_students, base, api_key, samples, work, env, home)
                )
            lines += breakdown
        finally:
            for process in (daemon, api):
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
    return lines


def during_launched_full_sync(
    sandbox, students: int, base: str, api_key: str, samples: int, work: Path, env: dict, home: Path
) -> str:
    """Latency samples while a full_sync launched through the daemon's run queue runs (as the
    schedule launches it), until it ends or `samples` are taken."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    sandbox.mutate(advance_seconds=3600, zoho_change_share=0.2)  # changes for the sync to write
    command = [str(BIN / "dagster"), "job", "launch", "-w", str(ROOT / "workspace.yaml"), "-j", "full_sync"]
    subprocess.run(command, env=env, check=True, capture_output=True, cwd=ROOT)
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:

        def sync_run():
            return instance.get_run_records(filters=RunsFilter(job_name="full_sync"), limit=1)[0]

        while sync_run().dagster_run.status in (DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING):
            time.sleep(0.5)
        running = lambda: sync_run().dagster_run.status == DagsterRunStatus.STARTED  # noqa: E731
        figures = measure_latency(sandbox, base, api_key, samples, work / "latency" / "events", until=running)
        while running():
            time.sleep(1)
        record = sync_run()
        if record.dagster_run.status != DagsterRunStatus.SUCCESS:
            failures = [
                e.message
                for e in instance.all_logs(record.dagster_run.run_id)
                if e.is_dagster_event and e.dagster_event.is_failure
            ]
            raise RuntimeError(f"the full_sync ended {record.dagster_run.status}: {failures}")
        seconds = (record.end_time or 0) - (record.start_time or 0)
    return row(f"during a full_sync of {students:,} students ({seconds:.0f} s)", figures)


def run_breakdown(home: Path) -> list[str]:
    """Where a process_events run's share of the latency goes: waiting to start (queue and the
    run worker's start, which imports the code location), then each step (apply; dbt's rebuild)."""
    from dagster import DagsterEventType, DagsterInstance, RunsFilter

    os.environ["DAGSTER_HOME"] = str(home)
    steps: dict[str, list[float]] = {}
    with DagsterInstance.get() as instance:
        records = instance.get_run_records(filters=RunsFilter(job_name="process_events"))
        waits = [r.start_time - r.create_timestamp.timestamp() for r in records if r.start_time]
        runs = [r.end_time - r.start_time for r in records if r.start_time and r.end_time]
        for r in records:
            started: dict[str, float] = {}
            for entry in instance.all_logs(
                r.dagster_run.run_id, of_type={DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
            ):
                key = entry.step_key or ""
                if entry.dagster_event_type == DagsterEventType.STEP_START:
                    started[key] = entry.timestamp
                elif key in started:
                    steps.setdefault(key, []).append(entry.timestamp - started[key])
    if not waits or not runs:
        return []
    each = ", ".join(f"`{k}` {statistics.median(v):.1f} s" for k, v in steps.items())
    return [
        "",
        f"Of which, per `process_events` run ({len(runs)} runs, medians): from the sensor's request to the run's "
        f"start {statistics.median(waits):.1f} s (queue, and a new process importing the code location), "
        f"the run itself {statistics.median(runs):.1f} s (its steps: {each}).",
    ]


def measure_latency(
    sandbox, base: str, api_key: str, samples: int, events_root: Path, until=lambda: True
) -> list[float]:
    import httpx

    waits, unavailable = [], 0
    phase = random.Random(samples)
    with httpx.Client(base_url=base, timeout=10, headers={"Authorization": f"Bearer {api_key}"}) as http:
        for _ in range(samples):
            if not until():
                break
            # A drop falls anywhere between two sensor ticks, as a real one does: taken one after
            # another, the samples would lock to the ticks' phase.
            time.sleep(phase.uniform(0, SENSOR_INTERVAL_SECONDS))
            before = set(sandbox.college.users)
            sandbox.mutate(advance_seconds=60, zoho_new_students=1)
            (user,) = set(sandbox.college.users) - before
            sandbox.app.events.wait_delivered(30)
            deadline = time.time() + 600
            while time.time() < deadline:
                status = http.get("/v1/students/profile", params={"moodle_user_id": user}).status_code
                if status == 200:
                    break
                if status == 503:
                    unavailable += 1  # a mart being rebuilt: not visible yet
                elif status != 404:
                    raise RuntimeError(f"the profile API answered {status}")
                time.sleep(0.1)
            else:
                raise RuntimeError(f"user {user} was not in the profile API after 600 s{run_problems()}")
            seen = time.time()
            dropped = drop_time(events_root, user)
            waits.append(seen - dropped)
            print(f"user {user}: {seen - dropped:.2f} s", flush=True)
            if seen - dropped > 60:
                print(f"(a long wait; the instance's runs{run_problems()})", flush=True)
    if unavailable:
        print(f"{unavailable} probes answered 503 (the marts being rebuilt)", flush=True)
    return waits


def run_problems() -> str:
    """What the instance's runs were doing (for the error of a probe that timed out)."""
    from dagster import DagsterInstance

    with DagsterInstance.get() as instance:
        lines = []
        for record in instance.get_run_records(limit=8):
            run = record.dagster_run
            failures = [
                e.message
                for e in instance.all_logs(run.run_id)
                if e.is_dagster_event and e.dagster_event_type and "FAILURE" in e.dagster_event_type.value
            ]
            lines.append(f"{run.job_name} {run.status.value} {failures[:2]}")
    return ":\n" + "\n".join(lines)


def drop_time(events_root: Path, user: int) -> float:
    """When the user_created file of `user` was dropped (its mtime; it may be archived by now)."""
    marker = '"eventname":"\\\\core\\\\event\\\\user_created"'
    for directory in ("seen",):
        for path in (events_root / directory).iterdir():
            text = path.read_text()
            if marker in text and f'"objectid":{user}' in text:
                return path.stat().st_mtime
    raise RuntimeError(f"no user_created file for user {user}")


def row(label: str, waits: list[float]) -> str:
    q = statistics.quantiles(waits, n=20) if len(waits) >= 2 else waits * 19
    return f"| {label} | {len(waits)} | {statistics.median(waits):.1f} s | {q[18]:.1f} s | {load_average()} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=2_000)
    parser.add_argument("--per-run", type=int, default=20)
    parser.add_argument("--latency", type=int, default=40)
    parser.add_argument("--latency-students", type=int, default=500)
    parser.add_argument("--full-sync-students", type=int, default=0)
    parser.add_argument("--backend", choices=["sqlite"], default="sqlite")
    args = parser.parse_args()
    lines = [
        f"`bench/bench_events.py --events {args.events} --per-run {args.per_run} --latency {args.latency}` "
        f"(SQLite). Taken while other engineers used the machine: load averages (1, 5, 15 min) beside each figure.",
        "",
        "| how | events | time | events/s | load average |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-events-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        t = throughput(f"sqlite:///{work / 'throughput.db'}", work, args.events, args.batch_size)
        lines.append(
            f"| batches of {args.batch_size:,} (`process_batch`, {t['batches']} batches, {t['files']:,} files "
            f"with 10% repeats) | {t['events']:,} | {t['seconds']:.1f} s | **{t['per_second']:,.0f}** | {t['load']} |"
        )
        print(lines[-1], flush=True)
        if t["problems"]:
            lines.append(f"| (check against the replay failed: {t['problems']}) | | | | |")
        record(SECTION, lines)  # after each stage, so a long run keeps what it measured
        if args.per_run:
            p = one_run_per_event(f"sqlite:///{work / 'per-run.db'}", work, args.per_run)
            lines.append(
                f"| one `process_events` run per event (in process) | {p['events']} | {p['seconds']:.1f} s | "
                f"{p['per_second']:.2f} | {p['load']} |"
            )
            print(lines[-1], flush=True)
            record(SECTION, lines)
        if args.latency:
            lines += [
                "",
                f"Drop to visibility in the profile API (a new Moodle student's user_created; sandbox of "
                f"{args.full_sync_students or args.latency_students:,} students, created one at a time, each at a "
                f"random moment between two sensor ticks; `dagster-daemon` running the events_inbox sensor, "
                f"interval {SENSOR_INTERVAL_SECONDS} s; target p95 ≤ {SENSOR_INTERVAL_SECONDS + 5} s):",
                "",
                "| while | samples | p50 | p95 | load average |",
                "|---|---|---|---|---|",
            ]
            lines += latency(args.latency, args.latency_students, args.full_sync_students, work)
            record(SECTION, lines)
    record(SECTION, lines)


if __name__ == "__main__":
    main()
