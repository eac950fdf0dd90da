"""Fake Moodle Web Services REST endpoint (``/webservice/rest/server.php``), Moodle 5.1 shapes.

Every answer mirrors the captured samples in the reference folder: same keys, same JSON
types, errors with HTTP 200 and the captured error bodies. Optional keys that Moodle leaves
out when empty (``idnumber``, ``institution``, ``city``, ``country``, ``customfields``) are
left out here too.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from . import phpparams
from .college import BTEC_SCALE, College, Course, MUser

ERR_INVALID_TOKEN = {"exception": "core\\exception\\moodle_exception", "errorcode": "invalidtoken",
                     "message": "Invalid token - token not found"}
ERR_INVALID_PARAMETER = {"exception": "core\\exception\\invalid_parameter_exception",
                         "errorcode": "invalidparameter", "message": "Invalid parameter value detected"}
ERR_ACCESS = {"exception": "webservice_access_exception", "errorcode": "accessexception",
              "message": "Access control exception"}
ERR_RECORD_UNKNOWN = {"exception": "dml_missing_record_exception", "errorcode": "invalidrecordunknown",
                      "message": "Can't find data record in database."}

MOODLE_RELEASE = "5.1+ (Build: 20251017)"
MOODLE_VERSION = "2025100600.02"
MOD_VERSION = "2025100600"

# Functions Moodle knows but the sandbox's web service does not expose: calling one gives
# accessexception (like the reference's core_user_create_users), not invalidrecordunknown.
KNOWN_NOT_IN_SERVICE = frozenset({
    "core_user_create_users", "core_user_update_users", "core_user_delete_users", "core_course_create_courses",
    "core_course_update_courses", "core_course_delete_courses", "enrol_manual_enrol_users",
    "enrol_manual_unenrol_users", "core_grades_update_grades", "mod_assign_save_grade", "core_group_get_groups",
    "core_webservice_get_site_info_full", "core_enrol_get_course_enrolment_methods", "core_message_send_instant_messages",
})


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

    def __init__(self, college: College, base_url: str, token: str):
        self.college = college
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.functions: dict[str, Callable[[dict], Any]] = {
            "core_webservice_get_site_info": self.get_site_info,
            "core_user_get_users": self.get_users,
            "core_user_get_users_by_field": self.get_users_by_field,
        }
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
        if not token or token != self._token:
            raise MoodleError(ERR_INVALID_TOKEN)
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

    # --- shared pieces ----------------------------------------------------------------------
    def _img(self, size: str) -> str:
        return f"{self.base_url}/theme/image.php/boost/core/1795611938/u/{size}"

    def user_desc(self, u: MUser, *, with_prefs: bool = False) -> dict:
        """The USER structure of ``user_get_user_details`` (5.1 key order; empty optionals left out)."""
        d: dict[str, Any] = {
            "id": u.id, "username": u.username, "firstname": u.firstname, "lastname": u.lastname,
            "fullname": f"{u.firstname} {u.lastname}", "email": u.email,
            "department": "Staff" if u.is_teacher else ("" if u.id == self.college.admin_id else "Students"),
        }
        if u.id != self.college.admin_id:
            d["institution"] = "Sandbox College"
        if u.idnumber:
            d["idnumber"] = u.idnumber
        d.update({
            "firstaccess": u.firstaccess, "lastaccess": u.lastaccess, "auth": "manual",
            "suspended": u.suspended, "confirmed": True, "lang": "en", "theme": "",
            "timezone": "99", "mailformat": 1, "trackforums": 0,
        })
        if u.city:
            d["city"] = u.city
            d["country"] = "GB"
        d["profileimageurlsmall"] = self._img("f2")
        d["profileimageurl"] = self._img("f1")
        if u.crmid:
            d["customfields"] = [{"type": "text", "value": u.crmid, "displayvalue": u.crmid,
                                  "name": "CRM ID", "shortname": "crmid"}]
        if with_prefs:
            d["preferences"] = [{"name": "auth_forcepasswordchange", "value": "0"},
                                {"name": "email_bounce_count", "value": "0"}]
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
            "sitename": "Sandbox College LMS", "username": "admin", "firstname": "Admin", "lastname": "User",
            "fullname": "Admin User", "lang": "en", "userid": self.college.admin_id, "siteurl": self.base_url,
            "userpictureurl": self._img("f1"),
            "functions": [{"name": n, "version": MOD_VERSION if n.startswith(("mod_", "gradereport_"))
                           else MOODLE_VERSION} for n in fn_names],
            "downloadfiles": 1, "uploadfiles": 0, "release": MOODLE_RELEASE, "version": MOODLE_VERSION,
            "mobilecssurl": "",
            "advancedfeatures": [{"name": n, "value": v} for n, v in (
                ("usecomments", 1), ("usetags", 1), ("enablenotes", 1), ("messaging", 1), ("enableblogs", 1),
                ("enablecompletion", 1), ("enablebadges", 1), ("messagingallusers", 0),
                ("enablecustomreports", 1), ("enableglobalsearch", 0), ("mnet_dispatcher_mode", 0),
                ("enablecompetencies", 1))],
            "usercanmanageownfiles": True, "userquota": 0, "usermaxuploadfilesize": -1, "userhomepage": 1,
            "userprivateaccesskey": "0123456789abcdef0123456789abcdef", "siteid": 1,
            "sitecalendartype": "gregorian", "usercalendartype": "gregorian", "userissiteadmin": True,
            "theme": "boost", "limitconcurrentlogins": 0, "policyagreed": 0,
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
                raise MoodleError({"exception": "moodle_exception", "errorcode": "keyalreadyset",
                                   "message": f"The key {key} can only be sent once"})
            seen.add(key)
            if key in self._LIKE_KEYS:
                # SQL LIKE, case-insensitive as Moodle's sql_like(..., false): % and _ are wildcards.
                rx = re.compile("^" + "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch)
                                              for ch in value) + "$", re.IGNORECASE | re.DOTALL)
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
                warnings.append({"item": key, "warningcode": "invalidfieldparameter",
                                 "message": f"The search key '{key}' is not supported, look at the web service "
                                            f"documentation"})
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
                u = self.college.users.get(int(v))
                if u and not u.deleted:
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
        return [self.user_desc(found[i]) for i in sorted(found)]


def btec_label(raw: float) -> str:
    return BTEC_SCALE[int(raw) - 1]
