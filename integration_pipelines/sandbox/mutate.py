"""Mutations of a running college, and the Moodle events they fire.

``apply_mutation(app, MutateRequest(...))`` (``POST /_sandbox/mutate``, ``sandbox mutate``)
advances the sandbox clock, then changes, deletes and creates records in either system.
Every Moodle-side change emits the events real Moodle fires for it, in the exact shape
the ``local_webhooks`` plugin POSTs: ``get_data()`` keys in Moodle's order, then ``host``,
``token`` and ``extra``, with Moodle's int/numeric-string mixing per event type (see the
reference ``moodle_events/INDEX.md``). Events are kept in order (``GET /_sandbox/events``)
and, when ``webhook_url`` is configured, POSTed there on a background thread.

Zoho-side changes bump ``Modified_Time`` (visible to If-Modified-Since reads) or move the
record to the recycle bin (``/deleted``). The truth follows every change.

This module sits below the app: what a mutation needs of a running sandbox is the
:class:`MutableSandbox` protocol, which the app (``server.SandboxApp``) satisfies.
"""

from __future__ import annotations

import json
import queue
import random
import threading
from contextlib import AbstractContextManager
from typing import Any, Protocol
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from .college import (
    BTEC_SCALE,
    DAY,
    PAYMENT_STATUSES,
    College,
    Enrollment,
    MUser,
    Payment,
    Registration,
    Student,
    student_profile_fields,
    zoho_datetime,
)
from .config import SandboxConfig

CHANGEABLE_MODULES = ("Students", "Enrollments", "Registrations", "Payments", "BTEC_Grades")
ADMIN = "2"  # the acting admin's id, a string as Moodle takes it from $USER


class MutateRequest(BaseModel):
    """What one mutation does. Shares apply to the live records of each module in ``zoho_modules``."""

    advance_seconds: int = Field(3600, ge=0, description="Move the sandbox clock forward first.")
    zoho_change_share: float = Field(0.0, ge=0, le=1, description="Share of records changed (Modified_Time bumps).")
    zoho_delete_share: float = Field(0.0, ge=0, le=1, description="Share of records moved to the recycle bin.")
    zoho_modules: list[str] = Field(default_factory=lambda: list(CHANGEABLE_MODULES))
    zoho_new_students: int = Field(0, ge=0, description="New students in both systems, enrolled in classes.")
    moodle_new_grades: int = Field(0, ge=0, description="Ungraded (student, assignment) pairs that get a grade.")
    moodle_regrades: int = Field(0, ge=0, description="Existing grades that change.")
    moodle_suspend_enrolments: int = Field(0, ge=0)
    moodle_user_updates: int = Field(0, ge=0)
    moodle_completions: int = Field(0, ge=0, description="Course completions of students who had none.")
    moodle_delete_users: int = Field(0, ge=0, description="Moodle-only students unenrolled and deleted.")
    seed: int | None = Field(None, description="RNG seed of this mutation (default: derived, deterministic).")


