"""Fake Moodle Web Services REST endpoint (``/webservice/rest/server.php``), Moodle 5.1 shapes.

Every answer mirrors the captured samples in the reference folder: same keys, same JSON
types, errors with HTTP 200 and the captured error bodies. Optional keys that Moodle leaves
out when empty (``idnumber``, ``institution``, ``city``, ``country``, ``customfields``) are
left out here too.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from typing import Any

from . import phpparams
from .college import BTEC_SCALE, BTEC_SCALE_ID, College, Course, MUser

ERR_INVALID_TOKEN = {
    "exception": "core\\exception\\moodle_exception",
    "errorcode": "invalidtoken",
    "message": "Invalid token - token not found",
}
ERR_INVALID_PARAMETER = {
    "exception": "core\\exception\\invalid_parameter_exception",
    "errorcode": "invalidparameter",
    "message": "Invalid parameter value detected",
}
ERR_ACCESS = {
    "exception": "webservice_access_exception",
    "errorcode": "accessexception",
    "message": "Access control exception",
}
ERR_RECORD_UNKNOWN = {
    "exception": "dml_missing_record_exception",
    "errorcode": "invalidrecordunknown",
    "message": "Can't find data record in database.",
}

MOODLE_RELEASE = "5.1+ (Build: 20251017)"
MOODLE_VERSION = "2025100600.02"
MOD_VERSION = "2025100600"

# Functions Moodle knows but the sandbox's web service does not expose: calling one gives
# accessexception (like the reference's core_user_create_users), not invalidrecordunknown.
KNOWN_NOT_IN_SERVICE = frozenset(
    {
        "core_user_create_users",
        "core_user_update_users",
        "core_user_delete_users",
        "core_course_create_courses",
        "core_course_update_courses",
        "core_course_delete_courses",
        "enrol_manual_enrol_users",
        "enrol_manual_unenrol_users",
        "core_grades_update_grades",
        "mod_assign_save_grade",
        "core_group_get_groups",
        "core_webservice_get_site_info_full",
        "core_enrol_get_course_enrolment_methods",
        "core_message_send_instant_messages",
    }
)


class MoodleError(Exception):
    """An error answered as a Moodle exception body (with HTTP 200)."""

    def __init__(self, body: dict):
        super().__init__(body.get("errorcode"))
        self.body = body


def bad_param() -> MoodleError:
    return MoodleError(ERR_INVALID_PARAMETER)


# ---- parameter helpers ------------------------------------------------------------------------
_INT = re.compile(r"^-?\d+$")


def p_int(args: dict, name: str, default: Any = ...) -> int:
    """A PARAM_INT argument; missing (without default) or non-integer -> invalidparameter."""
    v = args.get(name, default)
    if v is ...:
        raise bad_param()
    if isinstance(v, int):
        return v
    if not isinstance(v, str) or not _INT.match(v.strip()):
        raise bad_param()
    return int(v)


def p_str(args: dict, name: str, default: Any = ...) -> str:
    v = args.get(name, default)
    if v is ... or not isinstance(v, str):
        raise bad_param()
    return v


def p_list(args: dict, name: str, required: bool = False) -> list:
    v = args.get(name)
    if v is None:
        if required:
            raise bad_param()
        return []
    if not isinstance(v, list):
        raise bad_param()
    return v


def p_bool(args: dict, name: str, default: bool) -> bool:
    v = args.get(name)
    if v is None:
        return default
    if v in ("1", "true", 1):
        return True
    if v in ("0", "false", "", 0):
        return False
    raise bad_param()


# ---- the web service --------------------------------------------------------------------------
class MoodleService:
    """Answers Moodle WS calls against a live :class:`College`."""

    def __init__(
        self, college: College, base_url: str, token: str, limited_tokens: dict[str, frozenset[str]] | None = None
    ):
        self.college = college
        self.base_url = base_url.rstrip("/")
        self._token = token
        # Tokens of service users holding only some capabilities (None: the full token, all of them).
        self._limited = dict(limited_tokens or {})
        self._caller = threading.local()
        self.functions: dict[str, Callable[[dict], Any]] = {
            "core_webservice_get_site_info": self.get_site_info,
            "core_user_get_users": self.get_users,
            "core_user_get_users_by_field": self.get_users_by_field,
            "core_course_get_courses": self.get_courses,
            "core_course_get_courses_by_field": self.get_courses_by_field,
            "core_course_get_categories": self.get_categories,
            "core_course_get_contents": self.get_contents,
            "core_enrol_get_enrolled_users": self.get_enrolled_users,
            "core_enrol_get_users_courses": self.get_users_courses,
            "gradereport_user_get_grade_items": self.get_grade_items,
            "gradereport_user_get_grades_table": self.get_grades_table,
            "core_completion_get_course_completion_status": self.get_course_completion_status,
            "core_completion_get_activities_completion_status": self.get_activities_completion_status,
            "mod_assign_get_assignments": self.get_assignments,
            "mod_assign_get_grades": self.get_assign_grades,
            "mod_assign_get_submissions": self.get_submissions,
        }
        self._teacher_courses: dict[int, list[int]] | None = None
        self._teacher_courses_version = -1
        self._user_index_version = -1
        self._by_username: dict[str, MUser] = {}
        self._by_idnumber: dict[str, list[MUser]] = {}
        self._by_email: dict[str, list[MUser]] = {}

    # --- dispatch ---------------------------------------------------------------------------
    def call(self, pairs: list[tuple[str, str]]) -> Any:
        """Run one request given its merged GET+POST pairs; returns the JSON-able answer."""
        token = None
        function = None
        rest: list[tuple[str, str]] = []
        for k, v in pairs:
            if k == "wstoken":
                token = v
            elif k == "wsfunction":
                function = v
            elif k == "moodlewsrestformat" or k.startswith("moodlewssetting"):
                continue
            else:
                rest.append((k, v))
        if not token or (token != self._token and token not in self._limited):
            raise MoodleError(ERR_INVALID_TOKEN)
        self._caller.capabilities = self._limited.get(token)
        handler = self.functions.get(function or "")
        if handler is None:
            if function in KNOWN_NOT_IN_SERVICE:
                raise MoodleError(ERR_ACCESS)
            raise MoodleError(ERR_RECORD_UNKNOWN)
        try:
            args = phpparams.decode(rest)
        except Exception:
            raise bad_param() from None
        return handler(args)

    # --- capabilities (a limited token answers as the reference's limited service user) -------
    def may(self, capability: str) -> bool:
        held = getattr(self._caller, "capabilities", None)
        return held is None or capability in held

    def require_course_context(self, course_id: int) -> None:
        """Without moodle/course:view a service user enrolled nowhere cannot enter a course's
        context (core_course_get_courses__without_identity_capabilities)."""
        if not self.may("moodle/course:view"):
            raise MoodleError(
                {
                    "exception": "core\\exception\\moodle_exception",
                    "errorcode": "errorcoursecontextnotvalid",
                    "message": f"You cannot execute functions in the course context (course id:{course_id}). "
                    "The context error message was: Course or activity not accessible.",
                }
            )

    def require(self, capability: str, name: str) -> None:
        if not self.may(capability):
            raise MoodleError(
                {
                    "exception": "required_capability_exception",
                    "errorcode": "nopermissions",
                    "message": f"Sorry, but you do not currently have permissions to do that ({name}).",
                }
            )

    def visible_user(self, d: dict) -> dict:
        """A user's fields as the caller may see them: email needs moodle/site:viewuseridentity;
        username, idnumber and custom fields moodle/user:viewalldetails."""
        if not self.may("moodle/site:viewuseridentity"):
            d.pop("email", None)
        if not self.may("moodle/user:viewalldetails"):
            for key in ("username", "idnumber", "customfields"):
                d.pop(key, None)
        return d

    # --- shared pieces ----------------------------------------------------------------------
    def _img(self, size: str) -> str:
        return f"{self.base_url}/theme/image.php/boost/core/1795611938/u/{size}"

    def user_desc(self, u: MUser, *, with_prefs: bool = False) -> dict:
        """The USER structure of ``user_get_user_details`` (5.1 key order; empty optionals left out)."""
        d: dict[str, Any] = {
            "id": u.id,
            "username": u.username,
            "firstname": u.firstname,
            "lastname": u.lastname,
            "fullname": f"{u.firstname} {u.lastname}",
            "email": u.email,
            "department": "Staff" if u.is_teacher else ("" if u.id == self.college.admin_id else "Students"),
        }
        if u.id != self.college.admin_id:
            d["institution"] = "Sandbox College"
        if u.idnumber:
            d["idnumber"] = u.idnumber
        d.update(
            {
                "firstaccess": u.firstaccess,
                "lastaccess": u.lastaccess,
                "auth": "manual",
                "suspended": u.suspended,
                "confirmed": True,
                "lang": "en",
                "theme": "",
                "timezone": "99",
                "mailformat": 1,
                "trackforums": 0,
            }
        )
        if u.city:
            d["city"] = u.city
            d["country"] = "GB"
        d["profileimageurlsmall"] = self._img("f2")
        d["profileimageurl"] = self._img("f1")
        if u.crmid:
            d["customfields"] = [
                {"type": "text", "value": u.crmid, "displayvalue": u.crmid, "name": "CRM ID", "shortname": "crmid"}
            ]
        if with_prefs:
            d["preferences"] = [
                {"name": "auth_forcepasswordchange", "value": "0"},
                {"name": "email_bounce_count", "value": "0"},
            ]
        return d

    def _refresh_user_index(self) -> None:
        col = self.college
        version = getattr(col, "moodle_version", 0)
        if version == self._user_index_version and self._by_username:
            return
        self._by_username, self._by_idnumber, self._by_email = {}, {}, {}
        for u in col.users.values():
            if u.deleted:
                continue
            self._by_username[u.username] = u
            if u.idnumber:
                self._by_idnumber.setdefault(u.idnumber, []).append(u)
            self._by_email.setdefault(u.email, []).append(u)
        self._user_index_version = version

    def course_or_error(self, course_id: int) -> Course:
        course = self.college.courses.get(course_id)
        if course is None:
            raise MoodleError(ERR_RECORD_UNKNOWN)
        return course

    # --- functions --------------------------------------------------------------------------
    def get_site_info(self, args: dict) -> dict:
        fn_names = sorted(self.functions)
        return {
            "sitename": "Sandbox College LMS",
            "username": "admin",
            "firstname": "Admin",
            "lastname": "User",
            "fullname": "Admin User",
            "lang": "en",
            "userid": self.college.admin_id,
            "siteurl": self.base_url,
            "userpictureurl": self._img("f1"),
            "functions": [
                {"name": n, "version": MOD_VERSION if n.startswith(("mod_", "gradereport_")) else MOODLE_VERSION}
                for n in fn_names
            ],
            "downloadfiles": 1,
            "uploadfiles": 0,
            "release": MOODLE_RELEASE,
            "version": MOODLE_VERSION,
            "mobilecssurl": "",
            "advancedfeatures": [
                {"name": n, "value": v}
                for n, v in (
                    ("usecomments", 1),
                    ("usetags", 1),
                    ("enablenotes", 1),
                    ("messaging", 1),
                    ("enableblogs", 1),
                    ("enablecompletion", 1),
                    ("enablebadges", 1),
                    ("messagingallusers", 0),
                    ("enablecustomreports", 1),
                    ("enableglobalsearch", 0),
                    ("mnet_dispatcher_mode", 0),
                    ("enablecompetencies", 1),
                )
            ],
            "usercanmanageownfiles": True,
            "userquota": 0,
            "usermaxuploadfilesize": -1,
            "userhomepage": 1,
            "userprivateaccesskey": "0123456789abcdef0123456789abcdef",
            "siteid": 1,
            "sitecalendartype": "gregorian",
            "usercalendartype": "gregorian",
            "userissiteadmin": True,
            "theme": "boost",
            "limitconcurrentlogins": 0,
            "policyagreed": 0,
        }

    _LIKE_KEYS = ("email", "firstname", "lastname")
    _EXACT_KEYS = ("id", "idnumber", "username", "auth")

    def get_users(self, args: dict) -> dict:
        criteria = p_list(args, "criteria", required=True)
        seen: set[str] = set()
        warnings = []
        tests: list[Callable[[MUser], bool]] = []
        for c in criteria:
            if not isinstance(c, dict) or not isinstance(c.get("key"), str) or not isinstance(c.get("value"), str):
                raise bad_param()
            key, value = c["key"], c["value"]
            if key in seen:
                raise MoodleError(
                    {
                        "exception": "moodle_exception",
                        "errorcode": "keyalreadyset",
                        "message": f"The key {key} can only be sent once",
                    }
                )
            seen.add(key)
            if key in self._LIKE_KEYS:
                # SQL LIKE, case-insensitive as Moodle's sql_like(..., false): % and _ are wildcards.
                rx = re.compile(
                    "^" + "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in value) + "$",
                    re.IGNORECASE | re.DOTALL,
                )
                tests.append(lambda u, rx=rx, key=key: bool(rx.match(getattr(u, key))))
            elif key in self._EXACT_KEYS:
                if key == "id":
                    if not _INT.match(value):
                        raise bad_param()
                    tests.append(lambda u, v=int(value): u.id == v)
                elif key == "auth":
                    tests.append(lambda u, v=value: v == "manual")
                else:
                    tests.append(lambda u, v=value, key=key: getattr(u, key) == v)
            else:
                warnings.append(
                    {
                        "item": key,
                        "warningcode": "invalidfieldparameter",
                        "message": f"The search key '{key}' is not supported, look at the web service documentation",
                    }
                )
        users = []
        if tests:
            for u in sorted(self.college.users.values(), key=lambda u: u.id):
                if not u.deleted and all(t(u) for t in tests):
                    users.append(self.user_desc(u, with_prefs=u.id == self.college.admin_id))
        return {"users": users, "warnings": warnings}

    def get_users_by_field(self, args: dict) -> list:
        field = p_str(args, "field")
        values = p_list(args, "values", required=True)
        if field not in ("id", "idnumber", "username", "email"):
            raise bad_param()
        self._refresh_user_index()
        found: dict[int, MUser] = {}
        for v in values:
            if not isinstance(v, str):
                raise bad_param()
            if field == "id":
                if not _INT.match(v.strip()):
                    raise bad_param()
                # By id Moodle returns a deleted user too, anonymised, with no deleted flag
                # (core_user_get_users_by_field__deleted_user); by other fields it cannot match.
                u = self.college.users.get(int(v))
                if u:
                    found[u.id] = u
            elif field == "username":
                u = self._by_username.get(v)
                if u:
                    found[u.id] = u
            elif field == "idnumber":
                for u in self._by_idnumber.get(v, ()):
                    found[u.id] = u
            else:
                for u in self._by_email.get(v, ()):
                    found[u.id] = u
        if not self.may("moodle/user:viewdetails"):
            return []  # Moodle leaves out every user the caller may not view
        users = [found[i] for i in sorted(found)]
        return [self.deleted_user_desc(u) if u.deleted else self.visible_user(self.user_desc(u)) for u in users]

    def deleted_user_desc(self, u: MUser) -> dict:
        """A deleted user as Moodle's delete_user leaves it: the username mangled to
        `<email>.<time>`, the email an md5, idnumber and profile fields gone, no deleted flag."""
        username = f"{u.email}.{u.timecreated}"
        return {
            "id": u.id,
            "username": username,
            "firstname": u.firstname,
            "lastname": u.lastname,
            "fullname": f"{u.firstname} {u.lastname}",
            "email": hashlib.md5(username.encode()).hexdigest(),  # noqa: S324 - Moodle's own anonymisation
            "department": "",
            "firstaccess": 0,
            "lastaccess": 0,
            "auth": "manual",
            "suspended": False,
            "confirmed": True,
            "lang": "en",
            "theme": "",
            "timezone": "99",
            "mailformat": 1,
            "trackforums": 0,
            "profileimageurlsmall": self._img("f2"),
            "profileimageurl": self._img("f1"),
        }

    # ===== courses ===========================================================================
    SITE_COURSE = 1

    def _site_course_plain(self) -> dict:
        return {
            "id": 1,
            "shortname": "college",
            "categoryid": 0,
            "categorysortorder": 1,
            "fullname": "Sandbox College",
            "displayname": "Sandbox College",
            "idnumber": "",
            "summary": "Sandbox College LMS",
            "summaryformat": 1,
            "format": "site",
            "showgrades": 1,
            "newsitems": 3,
            "startdate": 0,
            "enddate": 0,
            "numsections": 1,
            "maxbytes": 0,
            "showreports": 0,
            "visible": 1,
            "groupmode": 0,
            "groupmodeforce": 0,
            "defaultgroupingid": 0,
            "timecreated": 1_720_000_000,
            "timemodified": 1_720_000_000,
            "enablecompletion": 0,
            "completionnotify": 0,
            "lang": "",
            "forcetheme": "",
            "courseformatoptions": [{"name": "numsections", "value": 1}],
            "showactivitydates": False,
            "showcompletionconditions": None,
        }

    def course_plain(self, c: Course) -> dict:
        """A course as ``core_course_get_courses`` returns it."""
        return {
            "id": c.id,
            "shortname": c.shortname,
            "categoryid": c.categoryid,
            "categorysortorder": 10_000 * c.categoryid + c.id,
            "fullname": c.fullname,
            "displayname": c.fullname,
            "idnumber": c.idnumber,
            "summary": f"Course for class {c.shortname}",
            "summaryformat": 1,
            "format": "topics",
            "showgrades": 1,
            "newsitems": 0,
            "startdate": c.startdate,
            "enddate": c.enddate,
            "numsections": 2,
            "maxbytes": 0,
            "showreports": 0,
            "visible": 1,
            "hiddensections": 1,
            "groupmode": 0,
            "groupmodeforce": 0,
            "defaultgroupingid": 0,
            "timecreated": c.timecreated,
            "timemodified": c.timemodified,
            "enablecompletion": int(c.completion_enabled),
            "completionnotify": 0,
            "lang": "",
            "forcetheme": "",
            "courseformatoptions": [{"name": "hiddensections", "value": 1}, {"name": "coursedisplay", "value": 0}],
            "showactivitydates": False,
            "showcompletionconditions": True,
        }

    _FILTERS = [
        {"filter": f, "localstate": 0, "inheritedstate": st}
        for f, st in (
            ("displayh5p", 1),
            ("activitynames", 1),
            ("mathjaxloader", 1),
            ("emoticon", 1),
            ("codehighlighter", 1),
            ("mediaplugin", 1),
            ("urltolink", 0),
        )
    ]

    def _category_name(self, cat_id: int) -> str:
        for cid, name, _idn, _tm in self.college.categories:
            if cid == cat_id:
                return name
        return ""

    def course_by_field(self, c: Course | None) -> dict:
        """A course as ``core_course_get_courses_by_field`` returns it (``None`` = the site course)."""
        if c is None:
            return {
                "id": 1,
                "fullname": "Sandbox College",
                "displayname": "Sandbox College",
                "shortname": "college",
                "courseimage": f"{self.base_url}/pluginfile.php/2/course/generated/course.svg",
                "categoryid": 0,
                "categoryname": "",
                "sortorder": 1,
                "summary": "Sandbox College LMS",
                "summaryformat": 1,
                "summaryfiles": [],
                "overviewfiles": [],
                "showactivitydates": False,
                "showcompletionconditions": None,
                "contacts": [],
                "enrollmentmethods": [],
                "idnumber": "",
                "format": "site",
                "showgrades": 1,
                "newsitems": 3,
                "startdate": 0,
                "enddate": 0,
                "maxbytes": 0,
                "showreports": 0,
                "visible": 1,
                "groupmode": 0,
                "groupmodeforce": 0,
                "defaultgroupingid": 0,
                "enablecompletion": 0,
                "completionnotify": 0,
                "lang": "",
                "theme": "",
                "marker": 0,
                "legacyfiles": 0,
                "calendartype": "",
                "timecreated": 1_720_000_000,
                "timemodified": 1_720_000_000,
                "requested": 0,
                "cacherev": 1_720_000_000,
                "filters": self._FILTERS,
            }
        teacher = self.college.users.get(c.teacher_id)
        return {
            "id": c.id,
            "fullname": c.fullname,
            "displayname": c.fullname,
            "shortname": c.shortname,
            "courseimage": f"{self.base_url}/pluginfile.php/{c.context_id}/course/generated/course.svg",
            "categoryid": c.categoryid,
            "categoryname": self._category_name(c.categoryid),
            "sortorder": 10_000 * c.categoryid + c.id,
            "summary": f"Course for class {c.shortname}",
            "summaryformat": 1,
            "summaryfiles": [],
            "overviewfiles": [],
            "showactivitydates": False,
            "showcompletionconditions": True,
            "contacts": [{"id": teacher.id, "fullname": f"{teacher.firstname} {teacher.lastname}"}] if teacher else [],
            "enrollmentmethods": ["manual"],
            "idnumber": c.idnumber,
            "format": "topics",
            "showgrades": 1,
            "newsitems": 0,
            "startdate": c.startdate,
            "enddate": c.enddate,
            "maxbytes": 0,
            "showreports": 0,
            "visible": 1,
            "groupmode": 0,
            "groupmodeforce": 0,
            "defaultgroupingid": 0,
            "enablecompletion": int(c.completion_enabled),
            "completionnotify": 0,
            "lang": "",
            "theme": "",
            "marker": 0,
            "legacyfiles": 0,
            "calendartype": "",
            "timecreated": c.timecreated,
            "timemodified": c.timemodified,
            "requested": 0,
            "cacherev": c.timemodified,
            "filters": self._FILTERS,
            "courseformatoptions": [{"name": "hiddensections", "value": 1}, {"name": "coursedisplay", "value": 0}],
        }

    def get_courses(self, args: dict) -> list:
        options = args.get("options") or {}
        if not isinstance(options, dict):
            raise bad_param()
        ids = options.get("ids") or []
        if not isinstance(ids, list):
            raise bad_param()
        courses = self.college.courses
        if courses:
            self.require_course_context(ids[0] if ids and isinstance(ids[0], int) else min(courses))
        if not ids:
            out = [self._site_course_plain()] + [self.course_plain(courses[i]) for i in sorted(courses)]
            return [self._visible_course(c) for c in out]
        out = []
        for raw in ids:
            if not isinstance(raw, str) or not _INT.match(raw):
                raise bad_param()
            cid = int(raw)
            if cid == self.SITE_COURSE:
                out.append(self._site_course_plain())
            elif cid in courses:
                out.append(self.course_plain(courses[cid]))
            else:
                raise MoodleError(ERR_RECORD_UNKNOWN)
        return [self._visible_course(c) for c in out]

    def _visible_course(self, c: dict) -> dict:
        """A course's idnumber is for course admins (moodle/course:update) in core_course_get_courses."""
        if not self.may("moodle/course:update"):
            c.pop("idnumber", None)
        return c

    def get_courses_by_field(self, args: dict) -> dict:
        field = args.get("field", "")
        value = args.get("value", "")
        if not isinstance(field, str) or not isinstance(value, str):
            raise bad_param()
        courses = self.college.courses
        if field == "":
            picked: list = [None] + [courses[i] for i in sorted(courses)]
        elif field in ("id", "ids"):
            parts = [v.strip() for v in value.split(",")] if field == "ids" else [value.strip()]
            if not all(_INT.match(v) for v in parts):
                raise bad_param()
            picked = [
                None if int(v) == self.SITE_COURSE else courses[int(v)]
                for v in parts
                if int(v) in courses or int(v) == self.SITE_COURSE
            ]
        elif field == "shortname":
            picked = [c for c in courses.values() if c.shortname == value]
        elif field == "idnumber":
            picked = [c for c in courses.values() if c.idnumber == value]
        elif field == "category":
            if not _INT.match(value):
                raise bad_param()
            picked = [c for c in courses.values() if c.categoryid == int(value)]
        else:
            raise bad_param()
        return {"courses": [self.course_by_field(c) for c in picked], "warnings": []}

    def get_categories(self, args: dict) -> list:
        criteria = p_list(args, "criteria")
        cats = self.college.categories
        counts: dict[int, int] = {}
        for c in self.college.courses.values():
            counts[c.categoryid] = counts.get(c.categoryid, 0) + 1
        for crit in criteria:
            if not isinstance(crit, dict) or crit.get("key") not in (
                "id",
                "ids",
                "name",
                "idnumber",
                "parent",
                "visible",
                "theme",
            ):
                raise bad_param()
            key, value = crit["key"], crit.get("value", "")
            if key == "id":
                cats = [c for c in cats if str(c[0]) == value]
            elif key == "ids":
                wanted = set(value.split(","))
                cats = [c for c in cats if str(c[0]) in wanted]
            elif key == "name":
                cats = [c for c in cats if c[1] == value]
            elif key == "idnumber":
                cats = [c for c in cats if c[2] == value]
            elif key == "parent":
                cats = cats if value == "0" else []
        return [
            {
                "id": cid,
                "name": name,
                "idnumber": idn,
                "description": "",
                "descriptionformat": 1,
                "parent": 0,
                "sortorder": 10_000 * cid,
                "coursecount": counts.get(cid, 0),
                "visible": 1,
                "visibleold": 1,
                "timemodified": tm,
                "depth": 1,
                "path": f"/{cid}",
                "theme": "",
            }
            for cid, name, idn, tm in cats
        ]

    def _syllabus_page(self, course: Course) -> dict:
        """The General section's page module, keyed as the capture's ``mod_page`` entry.

        A page exports its content (``page_export_contents``), so its entry ends with
        ``contents`` (one ``index.html``, served through ``webservice/pluginfile.php``) and
        ``contentsinfo``; an assignment exports nothing and has neither key. A page has no
        completion tracking here, so it has no ``completiondata`` either.
        """
        cmid = course.syllabus_cmid
        contextid = 1_000_000 + cmid
        modified = course.timecreated
        return {
            "id": cmid,
            "url": f"{self.base_url}/mod/page/view.php?id={cmid}",
            "name": f"{course.shortname} Syllabus",
            "instance": course.syllabus_page_id,
            "contextid": contextid,
            "visible": 1,
            "uservisible": True,
            "visibleoncoursepage": 1,
            "modicon": f"{self.base_url}/theme/image.php/boost/page/1795611938/monologo?filtericon=1",
            "modname": "page",
            "purpose": "content",
            "branded": False,
            "modplural": "Pages",
            "availability": None,
            "indent": 0,
            "onclick": "",
            "afterlink": None,
            "customdata": '""',
            "noviewlink": False,
            "completion": 0,
            "downloadcontent": 1,
            "dates": [],
            "groupmode": 0,
            "contents": [
                {
                    "type": "file",
                    "filename": "index.html",
                    "filepath": "/",
                    "filesize": 0,
                    "fileurl": (
                        f"{self.base_url}/webservice/pluginfile.php/{contextid}"
                        "/mod_page/content/index.html?forcedownload=1"
                    ),
                    "timecreated": None,
                    "timemodified": modified,
                    "sortorder": 1,
                    "userid": None,
                    "author": None,
                    "license": None,
                }
            ],
            "contentsinfo": {
                "filescount": 1,
                "filessize": 0,
                "lastmodified": modified,
                "mimetypes": [],
                "repositorytype": "",
            },
        }

    def get_contents(self, args: dict) -> list:
        course = self.course_or_error(p_int(args, "courseid"))
        general = [self._syllabus_page(course)] if course.syllabus_cmid else []
        modules = []
        for a in course.assignments:
            modules.append(
                {
                    "id": a.cmid,
                    "url": f"{self.base_url}/mod/assign/view.php?id={a.cmid}",
                    "name": a.name,
                    "instance": a.id,
                    "contextid": 1_000_000 + a.cmid,
                    "visible": 1,
                    "uservisible": True,
                    "visibleoncoursepage": 1,
                    "modicon": f"{self.base_url}/theme/image.php/boost/assign/1795611938/monologo?filtericon=1",
                    "modname": "assign",
                    "purpose": "assessment",
                    "branded": False,
                    "modplural": "Assignments",
                    "availability": None,
                    "indent": 0,
                    "onclick": "",
                    "afterlink": None,
                    "customdata": f'{{"duedate":{a.duedate},"allowsubmissionsfromdate":"{a.allowfrom}"}}',
                    "noviewlink": False,
                    "completion": 1,
                    "completiondata": {
                        "state": 0,
                        "timecompleted": 0,
                        "overrideby": None,
                        "valueused": False,
                        "hascompletion": True,
                        "isautomatic": False,
                        "istrackeduser": False,
                        "uservisible": True,
                        "details": [],
                        "isoverallcomplete": False,
                    },
                    "downloadcontent": 1,
                    "dates": [
                        {"label": "Opened:", "timestamp": a.allowfrom, "dataid": "allowsubmissionsfromdate"},
                        {"label": "Due:", "timestamp": a.duedate, "dataid": "duedate"},
                    ],
                    "groupmode": 0,
                }
            )

        def section(number: int, name: str, mods: list) -> dict:  # the capture's key order
            return {
                "id": course.id * 10 + number,
                "name": name,
                "visible": 1,
                "summary": "",
                "summaryformat": 1,
                "section": number,
                "hiddenbynumsections": 0,
                "uservisible": True,
                "component": None,
                "itemid": None,
                "modules": mods,
            }

        return [section(0, "General", general), section(1, "Assessments", modules)]

    # ===== enrolments =======================================================================
    def _teacher_course_ids(self, user_id: int) -> list[int]:
        if self._teacher_courses is None or self._teacher_courses_version != len(self.college.courses):
            tc: dict[int, list[int]] = {}
            for c in self.college.courses.values():
                tc.setdefault(c.teacher_id, []).append(c.id)
            self._teacher_courses = tc
            self._teacher_courses_version = len(self.college.courses)
        return self._teacher_courses.get(user_id, [])

    def _user_course_ids(self, u: MUser) -> list[int]:
        if u.is_teacher:
            return self._teacher_course_ids(u.id)
        return [e.course_id for e in self.college.user_enrolments.get(u.id, ()) if not e.m_deleted]

    def _enrolled(self, course: Course) -> list[tuple[MUser, int, str]]:
        """(user, enrolment status 0/1, role shortname) of a course's live enrolments, by user id."""
        col = self.college
        out = []
        teacher = col.users.get(course.teacher_id)
        if teacher and not teacher.deleted:
            out.append((teacher, 0, "editingteacher"))
        for e in course.enrolments:
            if e.m_deleted:
                continue
            u = col.users.get(e.user_id)
            if u is not None and not u.deleted:
                out.append((u, e.m_status, "student"))
        out.sort(key=lambda t: t[0].id)
        return out

    _ENROL_OPTIONS = (
        "withcapability",
        "groupid",
        "onlyactive",
        "onlysuspended",
        "userfields",
        "limitfrom",
        "limitnumber",
        "sortby",
        "sortdirection",
    )

    def get_enrolled_users(self, args: dict) -> list:
        course_id = p_int(args, "courseid")
        opts: dict[str, str] = {}
        for o in p_list(args, "options"):
            if (
                not isinstance(o, dict)
                or o.get("name") not in self._ENROL_OPTIONS
                or not isinstance(o.get("value"), str)
            ):
                raise bad_param()
            opts[o["name"]] = o["value"]
        course = self.course_or_error(course_id)
        self.require_course_context(course.id)
        self.require("moodle/course:viewparticipants", "View participants")
        limitfrom = p_int(opts, "limitfrom", "0")
        limitnumber = p_int(opts, "limitnumber", "0")
        onlyactive = p_bool(opts, "onlyactive", False)
        onlysuspended = p_bool(opts, "onlysuspended", False)
        if onlysuspended:
            self.require("moodle/course:enrolreview", "Review course enrolments")
        sortby = opts.get("sortby", "id")
        direction = opts.get("sortdirection", "ASC").upper()
        if sortby not in ("id", "firstname", "lastname", "siteorder") or direction not in ("ASC", "DESC"):
            raise bad_param()
        rows = self._enrolled(course)
        # Enrolment state only, as Moodle's get_enrolled_join: a suspended *account* is the user's
        # state (user.suspended), not the enrolment's, and does not move a user between these lists.
        if onlyactive:
            rows = [r for r in rows if r[1] == 0]
        elif onlysuspended:
            rows = [r for r in rows if r[1] == 1]
        if sortby in ("firstname", "lastname"):
            rows.sort(key=lambda r: (getattr(r[0], sortby), r[0].id))
        if direction == "DESC":
            rows.reverse()
        rows = rows[limitfrom : limitfrom + limitnumber] if limitnumber > 0 else rows[limitfrom:]
        wanted = None
        if opts.get("userfields"):
            wanted = {f.strip() for f in opts["userfields"].split(",")} | {"id"}
        out = []
        for u, _status, role in rows:
            d = self.visible_user(self.user_desc(u))
            for k in ("auth", "suspended", "confirmed", "lang", "theme", "timezone", "mailformat", "trackforums"):
                d.pop(k, None)
            # 5.1 puts lastcourseaccess right after lastaccess
            ordered: dict[str, Any] = {}
            for k, v in d.items():
                ordered[k] = v
                if k == "lastaccess":
                    ordered["lastcourseaccess"] = max(0, u.lastaccess - 86_400) if u.lastaccess else 0
            ordered["roles"] = [
                {"roleid": 3 if role == "editingteacher" else 5, "name": "", "shortname": role, "sortorder": 0}
            ]
            ordered["enrolledcourses"] = [
                {
                    "id": cid,
                    "fullname": self.college.courses[cid].fullname,
                    "shortname": self.college.courses[cid].shortname,
                }
                for cid in self._user_course_ids(u)
            ]
            if wanted is not None:
                ordered = {k: v for k, v in ordered.items() if k in wanted}
            out.append(ordered)
        return out

    def _progress(self, course: Course, user_id: int) -> int:
        if not course.assignments:
            return 0
        done = sum(1 for a in course.assignments if user_id in a.grades)
        return round(100 * done / len(course.assignments))

    def _active_course_ids(self, u: MUser) -> list[int]:
        """The courses of a user's *active* enrolments, as enrol_get_all_users_courses($userid, true)
        lists them: a suspended enrolment is left out; a suspended account is not (Moodle filters the
        enrolment's status, not the user's)."""
        if u.is_teacher:
            return self._teacher_course_ids(u.id)
        return [e.course_id for e in self.college.user_enrolments.get(u.id, ()) if not e.m_deleted and e.m_status == 0]

    def get_users_courses(self, args: dict) -> list:
        """A user's courses as Moodle 5.1 answers them (enrol/externallib.php): active enrolments only,
        so a suspended enrolment's completion is not here (the crawl asks it one by one). A course the
        service user cannot enter, or whose participants it may not see, is left out silently;
        without report/completion:view (completion_can_view_data) the completion fields are null and
        false, as they are in a course that tracks no completion."""
        user_id = p_int(args, "userid")
        count = p_bool(args, "returnusercount", True)
        u = self.college.users.get(user_id)
        if u is None or u.deleted:
            return []
        if not (self.may("moodle/course:view") and self.may("moodle/course:viewparticipants")):
            return []
        sees_completion = self.may("report/completion:view")
        out = []
        for cid in self._active_course_ids(u):
            c = self.college.courses[cid]
            shown = c.completion_enabled and sees_completion
            tracked = shown and not u.is_teacher
            d: dict[str, Any] = {
                "id": c.id,
                "shortname": c.shortname,
                "fullname": c.fullname,
                "displayname": c.fullname,
            }
            if count:
                d["enrolledusercount"] = len(self._enrolled(c))
            d.update(
                {
                    "idnumber": c.idnumber,
                    "visible": 1,
                    "summary": f"Course for class {c.shortname}",
                    "summaryformat": 1,
                    "format": "topics",
                    "courseimage": f"{self.base_url}/pluginfile.php/{c.context_id}/course/generated/course.svg",
                    "showgrades": True,
                    "lang": "",
                    "enablecompletion": c.completion_enabled,
                    "completionhascriteria": shown,
                    "completionusertracked": tracked,
                    "category": c.categoryid,
                    "progress": self._progress(c, u.id) if tracked else None,
                    "completed": (c.id, u.id) in self.college.completions if shown else None,
                    "startdate": c.startdate,
                    "enddate": c.enddate,
                    "marker": 0,
                    "lastaccess": None,
                    "isfavourite": False,
                    "hidden": False,
                    "overviewfiles": [],
                    "showactivitydates": False,
                    "showcompletionconditions": True,
                    "timemodified": c.timemodified,
                }
            )
            out.append(d)
        return out

    # ===== grades ===========================================================================
    @staticmethod
    def _num(x: float) -> float | int:
        return int(x) if float(x).is_integer() else round(float(x), 5)

    def _grade_items_for(self, course: Course, u: MUser) -> list[dict]:
        """The user's gradebook in a course, as a real Moodle 5.1 site answers it: assignment items
        (a scale item with ``scaleid`` null, known by its range), manual items, and the course
        total, each grade the gradebook's final grade (an override wins: ``gradeisoverridden``)."""
        items = []
        total_raw = 0.0
        total_max = sum(a.grademax for a in course.assignments) + sum(m.grademax for m in course.manual_items)
        last_graded = None
        count = len(course.assignments) + len(course.manual_items)
        weight = 1 / count if count else 0

        def graded(d: dict, raw: float | None, when: int | None, low: int, high: int, words: bool) -> None:
            pct = (raw - low) / (high - low) * 100 if raw is not None else None
            if raw is None:
                d["status"] = "novalue"
            d.update(
                {
                    "graderaw": self._num(raw) if raw is not None else None,
                    "gradedatesubmitted": None,
                    "gradedategraded": when,
                    "gradehiddenbydate": False,
                    "gradeneedsupdate": False,
                    "gradeishidden": False,
                    "gradeislocked": False,
                    "gradeisoverridden": False,
                    "gradeformatted": ("-" if raw is None else BTEC_SCALE[int(raw) - 1] if words else f"{raw:.2f}"),
                    "grademin": low,
                    "grademax": high,
                    "rangeformatted": "Refer&ndash;Distinction" if words else f"{low}&ndash;{high}",
                    "percentageformatted": f"{pct:.2f} %" if pct is not None else "-",
                    "feedback": f"<p>Feedback for {u.firstname}</p>" if raw is not None else "",
                    "feedbackformat": 1 if raw is not None else 2,
                }
            )

        for a in course.assignments:
            g = a.grades.get(u.id)
            d: dict[str, Any] = {
                "id": a.item_id,
                "itemname": a.name,
                "itemtype": "mod",
                "itemmodule": "assign",
                "iteminstance": a.id,
                "itemnumber": 0,
                "idnumber": a.idnumber,
                "categoryid": course.id,
                "outcomeid": None,
                # A real site answers null here even for a scale item (Moodle fills the field
                # from the outcome id): only the range and the formatted grade tell a scale.
                "scaleid": None,
                "locked": False,
                "cmid": a.cmid,
                "weightraw": round(weight, 5),
                "weightformatted": f"{100 * weight:.2f} %",
            }
            graded(d, g.final if g else None, g.final_time if g else None, 1 if a.scale else 0, a.grademax, a.scale)
            if g:
                d["gradedatesubmitted"] = g.submitted
                d["gradeisoverridden"] = g.override is not None
                total_raw += g.final
                last_graded = max(last_graded or 0, g.final_time)
            items.append(d)
        for m in course.manual_items:
            mark = m.grades.get(u.id)
            d = {
                "id": m.item_id,
                "itemname": m.name,
                "itemtype": "manual",
                "itemmodule": None,
                "iteminstance": None,
                "itemnumber": 0,
                "idnumber": None,
                "categoryid": course.id,
                "outcomeid": None,
                "scaleid": None,
                "locked": False,
                "weightraw": round(weight, 5),
                "weightformatted": f"{100 * weight:.2f} %",
            }
            graded(d, mark[0] if mark else None, mark[1] if mark else None, 0, m.grademax, False)
            if mark:
                total_raw += mark[0]
                last_graded = max(last_graded or 0, mark[1])
            items.append(d)
        items.append(
            {
                "id": course.total_item_id,
                "itemname": None,
                "itemtype": "course",
                "itemmodule": None,
                "iteminstance": course.id,
                "itemnumber": None,
                "idnumber": None,
                "categoryid": None,
                "outcomeid": None,
                "scaleid": None,
                "locked": False,
                "graderaw": self._num(total_raw) if last_graded else None,
                "gradedatesubmitted": None,
                "gradedategraded": last_graded,
                "gradehiddenbydate": False,
                "gradeneedsupdate": False,
                "gradeishidden": False,
                "gradeislocked": False,
                "gradeisoverridden": False,
                "gradeformatted": f"{total_raw:.2f}" if last_graded else "-",
                "grademin": 0,
                "grademax": total_max,
                "rangeformatted": f"0&ndash;{total_max}",
                "percentageformatted": f"{100 * total_raw / total_max:.2f} %" if last_graded and total_max else "-",
                "feedback": "",
                "feedbackformat": 2,
            }
        )
        return items

    def _grade_users(self, course: Course, user_id: int) -> list[MUser]:
        students = [u for u, _s, role in self._enrolled(course) if role == "student"]
        if user_id == 0:
            return students
        match = [u for u in students if u.id == user_id]
        if not match:
            u = self.college.users.get(user_id)
            if u is None or u.deleted:
                raise MoodleError(ERR_RECORD_UNKNOWN)
        return match

    def get_grade_items(self, args: dict) -> dict:
        course = self.course_or_error(p_int(args, "courseid"))
        user_id = p_int(args, "userid", "0")
        self.require_course_context(course.id)
        self.require("gradereport/user:view", "View your own grade report")
        if user_id == 0:
            self.require("moodle/grade:viewall", "View grades of other users")
        p_int(args, "groupid", "0")
        usergrades = [
            {
                "courseid": course.id,
                "courseidnumber": course.idnumber,
                "userid": u.id,
                "userfullname": f"{u.firstname} {u.lastname}",
                "useridnumber": u.idnumber,
                "maxdepth": 2,
                "gradeitems": self._grade_items_for(course, u),
            }
            for u in self._grade_users(course, user_id)
        ]
        return {"usergrades": usergrades, "warnings": []}

    def get_grades_table(self, args: dict) -> dict:
        course = self.course_or_error(p_int(args, "courseid"))
        user_id = p_int(args, "userid", "0")
        p_int(args, "groupid", "0")
        tables = []
        for u in self._grade_users(course, user_id):
            items = self._grade_items_for(course, u)
            cat = f"cat_{course.id}_{u.id}"
            rows: list[dict] = [
                {
                    "itemname": {
                        "class": "level1 d1 b1b b1t category column-itemname",
                        "colspan": 8,
                        "content": f'<div class="d-flex category-content"><span>{course.fullname}</span></div>',
                        "id": cat,
                    },
                    "parentcategories": [],
                },
                {"leader": {"class": "level1 d1 b1t b2b b1l", "rowspan": len(items)}, "parentcategories": [course.id]},
            ]
            for it in items:
                course_row = it["itemtype"] == "course"
                cls = "level1 d1 baggt b2b" if course_row else "level2 item b1b"
                row_id = f"row_{it['id']}_{u.id}"

                # Bound now: the cells of this row use this row's class, category and user.
                def cell(
                    col: str, content: str, extra: str = "itemcenter ", cls=cls, cat=cat, row_id=row_id, u=u
                ) -> dict:
                    return {
                        "class": f"{cls} {extra} column-{col}",
                        "content": content,
                        "headers": f"{cat} {row_id} {col}{u.id}",
                    }

                name = it["itemname"] or "Course total"
                rows.append(
                    {
                        "itemname": {
                            "class": f"{cls} column-itemname",
                            "colspan": 1,
                            "content": f'<div class="item d-flex align-items-center">{name}</div>',
                            "id": row_id,
                        },
                        "weight": cell("weight", it.get("weightformatted", "-")),
                        "grade": cell("grade", it["gradeformatted"]),
                        "range": cell("range", it["rangeformatted"]),
                        "percentage": cell("percentage", it["percentageformatted"]),
                        "feedback": cell("feedback", it["feedback"] or "&nbsp;", "feedbacktext"),
                        "contributiontocoursetotal": cell("contributiontocoursetotal", "-"),
                        "parentcategories": [course.id],
                    }
                )
            tables.append(
                {
                    "courseid": course.id,
                    "userid": u.id,
                    "userfullname": f"{u.firstname} {u.lastname}",
                    "maxdepth": 2,
                    "tabledata": rows,
                }
            )
        return {"tables": tables, "warnings": []}

    # ===== completion =======================================================================
    def _require_enrolled(self, course: Course, user_id: int) -> MUser:
        if user_id == self.college.admin_id and not any(eu.id == user_id for eu, _s, _r in self._enrolled(course)):
            # Asked about the service user itself, a real 5.1 site answers `notenroled`
            # (core_completion_get_course_completion_status__service_user_not_enrolled).
            raise MoodleError(
                {
                    "exception": "core\\exception\\moodle_exception",
                    "errorcode": "notenroled",
                    "message": "You are not enrolled in this course",
                }
            )
        u = self.college.users.get(user_id)
        if u is None or u.deleted:
            raise MoodleError(ERR_RECORD_UNKNOWN)
        if not any(eu.id == user_id for eu, _s, _r in self._enrolled(course)):
            raise MoodleError(
                {
                    "exception": "moodle_exception",
                    "errorcode": "usernotenroled",
                    "message": "User is not enrolled in this course",
                }
            )
        return u

    def get_course_completion_status(self, args: dict) -> dict:
        course = self.course_or_error(p_int(args, "courseid"))
        self.require_course_context(course.id)
        if not self.may("report/completion:view"):
            raise MoodleError(
                {
                    "exception": "moodle_exception",
                    "errorcode": "cannotviewreport",
                    "message": "You cannot view this report",
                }
            )
        if not course.completion_enabled:
            raise MoodleError(
                {
                    "exception": "moodle_exception",
                    "errorcode": "completionnotenabled",
                    "message": "Completion is not enabled for this course",
                }
            )
        u = self._require_enrolled(course, p_int(args, "userid"))
        completions = []
        for a in course.assignments:
            g = a.grades.get(u.id)
            completions.append(
                {
                    "type": 4,
                    "title": "Activity completion",
                    "status": "Yes" if g else "No",
                    "complete": bool(g),
                    "timecompleted": g.timemodified if g else None,
                    "details": {
                        "type": "Activity completion",
                        "criteria": f'<a href="{self.base_url}/mod/assign/view.php?id={a.cmid}">{a.name}</a>',
                        "requirement": "Receive a grade",
                        "status": "",
                    },
                }
            )
        return {
            "completionstatus": {
                "completed": (course.id, u.id) in self.college.completions,
                "aggregation": 1,
                "completions": completions,
            },
            "warnings": [],
        }

    def get_activities_completion_status(self, args: dict) -> dict:
        course = self.course_or_error(p_int(args, "courseid"))
        u = self._require_enrolled(course, p_int(args, "userid"))
        statuses = []
        for a in course.assignments:
            g = a.grades.get(u.id)
            statuses.append(
                {
                    "cmid": a.cmid,
                    "modname": "assign",
                    "instance": a.id,
                    "state": 1 if g else 0,
                    "timecompleted": g.timemodified if g else 0,
                    "tracking": 1,
                    "overrideby": None,
                    "valueused": False,
                    "hascompletion": True,
                    "isautomatic": False,
                    "istrackeduser": True,
                    "uservisible": True,
                    "details": [],
                    "isoverallcomplete": bool(g),
                }
            )
        return {"statuses": statuses, "warnings": []}

    # ===== assignments ======================================================================
    _ASSIGN_CONFIGS = [
        {"plugin": p, "subtype": st, "name": n, "value": v}
        for p, st, n, v in (
            ("onlinetext", "assignsubmission", "enabled", "1"),
            ("onlinetext", "assignsubmission", "wordlimit", "0"),
            ("onlinetext", "assignsubmission", "wordlimitenabled", "0"),
            ("comments", "assignsubmission", "enabled", "0"),
            ("comments", "assignfeedback", "enabled", "1"),
            ("comments", "assignfeedback", "commentinline", "0"),
        )
    ]

    def assignment_desc(self, a) -> dict:  # noqa: ANN001
        return {
            "id": a.id,
            "cmid": a.cmid,
            "course": a.course_id,
            "name": a.name,
            "nosubmissions": 0,
            "submissiondrafts": 0,
            "sendnotifications": 0,
            "sendlatenotifications": 0,
            "sendstudentnotifications": 1,
            "duedate": a.duedate,
            "allowsubmissionsfromdate": a.allowfrom,
            # Moodle stores a scale-graded assignment's grade as minus the scale id.
            "grade": -BTEC_SCALE_ID if a.scale else a.grademax,
            "gradepenalty": 0,
            "timemodified": a.timemodified,
            "completionsubmit": 0,
            "cutoffdate": 0,
            "gradingduedate": 0,
            "teamsubmission": 0,
            "requireallteammemberssubmit": 0,
            "teamsubmissiongroupingid": 0,
            "blindmarking": 0,
            "hidegrader": 0,
            "revealidentities": 0,
            "attemptreopenmethod": "untilpass",
            "maxattempts": 1,
            "markingworkflow": 0,
            "markingallocation": 0,
            "markinganonymous": 0,
            "requiresubmissionstatement": 0,
            "preventsubmissionnotingroup": 0,
            "configs": self._ASSIGN_CONFIGS,
            "intro": f"{a.name}",
            "introformat": 1,
            "introfiles": [],
            "introattachments": [],
            "timelimit": 0,
            "submissionattachments": 0,
        }

    def get_assignments(self, args: dict) -> dict:
        ids = p_list(args, "courseids")
        p_list(args, "capabilities")
        include = p_bool(args, "includenotenrolledcourses", False)
        courses, warnings = [], []
        for raw in ids:
            if not isinstance(raw, str) or not _INT.match(raw):
                raise bad_param()
            cid = int(raw)
            course = self.college.courses.get(cid)
            # The web-service user (admin) is enrolled nowhere: without includenotenrolledcourses
            # Moodle skips every course with warning 2, exactly as in the reference capture.
            if course is None or not include:
                warnings.append(
                    {
                        "item": "course",
                        "itemid": cid,
                        "warningcode": "2",
                        "message": "User is not enrolled or does not have requested capability",
                    }
                )
                continue
            courses.append(
                {
                    "id": course.id,
                    "fullname": course.fullname,
                    "shortname": course.shortname,
                    "timemodified": course.timemodified,
                    "assignments": [self.assignment_desc(a) for a in course.assignments],
                }
            )
        return {"courses": courses, "warnings": warnings}

    def _assignments_arg(self, args: dict) -> list[int]:
        out = []
        for raw in p_list(args, "assignmentids", required=True):
            if not isinstance(raw, str) or not _INT.match(raw):
                raise bad_param()
            out.append(int(raw))
        return out

    def get_assign_grades(self, args: dict) -> dict:
        ids = self._assignments_arg(args)
        since = p_int(args, "since", "0")
        assignments, warnings = [], []
        allowed = self.may("mod/assign:view") and self.may("mod/assign:grade")
        for aid in ids:
            a = self.college.assignments.get(aid)
            if a is None or not allowed:
                # mod_assign_get_grades__without_assign_capabilities: no error, one warning each.
                warnings.append(
                    {
                        "item": "assignment",
                        "itemid": aid,
                        "warningcode": "1",
                        "message": "No access rights in module context",
                    }
                )
                continue
            grades = [g for g in a.grades.values() if g.timemodified >= since]
            grades.sort(key=lambda g: g.id)
            if not grades:
                warnings.append({"item": "assignment", "itemid": aid, "warningcode": "3", "message": "No grades found"})
                continue
            assignments.append(
                {
                    "assignmentid": aid,
                    "grades": [
                        {
                            "id": g.id,
                            "userid": g.user_id,
                            "attemptnumber": 0,
                            "timecreated": g.timecreated,
                            "timemodified": g.timemodified,
                            "grader": g.grader,
                            "grade": f"{g.raw:.5f}",
                        }
                        for g in grades
                    ],
                }
            )
        return {"assignments": assignments, "warnings": warnings}

    def get_submissions(self, args: dict) -> dict:
        ids = self._assignments_arg(args)
        status = args.get("status", "")
        since = p_int(args, "since", "0")
        before = p_int(args, "before", "0")
        assignments, warnings = [], []
        for aid in ids:
            a = self.college.assignments.get(aid)
            if a is None:
                warnings.append(
                    {
                        "item": "module",
                        "itemid": aid,
                        "warningcode": "1",
                        "message": "No access rights in module context",
                    }
                )
                continue
            subs = []
            for g in sorted(a.grades.values(), key=lambda g: g.id):
                if g.submitted < since or (before and g.submitted >= before):
                    continue
                if status and status != "submitted":
                    continue
                subs.append(
                    {
                        "id": g.id,
                        "userid": g.user_id,
                        "attemptnumber": 0,
                        "timecreated": g.submitted,
                        "timemodified": g.submitted,
                        "timestarted": None,
                        "status": "submitted",
                        "groupid": 0,
                        "plugins": [
                            {
                                "type": "onlinetext",
                                "name": "Online text",
                                "fileareas": [{"area": "submissions_onlinetext", "files": []}],
                                "editorfields": [
                                    {
                                        "name": "onlinetext",
                                        "description": "Online text submissions",
                                        "text": f"<p>Answer of user {g.user_id} for {a.name}</p>",
                                        "format": 1,
                                    }
                                ],
                            },
                            {"type": "comments", "name": "Submission comments"},
                        ],
                        "gradingstatus": "graded",
                    }
                )
            assignments.append({"assignmentid": aid, "submissions": subs})
        return {"assignments": assignments, "warnings": warnings}
