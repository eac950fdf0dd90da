"""The demo: the whole data path, once, on the embedded default, against the sandbox.

1. start the sandbox (a generated college behind fake Moodle and Zoho APIs, on loopback);
2. run `full_sync` on the Dagster instance under DAGSTER_HOME, into the SQLite warehouse, with a
   line per step as it finishes (what it read, inserted, updated, left unchanged and deleted);
3. start the profile API and read one student's profile over HTTP;
4. print a summary whose figures add up, stop what it started.

Progress comes from the run's own event stream: a Dagster logger added to the job for this run
receives every event of the in-process execution as it happens (step started, asset
materialized with its metadata, check evaluated, step succeeded or failed).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Engine, func, select

from integration_pipelines.dagster_home import ensure_dagster_home
from integration_pipelines.lib.serving import serve_in_thread
from integration_pipelines.lib.warehouse import create_warehouse_engine
from integration_pipelines.lib.warehouse.api_keys import create_key
from integration_pipelines.lib.warehouse.engine import begin_write
from integration_pipelines.lib.warehouse.schema import students as students_table
from integration_pipelines.settings import get_settings

if TYPE_CHECKING:
    from dagster import DagsterEvent, DagsterInstance, ExecuteInProcessResult, JobDefinition, LoggerDefinition

    from integration_pipelines.sandbox import Sandbox, SandboxConfig

MATCH_LABELS = {"crm_field": "crm field", "idnumber": "idnumber", "email": "email"}
ROW_COUNTS = ("rows_read", "inserted", "updated", "unchanged", "deleted")
PROGRESS_LOGGER = "demo_progress"


def run_demo(*, students: int, seed: int, out: TextIO | None = None) -> dict:
    """Run the demo, writing to `out` (default: stdout). Returns what it printed, as data."""
    from dagster import BetaWarning, DagsterInstance

    # BackfillPolicy is marked beta in Dagster 1.13; the demo's output is for people, not for that.
    warnings.filterwarnings("ignore", category=BetaWarning)

    from integration_pipelines.sandbox import SandboxConfig

    console = Console(out if out is not None else sys.stdout)
    settings = get_settings()
    os.environ["DAGSTER_HOME"] = str(ensure_dagster_home(settings.dagster_home))
    console.line(f"Data directory: {settings.data_dir}")
    with ExitStack() as stack:
        port_file = settings.data_dir / "demo-sandbox.port"
        sandbox = _start_sandbox(stack, SandboxConfig(students=students, seed=seed), port_file)
        console.line(f"Sandbox college ({students} students, seed {seed}) at {sandbox.base_url}")
        # Point the resources at the sandbox. Its credentials are fake and public by design.
        os.environ.update(sandbox.client_environment())
        from integration_pipelines.definitions import defs

        job = defs.resolve_job_def("full_sync")
        progress = SyncProgress(console, total_steps=len(job.graph.nodes))
        console.line(f"Running full_sync ({progress.total_steps} steps)")
        started = time.monotonic()
        # The console logger shows warnings only; the progress logger turns the run's events into
        # the lines above.
        with DagsterInstance.get() as instance:
            result = with_progress_logger(job, progress).execute_in_process(
                instance=instance,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}, PROGRESS_LOGGER: {}}},
            )
            record_in_sync_history(instance, result)
        if not result.success:
            raise RuntimeError(f"full_sync failed (run {result.run_id}); see `make dev` for its logs")
        elapsed = time.monotonic() - started
        console.line(f"full_sync succeeded in {elapsed:.1f}s (run {result.run_id})")
        for line in progress.total_lines():
            console.line(f"  {line}")

        engine = create_warehouse_engine(settings.warehouse_url)
        try:
            held = students_in_warehouse(engine, settings.tenant_id)
            moodle_user_id = _a_linked_student(engine, settings.tenant_id)
            # The API needs a key: one admin key for the demo's read (only its hash is stored).
            with begin_write(engine) as conn:
                _, api_key = create_key(conn, settings.tenant_id, "admin", label="make demo")
        finally:
            engine.dispose()

        from integration_pipelines.api import create_app

        with serve_in_thread(create_app(settings)) as api_url:
            response = httpx.get(
                f"{api_url}/v1/students/profile",
                params={"moodle_user_id": moodle_user_id},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            response.raise_for_status()
            profile = response.json()

    synced = progress.metadata("students")
    console.line("")
    for line in student_summary(held, synced):
        console.line(line)
    console.line("")
    console.line(f"GET /v1/students/profile?moodle_user_id={moodle_user_id}")
    console.line(json.dumps(profile, indent=2))
    return {
        "run_id": result.run_id,
        "steps": progress.steps,
        "totals": progress.totals(),
        "students": synced,
        "warehouse_students": held,
        "profile": profile,
    }


# -- the console -------------------------------------------------------------------------------


class Console:
    """Lines for people. On a terminal, a running step also shows as a transient status line,
    replaced by its result; anywhere else (CI, a pipe, a file) only plain lines are written."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = _is_terminal(stream)
        self._status = False
        self.tick = _encodable(stream, "✓", "ok")
        self.cross = _encodable(stream, "✗", "FAILED")
        self.bang = _encodable(stream, "!", "!")

    def line(self, text: str) -> None:
        self._write(text + "\n")
        self._status = False

    def status(self, text: str) -> None:
        if self.live:
            # One terminal row, or the carriage return would clear only the last of its rows.
            self._write(text[: max(20, shutil.get_terminal_size().columns - 1)])
            self._status = True

    def _write(self, text: str) -> None:
        if self._status:
            text = "\r\x1b[2K" + text
        self.stream.write(text)
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _encodable(stream: TextIO, text: str, fallback: str) -> str:
    try:
        text.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return fallback
    return text


