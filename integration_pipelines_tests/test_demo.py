"""The demo as a new user runs it: a line per step while full_sync works, a summary whose figures add
up to what the warehouse holds, and a second run that changes nothing."""

from __future__ import annotations

import io
import os
import re

import pytest
from dagster import DagsterEventType, DagsterInstance
from sqlalchemy import create_engine, text

from integration_pipelines.demo import Console, student_summary
from integration_pipelines.lib.canonical.apply import canonical_tables

pytestmark = pytest.mark.slow

# Seed 3 at 60 students holds a student Zoho deleted (still linked to a Moodle user), students in
# Zoho only and in Moodle only: every line of the identity summary has something to count.
STUDENTS, SEED = 60, 3
STEP_LINE = re.compile(r"^  ✓ \[\s*\d+/(?P<total>\d+)\] (?P<step>\w+)\s+\d+\.\ds  (?P<detail>.*)$")
COUNTS = re.compile(
    r"^read (?P<rows_read>[\d,]+)(?: in (?P<tables>\d+) tables)?: (?P<inserted>[\d,]+) inserted, "
    r"(?P<updated>[\d,]+) updated, (?P<unchanged>[\d,]+) unchanged; (?P<deleted>[\d,]+) deleted$"
)
ROW_COUNTS = ("rows_read", "inserted", "updated", "unchanged", "deleted")


