"""What the Moodle token can do, checked against the site: the functions and capabilities a sync needs.

A real Moodle 5.1 site (issue 14) showed that too few capabilities fail silently or late: without
`moodle/course:view` the course list fails with `errorcoursecontextnotvalid`; without the identity
capabilities users come back with no email, idnumber or username, so identity matches nobody;
without the assignment capabilities `mod_assign_get_grades` answers no grades and one warning.
:func:`diagnose` asks the site a handful of questions (one course, a few of its users) and says
what is missing, each with the function to add to the service or the capability to grant.

`CAPABILITIES` is the least set that serves every field a sync lands, each with what it unlocks
(the README lists the same).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from integration_pipelines.lib.moodle.errors import MoodleWSError

# The least set of capabilities for the service user (in a role assigned at the system level),
# each with what it unlocks.
CAPABILITIES: dict[str, str] = {
    "webservice/rest:use": "calling the web services over REST at all",
    "moodle/course:view": "courses the service user is not enrolled in (every course function; without it: "
    "errorcoursecontextnotvalid)",
    "moodle/course:update": "the courses' idnumber in core_course_get_courses (how a course links to its Zoho class)",
    "moodle/course:viewparticipants": "core_enrol_get_enrolled_users: who is enrolled in each course (and the "
    "courses core_enrol_get_users_courses lists)",
    "moodle/course:enrolreview": "the onlysuspended option of core_enrol_get_enrolled_users (suspended enrolments)",
    "moodle/user:viewdetails": "users' profiles in core_user_get_users_by_field and the enrolled users",
    "moodle/site:viewuseridentity": "users' email (identity by email)",
    "moodle/user:viewalldetails": "users' idnumber, username and private custom profile fields (identity by "
    "student number or the CRM field)",
    "gradereport/user:view": "gradereport_user_get_grade_items: the gradebook",
    "moodle/grade:viewall": "every user's grades in one request (userid=0)",
    "mod/assign:view": "mod_assign_get_grades (with mod/assign:grade; without them: no grades and the warning "
    "'No access rights in module context')",
    "mod/assign:grade": "mod_assign_get_grades: assignment grades, the change windows' signal",
    "report/completion:view": "other users' course completion: core_completion_get_course_completion_status "
    "(cannotviewreport) and the completed flag of core_enrol_get_users_courses (null without it)",
}

# The functions a sync calls, and what each feeds.
FUNCTIONS: dict[str, str] = {
    "core_webservice_get_site_info": "the token check",
    "core_course_get_courses": "courses",
    "core_enrol_get_enrolled_users": "enrolments",
    "core_user_get_users_by_field": "users",
    "gradereport_user_get_grade_items": "grade items and grades",
    "mod_assign_get_grades": "the change windows' assignment grades",
    "core_enrol_get_users_courses": "course completions (which enrolments are completed)",
    "core_completion_get_course_completion_status": "course completions (when a course was completed)",
}

# The capabilities a function needs beyond entering the course (moodle/course:view, whose lack
# every course function answers with `errorcoursecontextnotvalid`).
CAPABILITY_OF_FUNCTION: dict[str, tuple[str, ...]] = {
    "core_course_get_courses": ("moodle/course:view",),
    "core_enrol_get_enrolled_users": ("moodle/course:viewparticipants",),
    "core_user_get_users_by_field": ("moodle/user:viewdetails",),
    "gradereport_user_get_grade_items": ("gradereport/user:view", "moodle/grade:viewall"),
    "mod_assign_get_grades": ("mod/assign:view", "mod/assign:grade"),
    "core_enrol_get_users_courses": ("report/completion:view",),
    "core_completion_get_course_completion_status": ("report/completion:view",),
}
# Errors that say which capability is missing whatever the function.
CAPABILITY_OF_ERROR: dict[str, tuple[str, ...]] = {
    "errorcoursecontextnotvalid": ("moodle/course:view",),
    "cannotviewreport": ("report/completion:view",),
}


def capabilities_for(wsfunction: str, errorcode: str | None) -> tuple[str, ...]:
    """The capabilities to grant when `wsfunction` is refused with `errorcode`."""
    return CAPABILITY_OF_ERROR.get(errorcode or "") or CAPABILITY_OF_FUNCTION.get(wsfunction, ())


# Errors that mean "the token may not": a capability or a context it cannot enter.
PERMISSION_ERRORCODES = frozenset(
    {"nopermissions", "errorcoursecontextnotvalid", "requireloginerror", "cannotviewreport", "accessexception"}
)


@dataclass(frozen=True)
class Finding:
    """One thing the token lacks: a function (`fix` is then "add <function> to the service") or
    a capability, with what is lost without it."""

    kind: str  # "function" | "capability" | "warning"
    name: str
    lost: str
    evidence: str = ""

    def line(self) -> str:
        if self.kind == "function":
            fix = f"add {self.name} to the token's external service"
        elif self.kind == "capability":
            fix = f"grant {self.name} to the service user"
        else:
            fix = self.name
        detail = f" ({self.evidence})" if self.evidence else ""
        return f"{fix}: without it, {self.lost}{detail}"


@dataclass
class Diagnosis:
    """What :func:`diagnose` found. `ok` when a sync would land everything it should."""

    site: str = ""
    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not [f for f in self.findings if f.kind != "warning"]

    def missing_capabilities(self) -> list[str]:
        return sorted({f.name for f in self.findings if f.kind == "capability"})

    def missing_functions(self) -> list[str]:
        return sorted({f.name for f in self.findings if f.kind == "function"})

    def capability(self, name: str, evidence: str = "") -> None:
        if name not in {f.name for f in self.findings}:
            self.findings.append(Finding("capability", name, CAPABILITIES[name], evidence))

    def report(self) -> str:
        lines = [f"Moodle site: {self.site}" if self.site else "Moodle site"]
        lines += [f"  checked: {c}" for c in self.checked]
        if self.ok and not self.findings:
            lines.append(
                "OK: the token's service has every function and the service user every capability a sync needs"
            )
        for f in self.findings:
            lines.append(("  warning: " if f.kind == "warning" else "  MISSING: ") + f.line())
        lines += [f"  not checked until the above is fixed: {u}" for u in self.unchecked]
        return "\n".join(lines)


def _permission_denied(diagnosis: Diagnosis, wsfunction: str, exc: MoodleWSError) -> bool:
    """Record a refused call's capabilities; False when the error is not a refusal."""
    if exc.errorcode == "accessexception":
        diagnosis.findings.append(Finding("function", wsfunction, f"no {FUNCTIONS.get(wsfunction, wsfunction)}"))
        return True
    if exc.errorcode not in PERMISSION_ERRORCODES:
        return False
    for capability in capabilities_for(wsfunction, exc.errorcode):
        diagnosis.capability(capability, f"{wsfunction} answered {exc.errorcode}")
    return True