# -- progress from the run's events --------------------------------------------------------------


@dataclass
class Step:
    """One step of the run as its events told it."""

    key: str
    index: int
    started: float
    seconds: float | None = None
    outcome: str = "running"  # running, succeeded, failed, skipped
    assets: dict[str, dict[str, Any]] = field(default_factory=dict)  # asset key -> materialization metadata
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (check, passed, severity)
    error: str | None = None

    @property
    def is_check(self) -> bool:
        return not self.assets and bool(self.checks)

    def counts(self) -> dict[str, int] | None:
        """Row counts summed over the step's materializations; None when none carries them."""
        tables = [m for m in self.assets.values() if all(isinstance(m.get(k), int) for k in ROW_COUNTS)]
        if not tables:
            return None
        return {k: sum(m[k] for m in tables) for k in ROW_COUNTS}


class SyncProgress:
    """Follows a run's Dagster events and reports each step as it starts and finishes."""

    def __init__(self, console: Console, *, total_steps: int) -> None:
        self.console = console
        self.total_steps = total_steps
        self.steps: dict[str, Step] = {}
        self._width = 16

    def handle(self, event: DagsterEvent) -> None:
        key = event.step_key
        if key is None:
            return
        if event.is_step_start:
            self.steps[key] = step = Step(key, len(self.steps) + 1, time.monotonic())
            self.console.status(f"  {self._counter(step)} {key} ...")
            return
        step = self.steps.get(key)
        if step is None:  # an event of a step that never started (skipped): count it now
            self.steps[key] = step = Step(key, len(self.steps) + 1, time.monotonic())
        if event.is_step_materialization:
            materialization = event.step_materialization_data.materialization
            step.assets[materialization.asset_key.to_user_string()] = {
                k: v.value for k, v in materialization.metadata.items()
            }
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.asset_check_evaluation_data
            step.checks.append((evaluation.check_name, evaluation.passed, evaluation.severity.value))
            if not evaluation.passed:
                facts = ", ".join(
                    f"{k} {v.value}"
                    for k, v in evaluation.metadata.items()
                    if isinstance(v.value, int | float | str) and len(str(v.value)) <= 40
                )
                self.console.line(
                    f"  {self.console.bang} check {evaluation.asset_key.to_user_string()}/{evaluation.check_name} "
                    f"did not pass ({evaluation.severity.value.lower()}){': ' + facts if facts else ''}"
                )
        elif event.is_step_success or event.is_step_failure or event.is_step_skipped:
            step.seconds = time.monotonic() - step.started
            if event.is_step_failure:
                step.outcome = "failed"
                step.error = event.step_failure_data.error.message.strip() if event.step_failure_data.error else None
            else:
                step.outcome = "succeeded" if event.is_step_success else "skipped"
            self._finished(step)

    def _counter(self, step: Step) -> str:
        width = len(str(self.total_steps))
        return f"[{step.index:>{width}}/{self.total_steps}]"

    def _finished(self, step: Step) -> None:
        c = self.console
        if step.outcome == "succeeded" and step.is_check:
            # Checks are folded into the totals; one that did not pass had its own line already.
            passed = sum(ok for _, ok, _ in step.checks)
            c.status(f"  {self._counter(step)} {step.key}: {passed} of {len(step.checks)} passed")
            return
        mark = {"succeeded": c.tick, "failed": c.cross, "skipped": "-"}[step.outcome]
        head = f"  {mark} {self._counter(step)} {step.key:<{self._width}} {step.seconds or 0:5.1f}s"
        if step.outcome == "failed":
            c.line(f"{head}  failed: {step.error or 'see the run log'}")
        elif step.outcome == "skipped":
            c.line(f"{head}  skipped (an upstream step failed)")
        else:
            c.line(f"{head}  {step_detail(step)}")

    def metadata(self, asset_key: str) -> dict[str, Any]:
        for step in self.steps.values():
            if asset_key in step.assets:
                return step.assets[asset_key]
        return {}

    def totals(self) -> dict[str, int]:
        counted = [counts for step in self.steps.values() if (counts := step.counts()) is not None]
        out = {k: sum(c[k] for c in counted) for k in ROW_COUNTS}
        checks = [ok for step in self.steps.values() for _, ok, _ in step.checks]
        out["checks"] = len(checks)
        out["checks_passed"] = sum(checks)
        out["steps"] = len(self.steps)
        return out

    def total_lines(self) -> list[str]:
        t = self.totals()
        tables = sum(1 for step in self.steps.values() for m in step.assets.values() if "rows_read" in m)
        lines = [f"all {tables} tables: {row_counts(t)}"]
        failed = t["checks"] - t["checks_passed"]
        lines.append(
            f"checks: {t['checks']} = {t['checks_passed']} passed + {failed} not passed"
            if failed
            else f"checks: all {t['checks']} passed"
        )
        return lines