@pytest.fixture
def demo_environment(tmp_path, monkeypatch):
    """A data directory of its own; the environment as it was afterwards (the demo points it at
    its sandbox and DAGSTER_HOME)."""
    saved = dict(os.environ)
    monkeypatch.setenv("INTEGRATION_DATA_DIR", str(tmp_path))
    for name in ("DAGSTER_HOME", "WAREHOUSE_URL", "TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path
    os.environ.clear()
    os.environ.update(saved)


def run_demo_captured() -> tuple[dict, list[str]]:
    from integration_pipelines.demo import run_demo

    out = io.StringIO()  # not a terminal: plain lines only
    result = run_demo(students=STUDENTS, seed=SEED, out=out)
    text_out = out.getvalue()
    assert "\r" not in text_out and "\x1b" not in text_out
    return result, text_out.splitlines()


def step_lines(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        if m := STEP_LINE.match(line):
            found[m["step"]] = m["detail"]
    return found


def parse_counts(detail: str) -> dict[str, int]:
    m = COUNTS.match(detail)
    assert m, detail
    return {k: int(m[k].replace(",", "")) for k in ROW_COUNTS}


def stored_materializations(run_id: str) -> dict[str, dict[str, dict]]:
    """What Dagster stored of the run: materialization metadata by step, then by asset."""
    out: dict[str, dict[str, dict]] = {}
    with DagsterInstance.get() as instance:
        records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
        for record in records:
            event = record.event_log_entry.dagster_event
            assert event is not None and event.step_key is not None
            m = event.step_materialization_data.materialization
            out.setdefault(event.step_key, {})[m.asset_key.to_user_string()] = {
                k: v.value for k, v in m.metadata.items()
            }
    return out


def stored_check_results(run_id: str) -> dict[str, bool]:
    """Each check Dagster evaluated in the run (asset/check), and whether it passed."""
    with DagsterInstance.get() as instance:
        records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION).records
        out = {}
        for record in records:
            event = record.event_log_entry.dagster_event
            assert event is not None
            evaluation = event.asset_check_evaluation_data
            out[f"{evaluation.asset_key.to_user_string()}/{evaluation.check_name}"] = evaluation.passed
    return out


def warehouse_students(data_dir) -> dict[str, int]:
    """The students table counted by SQL of its own, not the demo's."""
    engine = create_engine(f"sqlite:///{data_dir / 'warehouse.db'}")
    live, deleted = "deleted_at IS NULL", "deleted_at IS NOT NULL"
    queries = {
        "total": "1 = 1",
        "live": live,
        "matched_by_crm_field": f"{live} AND identity_match = 'crm_field'",
        "matched_by_idnumber": f"{live} AND identity_match = 'idnumber'",
        "matched_by_email": f"{live} AND identity_match = 'email'",
        "zoho_only": f"{live} AND identity_match IS NULL AND zoho_id IS NOT NULL",
        "moodle_only": f"{live} AND identity_match IS NULL AND zoho_id IS NULL",
        "deleted_in_zoho": f"{deleted} AND zoho_id IS NOT NULL",
        "deleted_linked": f"{deleted} AND zoho_id IS NOT NULL AND identity_match IS NOT NULL",
        "gone_from_moodle": f"{deleted} AND zoho_id IS NULL",
    }
    try:
        with engine.connect() as conn:
            return {
                k: conn.execute(text(f"SELECT count(*) FROM students WHERE tenant_id = 'default' AND {w}")).scalar_one()
                for k, w in queries.items()
            }
    finally:
        engine.dispose()


def test_demo_reports_each_step_and_a_summary_that_adds_up(demo_environment):
    first, lines = run_demo_captured()

    # A line for every step that materializes something (the snapshots, each canonical table, the
    # marts), with the counts Dagster stored for the run, which add up.
    steps = step_lines(lines)
    stored = stored_materializations(first["run_id"])
    assert set(canonical_tables()) | {"moodle_snapshot", "zoho_snapshot", "dbt_marts"} <= set(steps)
    assert set(steps) == set(stored)
    for step, detail in steps.items():
        tables = [m for m in stored[step].values() if "rows_read" in m]
        if not tables:
            assert detail == f"built {', '.join(stored[step])}", step
            continue
        counts = parse_counts(detail)
        assert counts == {k: sum(m[k] for m in tables) for k in ROW_COUNTS}, step
        assert counts["rows_read"] == counts["inserted"] + counts["updated"] + counts["unchanged"], step
    marts = ("student_academics", "student_classes", "student_finance", "student_grades", "student_profile")
    assert all(mart in steps["dbt_marts"] for mart in ("stg_students", *marts)), steps["dbt_marts"]
    # The check steps fold into one line; a check that did not pass has a line of its own.
    evaluations = stored_check_results(first["run_id"])
    passed = sum(evaluations.values())
    failed = [line for line in lines if line.startswith("  ! check ")]
    assert len(failed) == len(evaluations) - passed
    for check, ok in evaluations.items():
        assert ok or any(line.startswith(f"  ! check {check} did not pass (") for line in failed), check
    checks_line = (
        f"  checks: all {passed} passed"
        if not failed
        else f"  checks: {len(evaluations)} = {passed} passed + {len(failed)} not passed"
    )
    assert [line for line in lines if line.startswith("  checks: ")] == [checks_line]

    # The summary: each whole is the sum of its parts, and each figure is what the warehouse holds.
    held = warehouse_students(demo_environment)
    assert held["deleted_in_zoho"] >= 1 and held["zoho_only"] >= 1 and held["moodle_only"] >= 1
    matched = held["matched_by_crm_field"] + held["matched_by_idnumber"] + held["matched_by_email"]
    assert held["live"] == matched + held["zoho_only"] + held["moodle_only"]
    assert held["total"] == held["live"] + held["deleted_in_zoho"] + held["gone_from_moodle"]
    assert held["total"] == STUDENTS  # the sandbox's students, every one of them accounted for
    assert (
        f"Students in the warehouse: {held['total']} = {held['live']} live + {held['deleted_in_zoho']} deleted in Zoho"
        in lines
    )
    assert (
        f"  live {held['live']} = {matched} matched + {held['zoho_only']} Zoho only + {held['moodle_only']} Moodle only"
        in lines
    )
    assert (
        f"  matched {matched} = {held['matched_by_crm_field']} by crm field + "
        f"{held['matched_by_idnumber']} by idnumber + {held['matched_by_email']} by email"
    ) in lines
    assert (
        f"  deleted in Zoho {held['deleted_in_zoho']}: tombstones, kept soft-deleted "
        f"({held['deleted_linked']} still linked to a Moodle user)"
    ) in lines
    assert not any("reported otherwise" in line for line in lines)
    # The students step's own metadata says the same.
    synced = first["students"]
    for key in ("matched_by_crm_field", "matched_by_idnumber", "matched_by_email", "zoho_only", "moodle_only"):
        assert synced[key] == held[key], key
    assert synced["linked_to_deleted"] == held["deleted_linked"]
    assert synced["unmatched_share"] == round((held["zoho_only"] + held["moodle_only"]) / held["live"], 4)
    assert synced["rows_read"] == held["total"] and synced["inserted"] == held["total"]

    # The second run: every table read again, nothing inserted or updated, the same summary.
    second, again = run_demo_captured()
    for step, detail in step_lines(again).items():
        if COUNTS.match(detail):
            counts = parse_counts(detail)
            assert (counts["inserted"], counts["updated"], counts["deleted"]) == (0, 0, 0), (step, detail)
    assert (second["totals"]["inserted"], second["totals"]["updated"]) == (0, 0)
    total_line = [line for line in again if line.startswith("  all ")]
    assert total_line and total_line[0].endswith(
        ": 0 inserted, 0 updated, " + f"{second['totals']['rows_read']:,} unchanged; 0 deleted"
    )
    assert f"  this run: read {held['total']}: 0 inserted, 0 updated, {held['total']} unchanged; 0 deleted" in again
    summary = [line for line in lines if line.startswith(("Students in", "  live", "  matched", "  deleted in"))]
    assert summary == [
        line for line in again if line.startswith(("Students in", "  live", "  matched", "  deleted in"))
    ]
    assert warehouse_students(demo_environment) == held


def test_summary_names_students_gone_from_moodle_and_any_disagreement():
    held = {
        "matched_by_crm_field": 5,
        "matched_by_idnumber": 2,
        "matched_by_email": 1,
        "matched": 8,
        "zoho_only": 1,
        "moodle_only": 1,
        "live": 10,
        "deleted_in_zoho": 2,
        "deleted_linked": 1,
        "gone_from_moodle": 3,
        "soft_deleted": 5,
        "total": 15,
    }
    lines = student_summary(held, {"zoho_only": 2, "moodle_only": 1, "linked_to_deleted": 1, "unmatched_share": 0.2})
    assert lines[0] == "Students in the warehouse: 15 = 10 live + 2 deleted in Zoho + 3 gone from Moodle"
    assert "  gone from Moodle 3: Moodle-only students no longer in Moodle" in lines
    assert lines[-1] == "  the students step reported otherwise: zoho_only 2 (warehouse 1)"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_shows_a_running_step_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv("TERM", raising=False)
    plain, terminal = Console(io.StringIO()), Console(_Terminal())
    for console in (plain, terminal):
        console.status("  [1/2] students ...")
        console.line("  done")
    assert plain.stream.getvalue() == "  done\n"
    assert terminal.stream.getvalue() == "  [1/2] students ...\r\x1b[2K  done\n"