def diagnose(client: Any, *, crm_field: str | None = None, sample_users: int = 5) -> Diagnosis:
    """Ask the site what the token can do, in a handful of requests: the functions its service
    offers (site info), then the course list, one course's enrolled users (a few), their
    profiles, that course's gradebook, one assignment's grades, one student's courses with their
    completion, and one completion status. Each
    refusal, hidden field or warning-only answer becomes a finding naming what to grant.

    A refused step leaves the steps that need its answer unchecked (say, the enrolled users
    when the course list is refused): they are named in `unchecked`, and the next run of the
    doctor, once the first capability is granted, checks them."""
    diagnosis = Diagnosis()
    info = client.site_info()
    diagnosis.site = f"{info.get('sitename', '')} ({info.get('release', '')}) as {info.get('username', '')}"
    offered = {f.get("name") for f in info.get("functions") or []}
    for wsfunction, feeds in FUNCTIONS.items():
        if offered and wsfunction not in offered:
            diagnosis.findings.append(Finding("function", wsfunction, f"no {feeds}"))
    diagnosis.checked.append(f"{len(offered)} functions in the token's service")
    can_call = {fn for fn in FUNCTIONS if not offered or fn in offered}

    courses: list[dict[str, Any]] = []
    if "core_course_get_courses" in can_call:
        try:
            courses = [c for c in client.call("core_course_get_courses") or [] if c.get("format") != "site"]
        except MoodleWSError as exc:
            if not _permission_denied(diagnosis, "core_course_get_courses", exc):
                raise
        diagnosis.checked.append(f"core_course_get_courses: {len(courses)} courses")
        if courses and not any("idnumber" in c for c in courses):
            diagnosis.capability("moodle/course:update", "no course has an idnumber in core_course_get_courses")

    course, users = None, []
    if "core_enrol_get_enrolled_users" in can_call:
        for candidate in courses:
            try:
                options = [{"name": "limitfrom", "value": 0}, {"name": "limitnumber", "value": sample_users}]
                users = client.call("core_enrol_get_enrolled_users", courseid=int(candidate["id"]), options=options)
            except MoodleWSError as exc:
                if not _permission_denied(diagnosis, "core_enrol_get_enrolled_users", exc):
                    raise
                break
            if users:
                course = candidate
                break
        if course is not None:
            diagnosis.checked.append(f"core_enrol_get_enrolled_users: {len(users)} users of course {course['id']}")
            _identity_fields(diagnosis, users, crm_field, "core_enrol_get_enrolled_users")
    if course is None:
        diagnosis.unchecked += [
            "users' identity fields (core_enrol_get_enrolled_users, core_user_get_users_by_field)",
            "the gradebook (gradereport_user_get_grade_items), assignment grades (mod_assign_get_grades), "
            "completions (core_enrol_get_users_courses, core_completion_get_course_completion_status)",
        ]

    if users and "core_user_get_users_by_field" in can_call:
        try:
            profiles = client.call("core_user_get_users_by_field", field="id", values=[int(u["id"]) for u in users])
        except MoodleWSError as exc:
            if not _permission_denied(diagnosis, "core_user_get_users_by_field", exc):
                raise
        else:
            diagnosis.checked.append(f"core_user_get_users_by_field: {len(profiles or [])} profiles")
            if not profiles:
                diagnosis.capability(
                    "moodle/user:viewdetails", f"core_user_get_users_by_field returned none of {len(users)} users"
                )
            _identity_fields(diagnosis, profiles or [], crm_field, "core_user_get_users_by_field")

    assignments: list[int] = []
    if course is not None and "gradereport_user_get_grade_items" in can_call:
        try:
            report = client.call("gradereport_user_get_grade_items", courseid=int(course["id"]), userid=0) or {}
        except MoodleWSError as exc:
            if not _permission_denied(diagnosis, "gradereport_user_get_grade_items", exc):
                raise
        else:
            items = [i for ug in report.get("usergrades") or [] for i in ug.get("gradeitems") or []]
            assignments = sorted({int(i["iteminstance"]) for i in items if i.get("itemmodule") == "assign"})
            diagnosis.checked.append(f"gradereport_user_get_grade_items: {len(items)} grades of course {course['id']}")

    if assignments and "mod_assign_get_grades" in can_call:
        try:
            answer = client.call("mod_assign_get_grades", assignmentids=assignments[:1]) or {}
        except MoodleWSError as exc:
            if not _permission_denied(diagnosis, "mod_assign_get_grades", exc):
                raise
        else:
            refused = [w for w in answer.get("warnings") or [] if str(w.get("warningcode")) == "1"]
            if refused and not answer.get("assignments"):
                for capability in CAPABILITY_OF_FUNCTION["mod_assign_get_grades"]:
                    diagnosis.capability(capability, f"mod_assign_get_grades warned: {refused[0].get('message')}")
            diagnosis.checked.append("mod_assign_get_grades: one assignment")

    student = next((u for u in users if any(r.get("shortname") == "student" for r in u.get("roles") or [])), None)
    if course is not None and student is not None and "core_enrol_get_users_courses" in can_call:
        # Moodle refuses nothing here: without report/completion:view it answers `completed` null.
        try:
            listed = client.call("core_enrol_get_users_courses", userid=int(student["id"]), returnusercount=False)
        except MoodleWSError as exc:
            if not _permission_denied(diagnosis, "core_enrol_get_users_courses", exc):
                raise
        else:
            tracking = [c for c in listed or [] if c.get("enablecompletion")]
            if any(c.get("completed") is None for c in tracking):
                diagnosis.capability(
                    "report/completion:view",
                    f"core_enrol_get_users_courses answered no completion for user {student['id']}",
                )
            diagnosis.checked.append(
                f"core_enrol_get_users_courses: {len(listed or [])} courses of one student, "
                f"{len(tracking)} tracking completion"
            )
    if (
        course is not None
        and student is not None
        and course.get("enablecompletion")
        and "core_completion_get_course_completion_status" in can_call
    ):
        try:
            client.call(
                "core_completion_get_course_completion_status", courseid=int(course["id"]), userid=int(student["id"])
            )
        except MoodleWSError as exc:
            if exc.errorcode in ("nocriteriaset", "completionnotenabled"):
                pass
            elif not _permission_denied(diagnosis, "core_completion_get_course_completion_status", exc):
                raise
        diagnosis.checked.append("core_completion_get_course_completion_status: one enrolment")
    return diagnosis


def _identity_fields(diagnosis: Diagnosis, users: Iterable[dict[str, Any]], crm_field: str | None, source: str) -> None:
    """The fields identity matches on, which Moodle leaves out of an answer when the token may
    not see them (it leaves out an empty idnumber too, so username, always set, is the test)."""
    users = list(users)
    if not users:
        return
    if not any(u.get("email") for u in users):
        diagnosis.capability("moodle/site:viewuseridentity", f"no user has an email in {source}")
    if not any(u.get("username") for u in users):
        diagnosis.capability("moodle/user:viewalldetails", f"no user has a username or idnumber in {source}")
    if crm_field and not any(f.get("shortname") == crm_field for u in users for f in u.get("customfields") or []):
        diagnosis.findings.append(
            Finding(
                "warning",
                f"custom profile field {crm_field!r} (the mapping's moodle_crm_field)",
                f"identity cannot use it: none of the {len(users)} users read has it (grant moodle/user:viewalldetails "
                "if the field is not visible to everyone, or fill it in)",
                source,
            )
        )