# ----------------------------------------------------------------------------------------------
# Events
# ----------------------------------------------------------------------------------------------
class EventLog:
    """Emitted webhook bodies, in order; optional delivery to ``config.webhook_url``.

    ``base_url`` is the sandbox's own URL (Moodle's wwwroot): events name its host.
    """

    def __init__(self, config: SandboxConfig, base_url: str):
        self.config = config
        self.base_url = base_url
        self.events: list[dict] = []
        self.delivered = 0
        self.failed = 0
        self.mutations = 0
        self._queue: queue.Queue | None = None
        self.host = urlsplit(base_url).hostname or "127.0.0.1"

    def emit(
        self,
        eventname: str,
        component: str,
        action: str,
        target: str,
        objecttable: str | None,
        objectid: Any,
        crud: str,
        edulevel: int,
        contextid: int,
        contextlevel: int,
        contextinstanceid: Any,
        userid: Any,
        courseid: Any,
        relateduserid: Any,
        other: Any,
        timecreated: int,
    ) -> dict:
        cfg = self.config
        body = {
            "eventname": eventname,
            "component": component,
            "action": action,
            "target": target,
            "objecttable": objecttable,
            "objectid": objectid,
            "crud": crud,
            "edulevel": edulevel,
            "contextid": contextid,
            "contextlevel": contextlevel,
            "contextinstanceid": contextinstanceid,
            "userid": userid,
            "courseid": courseid,
            "relateduserid": relateduserid,
            "anonymous": 0,
            "other": other,
            "timecreated": timecreated,
            "host": self.host,
            "token": cfg.webhook_token,
            "extra": cfg.webhook_extra,
        }
        self.events.append(body)
        if cfg.webhook_url:
            self._deliver(len(self.events) - 1, body)
        return body

    # --- delivery ------------------------------------------------------------------------------
    @staticmethod
    def php_json(body: dict) -> bytes:
        """``json_encode`` with PHP's default flags: ``/`` escaped, non-ASCII as ``\\uXXXX``."""
        return json.dumps(body, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()

    def _deliver(self, seq: int, body: dict) -> None:
        if self._queue is None:
            self._queue = queue.Queue()
            threading.Thread(target=self._worker, name="sandbox-webhooks", daemon=True).start()
        self._queue.put((seq, body))

    def _worker(self) -> None:
        import httpx

        cfg = self.config
        with httpx.Client(timeout=10) as client:
            while True:
                seq, body = self._queue.get()  # type: ignore[union-attr]
                headers = {
                    "Accept": "*/*",
                    "Content-Type": "application/json",
                    "User-Agent": f"MoodleBot/5.1 (+{self.base_url})",
                    "X-Moodle-Token": cfg.webhook_token,
                    "X-Tenant-ID": cfg.tenant_id,
                    "X-Event-ID": f"sandbox-{cfg.seed}-{seq}",
                }
                try:
                    resp = client.post(cfg.webhook_url, content=self.php_json(body), headers=headers)
                    ok = resp.status_code < 300
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.delivered += 1
                else:
                    self.failed += 1  # Moodle's plugin does not retry either
                self._queue.task_done()  # type: ignore[union-attr]

    def wait_delivered(self, timeout: float = 10.0) -> None:
        """Block until queued deliveries are done (tests)."""
        import time

        deadline = time.monotonic() + timeout
        while self._queue is not None and self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)


class MutableSandbox(Protocol):
    """What a mutation needs of a running sandbox (``server.SandboxApp`` provides it)."""

    @property
    def config(self) -> SandboxConfig: ...

    @property
    def college(self) -> College: ...

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """Held around every touch of the college."""
        ...

    @property
    def events(self) -> EventLog: ...


# Context ids: deterministic per level so events and WS answers agree.
def user_ctx(uid: int) -> int:
    return 500_000 + uid


def module_ctx(cmid: int) -> int:
    return 1_000_000 + cmid


def course_total_gg_id(e: Enrollment) -> int:
    """grade_grades id of a user's course-total grade (derived from the user enrolment id)."""
    return 1_000_000_000 + e.ue_id


