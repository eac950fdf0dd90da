"""What the sandbox's generator says a write-back must leave in Zoho, computed from the college
itself (not through the project's code): per Zoho student x unit, the BTEC grade of the newest
Moodle gradebook grade, converted with the sandbox's own converter."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from integration_pipelines.lib.http import RetryPolicy
from integration_pipelines.lib.zoho import ZohoClient
from integration_pipelines.sandbox.college import BTEC_SCALE, btec_from_percentage
from integration_pipelines.sandbox.server import Sandbox

FAULT_HOLD_SECONDS = 2.0


def moodle_grades(sb: Sandbox) -> dict[tuple[int, int], tuple[int, str]]:
    """(student zoho id, unit zoho id) -> (when, BTEC grade) of the newest Moodle gradebook grade."""
    col = sb.college
    newest: dict[tuple[int, int], tuple[int, str]] = {}
    with sb.lock:
        for a in col.assignments.values():
            unit = col.zoho["Units"].records.get(a.unit_zid) if a.unit_zid else None
            if unit is None or unit.deleted is not None:
                continue
            for g in a.grades.values():
                user = col.users[g.user_id]
                student = col.students_by_zid.get(user.student_zid) if user.student_zid else None
                if user.is_teacher or user.deleted or student is None or student.deleted is not None:
                    continue
                # The gradebook's final grade (an override wins), as the canonical grades hold it.
                final = g.final
                grade = BTEC_SCALE[int(final) - 1] if a.scale else btec_from_percentage(100.0 * final / a.grademax)
                key = (student.zid, unit.zid)
                if key not in newest or g.final_time > newest[key][0]:
                    newest[key] = (g.final_time, grade)
    return newest


def conflicts(sb: Sandbox) -> set[tuple[int, int]]:
    """The student x units whose Zoho record holds another grade than Moodle's, set after it: what
    staff typed in Zoho (the generator makes some, where a gradebook override came before the
    Zoho record), never overwritten."""
    newest = moodle_grades(sb)
    with sb.lock:
        return {
            (rec.student, rec.unit)
            for rec in sb.college.zoho["BTEC_Grades"].records.values()
            if rec.deleted is None
            and (rec.student, rec.unit) in newest
            and rec.modified > newest[(rec.student, rec.unit)][0]
            and rec.grade != newest[(rec.student, rec.unit)][1]
        }


def conflict_keys(sb: Sandbox) -> set[str]:
    """`conflicts` as the outbox's record keys."""
    return {f"{student}:{unit}" for student, unit in conflicts(sb)}


def expected_zoho_grades(sb: Sandbox) -> dict[tuple[int, int], str]:
    """(student zoho id, unit zoho id) -> the BTEC grade Zoho must hold, for every eligible grade:
    Moodle's, except where Zoho holds a newer, different one (a conflict: Zoho's stays)."""
    expected = {key: grade for key, (_, grade) in moodle_grades(sb).items()}
    held = zoho_grade_records(sb)
    for key in conflicts(sb):
        expected[key] = held[key][0]
    return expected


def zoho_grade_records(sb: Sandbox) -> dict[tuple[int, int], list[str]]:
    """(student, unit) -> the grades of the live BTEC_Grades records Zoho holds for it."""
    out: dict[tuple[int, int], list[str]] = {}
    with sb.lock:
        for rec in sb.college.zoho["BTEC_Grades"].records.values():
            if rec.deleted is None:
                out.setdefault((rec.student, rec.unit), []).append(rec.grade)
    return out


def record_counts(sb: Sandbox) -> Counter:
    return Counter({key: len(grades) for key, grades in zoho_grade_records(sb).items()})


def sandbox_client(sb: Sandbox, attempts: int = 8) -> ZohoClient:
    """A client of the sandbox's Zoho, retrying quickly (the sandbox's Retry-After is honoured, capped)."""
    cfg = sb.config
    return ZohoClient(
        sb.zoho_api_domain,
        sb.zoho_accounts_url,
        cfg.zoho_client_id,
        cfg.zoho_client_secret,
        cfg.zoho_refresh_token,
        retry=RetryPolicy.fast(attempts),
        # Shorter than a held answer (FAULT_HOLD_SECONDS): a 'timeout' fault is a client timeout.
        timeout=httpx.Timeout(1.5, connect=1.5),
    )


@contextmanager
def faults(sb: Sandbox, *, rate: float = 0.1, write_rate: float = 0.1, token_calls: int | None = 100) -> Iterator[None]:
    """Faults on the sandbox's data endpoints for the block: `rate` of requests fault (429, 5xx,
    held, dropped), `write_rate` of upserts lose their answer after applying, and every access
    token dies after `token_calls` calls."""
    cfg = sb.config
    saved = (cfg.fault_rate, cfg.write_fault_rate, cfg.token_ttl_calls, cfg.fault_delay_seconds)
    cfg.fault_rate, cfg.write_fault_rate, cfg.token_ttl_calls, cfg.fault_delay_seconds = (
        rate,
        write_rate,
        token_calls,
        FAULT_HOLD_SECONDS,
    )
    try:
        yield
    finally:
        cfg.fault_rate, cfg.write_fault_rate, cfg.token_ttl_calls, cfg.fault_delay_seconds = saved