def step_detail(step: Step) -> str:
    counts = step.counts()
    if counts is None:  # dbt: models built and their tests, no row counts
        return f"built {', '.join(step.assets)}" if step.assets else "done"
    tables = [k for k, m in step.assets.items() if "rows_read" in m]
    where = f" in {len(tables)} tables" if len(tables) > 1 else ""
    return f"{row_counts(counts, where=where)}"


def row_counts(counts: Mapping[str, int], *, where: str = "") -> str:
    """`read N: I inserted, U updated, S unchanged; D deleted` (read = inserted + updated + unchanged)."""
    return (
        f"read {counts['rows_read']:,}{where}: {counts['inserted']:,} inserted, {counts['updated']:,} updated, "
        f"{counts['unchanged']:,} unchanged; {counts['deleted']:,} deleted"
    )


def _progress_logger_def(progress: SyncProgress) -> LoggerDefinition:
    from dagster import LoggerDefinition

    class EventHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # A user logger receives a record per event; its DagsterEvent rides under dagster_meta.
            event = (getattr(record, "dagster_meta", None) or {}).get("dagster_event")
            if event is not None:
                progress.handle(event)

    def init(_context) -> logging.Logger:
        # Not registered with `logging`: nothing else sees it, and it propagates nowhere.
        log = logging.Logger(f"integration_pipelines.demo.{PROGRESS_LOGGER}", logging.DEBUG)
        log.addHandler(EventHandler())
        return log

    return LoggerDefinition(init, description="The demo's progress lines, from the run's events.")


def with_progress_logger(job: JobDefinition, progress: SyncProgress) -> JobDefinition:
    """The job with a logger that hands each of the run's events to `progress`."""
    return job.with_logger_defs({**job.loggers, PROGRESS_LOGGER: _progress_logger_def(progress)})


def record_in_sync_history(instance: DagsterInstance, result: ExecuteInProcessResult) -> None:
    """Record the outcome of a sync run executed in this process in the warehouse's sync history,
    as the run status sensors do for launched runs (no daemon need be running to see this one)."""
    from integration_pipelines.defs.sync.sensors import record_run_outcome

    settings = get_settings()
    error = None if result.success else (result.get_run_failure_event().message or "the run failed")
    engine = create_warehouse_engine(settings.warehouse_url)
    try:
        record_run_outcome(instance, result.run_id, engine, settings.tenant_id, error)
    finally:
        engine.dispose()


# -- the students summary ------------------------------------------------------------------------


def students_in_warehouse(engine: Engine, tenant_id: str) -> dict[str, int]:
    """The students table as it stands: live rows by how they link, soft-deleted rows by source."""
    s = students_table.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                s.identity_match,
                s.zoho_id.is_not(None).label("in_zoho"),
                s.deleted_at.is_not(None).label("deleted"),
                func.count(),
            )
            .where(s.tenant_id == tenant_id)
            .group_by(s.identity_match, s.zoho_id.is_not(None), s.deleted_at.is_not(None))
        ).all()
    held = {f"matched_by_{rule}": 0 for rule in MATCH_LABELS}
    held.update(zoho_only=0, moodle_only=0, deleted_in_zoho=0, deleted_linked=0, gone_from_moodle=0)
    for rule, in_zoho, deleted, n in rows:
        if deleted:
            key = "deleted_in_zoho" if in_zoho else "gone_from_moodle"
            if in_zoho and rule is not None:
                held["deleted_linked"] += n
        elif rule is not None:
            key = f"matched_by_{rule}"
        else:
            key = "zoho_only" if in_zoho else "moodle_only"
        held[key] = held.get(key, 0) + n
    held["matched"] = sum(held[f"matched_by_{rule}"] for rule in MATCH_LABELS)
    held["live"] = held["matched"] + held["zoho_only"] + held["moodle_only"]
    held["soft_deleted"] = held["deleted_in_zoho"] + held["gone_from_moodle"]
    held["total"] = held["live"] + held["soft_deleted"]
    return held