class _Mutator:
    def __init__(self, app: MutableSandbox, req: MutateRequest):
        self.app = app
        self.col = app.college
        self.req = req
        self.ev = app.events
        seed = req.seed if req.seed is not None else app.config.seed * 7919 + app.events.mutations
        self.rng = random.Random(seed)
        self.now = self.col.clock()
        self.summary: dict[str, Any] = {"zoho": {}, "moodle": {}}

    # --- helpers -------------------------------------------------------------------------------
    def _sample(self, items: list, n: int) -> list:
        return self.rng.sample(items, min(n, len(items))) if n > 0 else []

    def _count(self, system: str, key: str, n: int = 1) -> None:
        self.summary[system][key] = self.summary[system].get(key, 0) + n

    def _course_ctx(self, course_id: int) -> int:
        return self.col.courses[course_id].context_id

    # --- Zoho ----------------------------------------------------------------------------------
    def zoho_changes(self) -> None:
        req = self.req
        for module in req.zoho_modules:
            mod = self.col.zoho.get(module)
            if mod is None:
                raise ValueError(f"unknown Zoho module {module!r}")
            live = [r for r in mod.records.values() if r.deleted is None]
            n_change = round(len(live) * req.zoho_change_share)
            n_delete = round(len(live) * req.zoho_delete_share)
            picked = self._sample(live, n_change + n_delete)
            for rec in picked[:n_change]:
                self._change(module, rec)
                rec.modified = self.now
            for rec in picked[n_change:]:
                rec.deleted = self.now
                rec.deleted_type = "recycle"
            if picked:
                mod.mark_dirty()
                self.summary["zoho"][module] = {
                    "changed": min(n_change, len(picked)),
                    "deleted": max(0, len(picked) - n_change),
                }

    def _change(self, module: str, rec: Any) -> None:
        rng = self.rng
        if module == "Students":
            rec.phone = f"+44 7700 {rng.randint(0, 999_999):06d}"
            if rng.random() < 0.2:
                rec.status = rng.choice(
                    [s for s in ("Active", "Suspended", "Withdrawn", "Completed") if s != rec.status]
                )
        elif module == "Enrollments":
            rec.status = "Suspended" if rec.status == "Active" else "Active"
        elif module == "Registrations":
            rec.status = "Completed" if rec.status != "Completed" else "Registered"
        elif module == "Payments":
            rec.status = rng.choice([s for s in PAYMENT_STATUSES if s != rec.status])
            rec.paid_on = self.now if rec.status in ("Paid", "Refunded") else None
        elif module == "BTEC_Grades":
            rec.grade = rng.choice([g for g in BTEC_SCALE if g != rec.grade])
            rec.graded = self.now
        elif module in ("Programs", "Units", "Classes"):
            rec.name = rec.name.rstrip(" *") + " *"

    def new_students(self) -> None:
        col, rng, now = self.col, self.rng, self.now
        n = self.req.zoho_new_students
        if not n:
            return
        programs = list(col.zoho["Programs"].index("id"))
        classes_by_program: dict[int, list] = {}
        for zc in col.zoho["Classes"].index("id"):
            classes_by_program.setdefault(zc.program, []).append(zc)
        next_number = (
            2_400_001 + col.size + sum(1 for _ in col.zoho["Students"].records) + len(col.moodle_only_students)
        )
        for i in range(n):
            p = rng.choice(programs)
            first, last = rng.choice(("Nia", "Omar", "Lena", "Idris", "Tara")), rng.choice(("Bell", "Cole", "Reid"))
            number = f"S{next_number + i}"
            email = f"{first}.{last}.{number[1:]}@student.example.ac.uk".lower()
            s = Student(
                col.new_zid(),
                now,
                now,
                1,
                number,
                first,
                last,
                email,
                p.zid,
                "Active",
                f"+44 7700 {rng.randint(0, 999_999):06d}",
                now,
                None,
            )
            student_profile_fields(s, next_number + i)
            uid = col.new_moodle_id("user")
            user = MUser(uid, number.lower(), first, last, email, number, str(s.zid), False, "London", now, 0, 0, s.zid)
            s.moodle_user_id = uid
            col.users[uid] = user
            col.zoho["Students"].add(s)
            col.students_by_zid[s.zid] = s
            col.moodle_version += 1
            # user_create_user() with a password: user_password_updated fires first, then user_created.
            self.ev.emit(
                "\\core\\event\\user_password_updated",
                "core",
                "updated",
                "user_password",
                None,
                None,
                "u",
                0,
                user_ctx(uid),
                30,
                str(uid),
                ADMIN,
                0,
                str(uid),
                {"forgottenreset": False},
                now,
            )
            self.ev.emit(
                "\\core\\event\\user_created",
                "core",
                "created",
                "user",
                "user",
                uid,
                "c",
                0,
                user_ctx(uid),
                30,
                str(uid),
                ADMIN,
                0,
                uid,
                None,
                now,
            )
            # one class per block: the first section of each block
            seen_blocks: set[str] = set()
            for zc in classes_by_program.get(p.zid, []):
                block = zc.name.rsplit(" ", 1)[0]
                if block in seen_blocks:
                    continue
                seen_blocks.add(block)
                course = col.courses[zc.course_id]
                e = Enrollment(
                    col.new_zid(),
                    now,
                    now,
                    1,
                    s.zid,
                    zc.zid,
                    "Active",
                    col.new_moodle_id("user_enrolments"),
                    uid,
                    course.id,
                    0,
                    now,
                    now,
                )
                col.zoho["Enrollments"].add(e)
                course.enrolments.append(e)
                col.user_enrolments.setdefault(uid, []).append(e)
                cid = str(course.id)
                self.ev.emit(
                    "\\core\\event\\user_enrolment_created",
                    "core",
                    "created",
                    "user_enrolment",
                    "user_enrolments",
                    e.ue_id,
                    "c",
                    0,
                    course.context_id,
                    50,
                    cid,
                    ADMIN,
                    cid,
                    uid,
                    {"enrol": "manual"},
                    now,
                )
                self.ev.emit(
                    "\\core\\event\\role_assigned",
                    "core",
                    "assigned",
                    "role",
                    "role",
                    "5",
                    "c",
                    0,
                    course.context_id,
                    50,
                    cid,
                    ADMIN,
                    cid,
                    uid,
                    {"id": e.ue_id, "component": "", "itemid": 0},
                    now,
                )
            for u in col.zoho["Units"].index("id"):
                if u.program == p.zid:
                    col.zoho["Registrations"].add(Registration(col.new_zid(), now, now, 3, s.zid, u.zid, "Registered"))
            col.zoho["Payments"].add(
                Payment(
                    col.new_zid(),
                    now,
                    now,
                    2,
                    s.zid,
                    "Fee",
                    p.fee_pence,
                    "GBP",
                    "Card",
                    "Pending",
                    now + 30 * DAY,
                    None,
                )
            )
        self._count("zoho", "new_students", n)

    # --- Moodle --------------------------------------------------------------------------------
    def _live_student_enrolments(self) -> list[Enrollment]:
        col = self.col
        out = []
        for course in col.courses.values():
            for e in course.enrolments:
                if e.m_deleted:
                    continue
                u = col.users.get(e.user_id)
                if u is not None and not u.deleted:
                    out.append(e)
        return out

    def _grade_events(self, course: Any, a: Any, g: Any, e: Enrollment, regrade: bool) -> None:
        cid = str(course.id)
        teacher = str(course.teacher_id)
        uid = g.user_id
        now = self.now
        self.ev.emit(
            "\\core\\event\\user_graded",
            "core",
            "graded",
            "user",
            "grade_grades",
            str(g.id),
            "u",
            1,
            course.context_id,
            50,
            cid,
            teacher,
            cid,
            str(uid),
            {"itemid": str(a.item_id), "overridden": False, "finalgrade": g.raw},
            now,
        )
        total = sum(x.grades[uid].raw for x in course.assignments if uid in x.grades)
        self.ev.emit(
            "\\core\\event\\user_graded",
            "core",
            "graded",
            "user",
            "grade_grades",
            str(course_total_gg_id(e)),
            "u",
            1,
            course.context_id,
            50,
            cid,
            -1,
            cid,
            str(uid),
            {"itemid": str(course.total_item_id), "overridden": False, "finalgrade": total},
            now,
        )
        # A new assign_grades row gives int ids; an existing row read back from the DB gives strings.
        objectid: Any = str(g.id) if regrade else g.id
        related: Any = str(uid) if regrade else uid
        self.ev.emit(
            "\\mod_assign\\event\\submission_graded",
            "mod_assign",
            "graded",
            "submission",
            "assign_grades",
            objectid,
            "u",
            1,
            module_ctx(a.cmid),
            70,
            str(a.cmid),
            teacher,
            cid,
            related,
            None,
            now,
        )

    def _draw_grade(self, a: Any) -> float:
        if a.scale:
            return self.rng.randint(1, 4)
        raw = round(self.rng.uniform(0.2, 1.0) * a.grademax * 2) / 2
        return int(raw) if float(raw).is_integer() else raw

    def new_grades(self) -> None:
        from .college import Grade

        n = self.req.moodle_new_grades
        if not n:
            return
        col, now = self.col, self.now
        enrolments = [e for e in self._live_student_enrolments() if not col.users[e.user_id].is_teacher]
        candidates = self._sample_assignment_pairs(enrolments, n, lambda a, user_id: user_id not in a.grades)
        for e, a in candidates:
            course = col.courses[e.course_id]
            g = Grade(
                col.new_moodle_id("assign_grades"),
                a.id,
                e.user_id,
                self._draw_grade(a),
                now,
                now,
                course.teacher_id,
                now - 3600,
            )
            a.grades[e.user_id] = g
            self._grade_events(course, a, g, e, regrade=False)
        self._count("moodle", "new_grades", min(n, len(candidates)))

    def _sample_assignment_pairs(self, enrolments: list, n: int, eligible) -> list:
        """Up to n distinct (enrolment, assignment) pairs where `eligible(assignment, user_id)`.

        Rejection sampling over enrolments: O(n) in the request, not in the ~1M grades.
        """
        col = self.col
        candidates: list = []
        taken: set = set()
        for _ in range(n * 50):
            if len(candidates) >= n or not enrolments:
                break
            e = self.rng.choice(enrolments)
            fits = [
                a
                for a in col.courses[e.course_id].assignments
                if eligible(a, e.user_id) and (a.id, e.user_id) not in taken
            ]
            if fits:
                a = self.rng.choice(fits)
                taken.add((a.id, e.user_id))
                candidates.append((e, a))
        return candidates

    def regrades(self) -> None:
        n = self.req.moodle_regrades
        if not n:
            return
        col = self.col
        enrolments = self._live_student_enrolments()
        candidates = self._sample_assignment_pairs(enrolments, n, lambda a, user_id: user_id in a.grades)
        for e, a in candidates:
            g = a.grades[e.user_id]
            old = g.raw
            while g.raw == old:
                g.raw = self._draw_grade(a)
            g.timemodified = self.now
            self._grade_events(col.courses[a.course_id], a, g, e, regrade=True)
        self._count("moodle", "regrades", min(n, len(candidates)))

    def suspend_enrolments(self) -> None:
        n = self.req.moodle_suspend_enrolments
        active = [e for e in self._live_student_enrolments() if e.m_status == 0]
        for e in self._sample(active, n):
            e.m_status = 1
            e.m_modified = self.now
            course = self.col.courses[e.course_id]
            cid = str(course.id)
            self.ev.emit(
                "\\core\\event\\user_enrolment_updated",
                "core",
                "updated",
                "user_enrolment",
                "user_enrolments",
                str(e.ue_id),
                "u",
                0,
                course.context_id,
                50,
                cid,
                ADMIN,
                cid,
                str(e.user_id),
                {"enrol": "manual"},
                self.now,
            )
            self._count("moodle", "suspended_enrolments")

    def user_updates(self) -> None:
        n = self.req.moodle_user_updates
        users = [u for u in self.col.users.values() if not u.deleted and u.student_zid]
        for u in self._sample(users, n):
            u.city = self.rng.choice(("York", "Bath", "Derby", "Hull"))
            u.lastaccess = self.now
            self.col.moodle_version += 1
            self.ev.emit(
                "\\core\\event\\user_updated",
                "core",
                "updated",
                "user",
                "user",
                u.id,
                "u",
                0,
                user_ctx(u.id),
                30,
                str(u.id),
                ADMIN,
                0,
                u.id,
                None,
                self.now,
            )
            self._count("moodle", "user_updates")

    def completions(self) -> None:
        n = self.req.moodle_completions
        col = self.col
        open_ = [e for e in self._live_student_enrolments() if (e.course_id, e.user_id) not in col.completions]
        for e in self._sample(open_, n):
            col.completions[(e.course_id, e.user_id)] = self.now
            course = col.courses[e.course_id]
            cid, uid = str(course.id), str(e.user_id)
            comp_id = 2_000_000_000 + e.ue_id
            a = course.assignments[-1]
            # Course completion is aggregated before the activity event fires (reference order).
            self.ev.emit(
                "\\core\\event\\course_completed",
                "core",
                "completed",
                "course",
                "course_completions",
                str(comp_id),
                "u",
                2,
                course.context_id,
                50,
                cid,
                uid,
                cid,
                uid,
                {"relateduserid": uid},
                self.now,
            )
            self.ev.emit(
                "\\core\\event\\course_module_completion_updated",
                "core",
                "updated",
                "course_module_completion",
                "course_modules_completion",
                comp_id,
                "u",
                2,
                module_ctx(a.cmid),
                70,
                str(a.cmid),
                uid,
                cid,
                e.user_id,
                {"relateduserid": e.user_id, "overrideby": None, "completionstate": 1},
                self.now,
            )
            self._count("moodle", "completions")

    def delete_users(self) -> None:
        n = self.req.moodle_delete_users
        col, now = self.col, self.now
        # Only Moodle-only students: their deletion has one clear meaning in the truth.
        victims = [s for s in col.moodle_only_students if s.moodle_user_id and not col.users[s.moodle_user_id].deleted]
        for s in self._sample(victims, n):
            user = col.users[s.moodle_user_id]
            for e in col.user_enrolments.get(user.id, []):
                if e.m_deleted:
                    continue
                course = col.courses[e.course_id]
                cid, uid = str(course.id), str(user.id)
                self.ev.emit(
                    "\\core\\event\\role_unassigned",
                    "core",
                    "unassigned",
                    "role",
                    "role",
                    "5",
                    "d",
                    0,
                    course.context_id,
                    50,
                    cid,
                    ADMIN,
                    cid,
                    uid,
                    {"id": str(e.ue_id), "component": "", "itemid": "0"},
                    now,
                )
                for a in course.assignments:
                    g = a.grades.pop(user.id, None)
                    self.ev.emit(
                        "\\core\\event\\grade_deleted",
                        "core",
                        "deleted",
                        "grade",
                        "grade_grades",
                        str(g.id if g else 3_000_000_000 + a.item_id * 10),
                        "d",
                        1,
                        course.context_id,
                        50,
                        cid,
                        ADMIN,
                        cid,
                        uid,
                        {"itemid": str(a.item_id), "overridden": False, "finalgrade": f"{g.raw:.5f}" if g else None},
                        now,
                    )
                e.m_deleted = True
                e.m_modified = now
                self.ev.emit(
                    "\\core\\event\\user_enrolment_deleted",
                    "core",
                    "deleted",
                    "user_enrolment",
                    "user_enrolments",
                    str(e.ue_id),
                    "d",
                    0,
                    course.context_id,
                    50,
                    cid,
                    ADMIN,
                    cid,
                    uid,
                    {
                        "userenrolment": {
                            "id": str(e.ue_id),
                            "status": str(e.m_status),
                            "enrolid": cid,
                            "userid": uid,
                            "timestart": "0",
                            "timeend": "0",
                            "modifierid": ADMIN,
                            "timecreated": str(e.m_created),
                            "timemodified": str(now),
                            "courseid": cid,
                            "enrol": "manual",
                            "lastenrol": True,
                        },
                        "enrol": "manual",
                    },
                    now,
                )
            other = {
                "username": user.username,
                "email": user.email,
                "idnumber": user.idnumber,
                "picture": "0",
                "mnethostid": "1",
            }
            user.deleted = True
            col.moodle_version += 1
            self.ev.emit(
                "\\core\\event\\user_deleted",
                "core",
                "deleted",
                "user",
                "user",
                str(user.id),
                "d",
                0,
                user_ctx(user.id),
                30,
                str(user.id),
                ADMIN,
                0,
                str(user.id),
                other,
                now,
            )
            self._count("moodle", "deleted_users")


def apply_mutation(app: MutableSandbox, req: MutateRequest) -> dict:
    """Advance the clock and apply ``req``; returns a summary of what changed."""
    with app.lock:
        col = app.college
        col.advance(req.advance_seconds)
        first_event = len(app.events.events)
        m = _Mutator(app, req)
        app.events.mutations += 1
        m.zoho_changes()
        m.new_students()
        m.new_grades()
        m.regrades()
        m.suspend_enrolments()
        m.user_updates()
        m.completions()
        m.delete_users()
        col.zoho_version += 1
        summary = m.summary
        # The time stamped on every change of this mutation (If-Modified-Since: now_iso finds them).
        summary["now"] = m.now
        summary["now_iso"] = zoho_datetime(m.now)
        summary["events"] = {
            "emitted": len(app.events.events) - first_event,
            "from": first_event,
            "to": len(app.events.events),
        }
        return summary