def student_summary(held: Mapping[str, int], synced: Mapping[str, Any]) -> list[str]:
    """The students summary: each line's parts add up to its whole, from the warehouse; the
    run's own figures (the `students` step's metadata) next to them, and any disagreement named."""
    unmatched = held["zoho_only"] + held["moodle_only"]
    parts = [f"{held['live']:,} live", f"{held['deleted_in_zoho']:,} deleted in Zoho"]
    if held["gone_from_moodle"]:
        parts.append(f"{held['gone_from_moodle']:,} gone from Moodle")
    rules = " + ".join(f"{held[f'matched_by_{rule}']:,} by {label}" for rule, label in MATCH_LABELS.items())
    lines = [
        f"Students in the warehouse: {held['total']:,} = {' + '.join(parts)}",
        f"  live {held['live']:,} = {held['matched']:,} matched + {held['zoho_only']:,} Zoho only "
        f"+ {held['moodle_only']:,} Moodle only",
        f"  matched {held['matched']:,} = {rules}",
        f"  deleted in Zoho {held['deleted_in_zoho']:,}: tombstones, kept soft-deleted "
        f"({held['deleted_linked']:,} still linked to a Moodle user)",
    ]
    if held["gone_from_moodle"]:
        lines.append(f"  gone from Moodle {held['gone_from_moodle']:,}: Moodle-only students no longer in Moodle")
    if synced:
        share = unmatched / held["live"] if held["live"] else 0.0
        lines.append(
            f"  unmatched {unmatched:,} of {held['live']:,} live ({share:.1%}); "
            f"identity conflicts {synced.get('identity_conflicts', 0):,}, "
            f"ambiguous emails {synced.get('ambiguous_emails', 0):,}"
        )
        if all(isinstance(synced.get(k), int) for k in ROW_COUNTS):
            lines.append(f"  this run: {row_counts(synced)}")
        disagreements = [
            f"{key} {synced[key]} (warehouse {held[key]})"
            for key in (*(f"matched_by_{rule}" for rule in MATCH_LABELS), "zoho_only", "moodle_only")
            if key in synced and synced[key] != held[key]
        ]
        if "linked_to_deleted" in synced and synced["linked_to_deleted"] != held["deleted_linked"]:
            disagreements.append(
                f"linked_to_deleted {synced['linked_to_deleted']} (warehouse {held['deleted_linked']})"
            )
        if "unmatched_share" in synced and abs(synced["unmatched_share"] - share) > 0.0001:
            disagreements.append(f"unmatched_share {synced['unmatched_share']} (warehouse {share:.4f})")
        if disagreements:
            lines.append(f"  the students step reported otherwise: {', '.join(disagreements)}")
    return lines


def _start_sandbox(stack: ExitStack, config: SandboxConfig, port_file: Path) -> Sandbox:
    """The sandbox, on the port the last demo used when it is free (else any free port, then kept).

    The sandbox's answers carry its own address (Moodle's profile image and course URLs), as a real
    Moodle's carry its wwwroot. On a new port every run, the second full_sync would see every
    Moodle user changed; on the same port it sees what a real college's second night would.
    """
    from integration_pipelines.sandbox import run_sandbox

    try:
        saved = int(port_file.read_text().strip())
    except (OSError, ValueError):
        saved = 0
    if 0 < saved < 65536:
        try:
            return stack.enter_context(run_sandbox(config.model_copy(update={"port": saved})))
        except OSError:  # taken by something else since: any free port will do
            pass
    sandbox = stack.enter_context(run_sandbox(config))
    port_file.parent.mkdir(parents=True, exist_ok=True)
    port_file.write_text(f"{urlsplit(sandbox.base_url).port}\n")
    return sandbox


def _a_linked_student(engine: Engine, tenant_id: str) -> int:
    s = students_table.c
    with engine.connect() as conn:
        return conn.execute(
            select(s.moodle_user_id)
            .where(s.tenant_id == tenant_id, s.identity_match.is_not(None), s.deleted_at.is_(None))
            .order_by(s.moodle_user_id)
            .limit(1)
        ).scalar_one()
