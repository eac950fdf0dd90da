"""Fake Zoho CRM v8 (records, deleted records, metadata, upsert) and Zoho Accounts OAuth.

Write faults (``SandboxConfig.write_fault_rate``): an upsert is applied, then its answer is lost
(the connection drops), as when a network fails between Zoho committing and the client reading.

Answers follow Zoho's OpenAPI files (``zoho_oas/record.json``) and the behaviours in
API_NOTES B1–B5. Handlers return a :class:`ZohoResponse`; the server turns it into HTTP.
Secrets (client secret, refresh and access tokens) never appear in a message or a log.
"""

from __future__ import annotations

import bisect
import collections
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from .college import CRM_USERS, ZOHO_ORG_ID, College, parse_zoho_datetime, zoho_datetime
from .config import SandboxConfig
from .zoho_fields import FIELDS, MODULE_FIELDS, MODULE_LABELS, FieldValueError, new_record, record_name, render

MAX_FIELDS = 50
MAX_PER_PAGE = 200
DISCRETE_PAGE_LIMIT = 2000
MAX_UPSERT = 100
PAGE_TOKEN_TTL = 24 * 3600
SORTABLE = ("id", "Created_Time", "Modified_Time")


@dataclass
class ZohoResponse:
    status: int
    body: Any = None  # None = no body (204/304)
    headers: dict = field(default_factory=dict)
    raw: bytes | None = None  # a non-JSON body (Bulk Read zip)
    drop_answer: bool = False  # a write fault: applied, then the connection drops before the answer


def error(
    status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None
) -> ZohoResponse:
    """Zoho's error envelope ``{"code","details","message","status":"error"}``."""
    return ZohoResponse(
        status, {"code": code, "details": details or {}, "message": message, "status": "error"}, headers or {}
    )


INVALID_TOKEN = ("INVALID_TOKEN", "invalid oauth token")


# ----------------------------------------------------------------------------------------------
# OAuth (accounts server) and access-token checks
# ----------------------------------------------------------------------------------------------
@dataclass
class AccessToken:
    issued: float  # sandbox clock
    calls: int = 0


class ZohoAuth:
    """Refresh-token grant, access-token lifetime (seconds and/or calls) and the refresh throttle."""

    def __init__(self, college: College, config: SandboxConfig, api_domain: str):
        self.college = college
        self.config = config
        self.api_domain = api_domain
        self.tokens: dict[str, AccessToken] = {}
        self.refreshes: dict[str, collections.deque] = {}
        self.refresh_count = 0

    def refresh(self, params: dict[str, str]) -> ZohoResponse:
        cfg = self.config
        if params.get("grant_type") != "refresh_token":
            return ZohoResponse(200, {"error": "unsupported_grant_type"})
        if params.get("client_id") != cfg.zoho_client_id or params.get("client_secret") != cfg.zoho_client_secret:
            # Zoho answers a wrong client (or data centre) with HTTP 200 and no access_token.
            return ZohoResponse(200, {"error": "invalid_client"})
        refresh_token = params.get("refresh_token") or ""
        if refresh_token != cfg.zoho_refresh_token:
            return ZohoResponse(200, {"error": "invalid_code"})
        now = self.college.time()
        window = self.refreshes.setdefault(refresh_token, collections.deque())
        while window and window[0] <= now - cfg.refresh_window_seconds:
            window.popleft()
        if len(window) >= cfg.refresh_limit:
            return ZohoResponse(
                400,
                {
                    "error": "Access Denied",
                    "error_description": "You have made too many requests continuously. "
                    "Please try again after some time.",
                    "status": "failure",
                },
            )
        window.append(now)
        token = "1000." + secrets.token_hex(16) + "." + secrets.token_hex(16)
        self.tokens[token] = AccessToken(issued=now)
        self.refresh_count += 1
        return ZohoResponse(
            200,
            {
                "access_token": token,
                "scope": "ZohoCRM.modules.ALL ZohoCRM.settings.ALL "
                "ZohoCRM.users.READ ZohoCRM.org.READ ZohoCRM.bulk.read",
                "api_domain": self.api_domain,
                "token_type": "Bearer",
                "expires_in": cfg.token_ttl_seconds,
            },
        )

    def check(self, authorization: str | None) -> ZohoResponse | None:
        """None when the header carries a live token (and counts the call), else the 401 answer."""
        if not authorization:
            return error(401, "AUTHENTICATION_FAILURE", "Authentication failed")
        scheme, _, token = authorization.partition(" ")
        if scheme != "Zoho-oauthtoken" or not token:
            return error(401, "INVALID_TOKEN", "invalid oauth token")
        info = self.tokens.get(token.strip())
        if info is None:
            return error(401, *INVALID_TOKEN)
        cfg = self.config
        if self.college.time() - info.issued >= cfg.token_ttl_seconds:
            return error(401, *INVALID_TOKEN)
        if cfg.token_ttl_calls is not None and info.calls >= cfg.token_ttl_calls:
            return error(401, *INVALID_TOKEN)
        info.calls += 1
        return None

    def revoke_all(self) -> None:
        self.tokens.clear()


class Credits:
    """Rolling 24-hour API credit accounting on the sandbox clock."""

    def __init__(self, college: College, limit: int):
        self.college = college
        self.limit = limit
        self.spent: collections.deque = collections.deque()  # (time, credits)
        self.total = 0

    def charge(self, credits: int) -> bool:
        now = self.college.time()
        while self.spent and self.spent[0][0] <= now - 86_400:
            self.total -= self.spent.popleft()[1]
        if self.total + credits > self.limit:
            return False
        self.spent.append((now, credits))
        self.total += credits
        return True

    def remaining(self) -> int:
        return max(0, self.limit - self.total)


# ----------------------------------------------------------------------------------------------
# The CRM API
# ----------------------------------------------------------------------------------------------
@dataclass
class Cursor:
    """What a page_token stands for: where the next page starts in one ordered, filtered listing."""

    module: str
    sort_by: str
    descending: bool
    ims: int | None
    last_key: Any
    page: int
    expires: float


class ZohoService:
    def __init__(self, college: College, config: SandboxConfig):
        self.college = college
        self.config = config
        self.cursors: dict[str, Cursor] = {}
        self._dup_indexes: dict[tuple[str, str], dict] = {}
        self._dup_version = -1
        self._write_fault_rng = random.Random(config.seed * 7_919 + 3)
        self.lost_answers = 0  # upserts applied whose answer a write fault dropped

    # --- helpers ------------------------------------------------------------------------------
    def module_or_error(self, name: str) -> ZohoResponse | None:
        if name not in MODULE_FIELDS:
            return error(400, "INVALID_MODULE", "The module name given seems to be invalid", {"resource_path_index": 0})
        return None

    @staticmethod
    def _int_param(params: dict, name: str, default: int) -> int | None:
        v = params.get(name)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            return None

    def _parse_ims(self, headers: dict) -> tuple[int | None, ZohoResponse | None]:
        raw = headers.get("if-modified-since")
        if not raw:
            return None, None
        try:
            return parse_zoho_datetime(raw), None
        except (ValueError, TypeError):
            return None, error(400, "INVALID_DATA", "invalid data", {"param_name": "If-Modified-Since"})

    # --- GET /crm/v8/{module} -----------------------------------------------------------------
    def list_records(self, module: str, params: dict[str, str], headers: dict) -> ZohoResponse:
        bad = self.module_or_error(module)
        if bad:
            return bad
        specs = FIELDS[module]
        raw_fields = params.get("fields")
        if not raw_fields:
            return error(
                400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param_name": "fields"}
            )
        field_names = [f.strip() for f in raw_fields.split(",") if f.strip()]
        if len(field_names) > MAX_FIELDS:
            return error(
                400, "LIMIT_EXCEEDED", "Max field limit exceeded", {"param_name": "fields", "limit": MAX_FIELDS}
            )
        for f in field_names:
            if f not in specs:
                return error(400, "INVALID_DATA", "invalid data", {"api_name": f, "param_name": "fields"})
        field_names = [f for f in dict.fromkeys(field_names) if f != "id"]
        per_page = self._int_param(params, "per_page", MAX_PER_PAGE)
        if per_page is None or per_page < 1:
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "per_page"})
        if per_page > MAX_PER_PAGE:
            return error(
                400, "LIMIT_EXCEEDED", "Record count exceeded", {"param_name": "per_page", "limit": MAX_PER_PAGE}
            )
        sort_by = params.get("sort_by") or "id"
        sort_order = params.get("sort_order") or "desc"
        if sort_by not in SORTABLE:
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "sort_by"})
        if sort_order not in ("asc", "desc"):
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "sort_order"})
        ims, bad = self._parse_ims(headers)
        if bad:
            return bad
        mod = self.college.zoho[module]

        # ids=...: exactly those records (live ones), no paging.
        if params.get("ids"):
            try:
                ids = [int(x) for x in params["ids"].split(",") if x.strip()]
            except ValueError:
                return error(400, "INVALID_DATA", "invalid data", {"param_name": "ids"})
            if len(ids) > 100:
                return error(400, "LIMIT_EXCEEDED", "Record count exceeded", {"param_name": "ids", "limit": 100})
            recs = [mod.records[i] for i in ids if i in mod.records and mod.records[i].deleted is None]
            if ims is not None:
                recs = [r for r in recs if r.modified >= ims]
            if not recs:
                return ZohoResponse(304 if ims is not None else 204)
            data = [render(self.college, module, r, field_names) for r in recs]
            return ZohoResponse(
                200,
                {
                    "data": data,
                    "info": {
                        "per_page": len(data),
                        "count": len(data),
                        "page": 1,
                        "sort_by": sort_by,
                        "sort_order": sort_order,
                        "more_records": False,
                        "call": False,
                        "email": False,
                    },
                },
            )

        token = params.get("page_token")
        if token:
            if params.get("page"):
                return error(
                    400,
                    "INVALID_DATA",
                    "invalid data",
                    {"param_name": "page", "reason": "page and page_token cannot be used together"},
                )
            cur = self.cursors.get(token)
            if cur is None or cur.module != module or cur.expires < self.college.time():
                return error(400, "INVALID_DATA", "invalid data", {"param_name": "page_token"})
            sort_by, descending, ims, page = cur.sort_by, cur.descending, cur.ims, cur.page + 1
            seq, start = self._ordered(module, sort_by, descending, ims, after=cur.last_key)
            offset_limit = None
        else:
            page = self._int_param(params, "page", 1)
            if page is None or page < 1:
                return error(400, "INVALID_DATA", "invalid data", {"param_name": "page"})
            descending = sort_order == "desc"
            if (page - 1) * per_page >= DISCRETE_PAGE_LIMIT:
                return ZohoResponse(
                    400,
                    {
                        "code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                        "details": {"limit": DISCRETE_PAGE_LIMIT},
                        "message": "You can only get the first 2000 records without using page_token param",
                        "status": "error",
                    },
                )
            seq, start = self._ordered(module, sort_by, descending, ims)
            start += (page - 1) * per_page
            offset_limit = DISCRETE_PAGE_LIMIT - (page - 1) * per_page

        total_len = len(seq)
        if total_len == 0 or (not token and start - (page - 1) * per_page >= total_len):
            # Nothing in the listing at all: 304 for a conditional request, else 204.
            return ZohoResponse(304 if ims is not None else 204)
        take = per_page if offset_limit is None else min(per_page, offset_limit)
        recs = self._slice(seq, start, take, descending)
        if not recs:
            return ZohoResponse(204)
        more = start + len(recs) < total_len
        data = [render(self.college, module, r, field_names) for r in recs]
        info: dict[str, Any] = {
            "per_page": per_page,
            "count": len(data),
            "page": page,
            "sort_by": sort_by,
            "sort_order": "desc" if descending else "asc",
            "more_records": more,
            "call": False,
            "email": False,
        }
        if more:
            key_fn = _SORT_KEY[sort_by]
            tok = secrets.token_hex(20)
            expires = self.college.time() + PAGE_TOKEN_TTL
            self.cursors[tok] = Cursor(module, sort_by, descending, ims, key_fn(recs[-1]), page, expires)
            info["next_page_token"] = tok
            info["page_token_expiry"] = zoho_datetime(int(expires))
        return ZohoResponse(200, {"data": data, "info": info})

    def _ordered(
        self, module: str, sort_by: str, descending: bool, ims: int | None, after: Any = None
    ) -> tuple[list, int]:
        """The listing as (sorted sequence, start offset) such that walking it costs O(page).

        For ascending order the sequence is the index itself and ``start`` skips what is
        filtered out; for descending order the sequence is read from the end (see ``_slice``).
        If-Modified-Since with a sort other than Modified_Time needs a filtered copy (O(module)).
        """
        mod = self.college.zoho[module]
        index = mod.index(sort_by)
        key_fn = _SORT_KEY[sort_by]
        if ims is not None and sort_by != "Modified_Time":
            index = [r for r in index if r.modified >= ims]
        lo = 0
        if ims is not None and sort_by == "Modified_Time":
            lo = bisect.bisect_left(index, (ims, 0), key=key_fn)
        if not descending:
            start = lo
            if after is not None:
                start = max(lo, bisect.bisect_right(index, after, key=key_fn))
            return _Window(index, lo, len(index)), start - lo
        hi = len(index)
        if after is not None:
            hi = bisect.bisect_left(index, after, key=key_fn)
        return _Window(index, lo, hi), 0

    @staticmethod
    def _slice(seq: _Window, start: int, take: int, descending: bool) -> list:
        if not descending:
            return seq.asc(start, take)
        return seq.desc(start, take)

    # --- GET /crm/v8/{module}/{id} -------------------------------------------------------------
    def get_record(self, module: str, record_id: str, params: dict[str, str]) -> ZohoResponse:
        bad = self.module_or_error(module)
        if bad:
            return bad
        try:
            rec = self.college.zoho[module].records.get(int(record_id))
        except ValueError:
            rec = None
        if rec is None or rec.deleted is not None:
            return ZohoResponse(204)
        specs = FIELDS[module]
        names = [f.strip() for f in (params.get("fields") or "").split(",") if f.strip()] or list(specs)
        if any(n not in specs for n in names):
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "fields"})
        return ZohoResponse(200, {"data": [render(self.college, module, rec, [n for n in names if n != "id"])]})

    # --- GET /crm/v8/{module}/deleted ----------------------------------------------------------
    def record_count(self, module: str, params: dict[str, str]) -> ZohoResponse:
        """``GET /crm/v8/{module}/actions/count`` (OAS ``record.json`` "Record Count"): the live
        records, as ``{"count": "<n>"}`` (the OAS types it as a string). ``criteria``, ``cvid``,
        ``email``, ``phone`` and ``word`` are not emulated and answer INVALID_DATA."""
        bad = self.module_or_error(module)
        if bad:
            return bad
        unsupported = next((p for p in ("criteria", "cvid", "email", "phone", "word") if params.get(p)), None)
        if unsupported:
            return error(400, "INVALID_DATA", "invalid data", {"param_name": unsupported})
        return ZohoResponse(200, {"count": str(len(self.college.zoho[module].index("id")))})

    def deleted_records(self, module: str, params: dict[str, str], headers: dict) -> ZohoResponse:
        bad = self.module_or_error(module)
        if bad:
            return bad
        kind = params.get("type") or "all"
        if kind not in ("all", "recycle", "permanent"):
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "type"})
        per_page = self._int_param(params, "per_page", MAX_PER_PAGE)
        page = self._int_param(params, "page", 1)
        if per_page is None or not 1 <= per_page <= MAX_PER_PAGE or page is None or page < 1:
            return error(
                400,
                "INVALID_DATA",
                "invalid data",
                {"param_name": "per_page" if per_page is None or not 1 <= per_page <= MAX_PER_PAGE else "page"},
            )
        ims, bad = self._parse_ims(headers)
        if bad:
            return bad
        recs = self.college.zoho[module].deleted_records()
        if ims is not None:
            recs = recs[bisect.bisect_left(recs, ims, key=lambda r: r.deleted) :]
        if kind != "all":
            recs = [r for r in recs if r.deleted_type == kind]
        if not recs:
            return ZohoResponse(304 if ims is not None else 204)
        start = (page - 1) * per_page
        chunk = recs[start : start + per_page]
        if not chunk:
            return ZohoResponse(204)
        deleter = CRM_USERS[0]
        data = []
        for r in chunk:
            item: dict[str, Any] = {"deleted_by": {"name": deleter[1], "id": str(deleter[0])}, "id": str(r.zid)}
            if r.deleted_type == "recycle":
                item["display_name"] = record_name(module, self.college, r)
                item["created_by"] = {"name": CRM_USERS[r.owner][1], "id": str(CRM_USERS[r.owner][0])}
            item["type"] = r.deleted_type
            item["deleted_time"] = zoho_datetime(r.deleted)
            data.append(item)
        return ZohoResponse(
            200,
            {
                "data": data,
                "info": {
                    "per_page": per_page,
                    "count": len(data),
                    "page": page,
                    "more_records": start + len(chunk) < len(recs),
                },
            },
        )

    # --- metadata ------------------------------------------------------------------------------
    def settings_modules(self) -> ZohoResponse:
        mods = []
        for n, name in enumerate(MODULE_FIELDS):
            singular, plural = MODULE_LABELS[name]
            mods.append(
                {
                    "id": str(5843104000000002000 + n),
                    "api_name": name,
                    "module_name": name,
                    "singular_label": singular,
                    "plural_label": plural,
                    "api_supported": True,
                    "generated_type": "custom",
                    "creatable": True,
                    "editable": True,
                    "deletable": True,
                    "viewable": True,
                    "status": "visible",
                    "modified_time": zoho_datetime(self.college.now),
                }
            )
        return ZohoResponse(200, {"modules": mods})

    def settings_fields(self, params: dict[str, str]) -> ZohoResponse:
        module = params.get("module")
        if not module:
            return error(
                400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param_name": "module"}
            )
        bad = self.module_or_error(module)
        if bad:
            return bad
        out = []
        json_types = {
            "bigint": "string",
            "text": "string",
            "email": "string",
            "phone": "string",
            "integer": "integer",
            "currency": "double",
            "date": "string",
            "datetime": "string",
            "lookup": "jsonobject",
            "ownerlookup": "jsonobject",
            "picklist": "string",
        }
        for n, (name, spec) in enumerate(FIELDS[module].items()):
            f: dict[str, Any] = {
                "id": str(5843104000000003000 + n),
                "api_name": name,
                "field_label": spec.label,
                "display_label": spec.label,
                "data_type": spec.data_type,
                "json_type": json_types[spec.data_type],
                "system_mandatory": spec.mandatory,
                "read_only": spec.set is None,
                "custom_field": name
                not in ("id", "Owner", "Created_Time", "Modified_Time", "Created_By", "Modified_By"),
                "unique": {"casesensitive": False} if spec.unique else {},
            }
            if spec.data_type == "lookup":
                f["lookup"] = {
                    "module": {
                        "api_name": spec.lookup,
                        "id": str(5843104000000002000 + list(MODULE_FIELDS).index(spec.lookup)),
                    },
                    "display_label": spec.label,
                }
            if spec.picklist:
                f["pick_list_values"] = [{"display_value": v, "actual_value": v} for v in spec.picklist]
            out.append(f)
        return ZohoResponse(200, {"fields": out})

    def users(self, params: dict[str, str]) -> ZohoResponse:
        kind = params.get("type") or "AllUsers"
        users = CRM_USERS[:1] if kind == "CurrentUser" else CRM_USERS
        data = [
            {
                "id": str(zid),
                "full_name": name,
                "email": email,
                "status": "active",
                "role": {"name": "CEO" if n == 0 else "Manager", "id": str(5843104000000001000 + n)},
                "profile": {"name": "Administrator", "id": "5843104000000001100"},
                "time_zone": "Europe/London",
                "locale": "en_GB",
            }
            for n, (zid, name, email) in enumerate(users)
        ]
        return ZohoResponse(
            200, {"users": data, "info": {"per_page": 200, "count": len(data), "page": 1, "more_records": False}}
        )

    def org(self) -> ZohoResponse:
        cfg = self.config
        return ZohoResponse(
            200,
            {
                "org": [
                    {
                        "id": ZOHO_ORG_ID,
                        "company_name": "Sandbox College",
                        "domain_name": "sandbox-college",
                        "primary_email": CRM_USERS[0][2],
                        "currency": "Pound Sterling",
                        "currency_symbol": "£",
                        "iso_code": "GBP",
                        "time_zone": "Europe/London",
                        "country_code": "GB",
                        "mc_status": True,
                        "license_details": {
                            "paid": cfg.zoho_edition != "free",
                            "paid_type": cfg.zoho_edition,
                            "users_license_purchased": cfg.zoho_user_licenses,
                            "trial_type": None,
                            "trial_expiry": None,
                            "paid_expiry": "2027-08-01T00:00:00+00:00",
                        },
                        "edition": cfg.zoho_edition.upper(),
                    }
                ]
            },
        )

    # --- POST /crm/v8/{module}/upsert ----------------------------------------------------------
    def upsert(self, module: str, body: Any) -> ZohoResponse:
        bad = self.module_or_error(module)
        if bad:
            return bad
        if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "data"})
        records = body["data"]
        if len(records) > MAX_UPSERT:
            return error(400, "LIMIT_EXCEEDED", "Record count exceeded", {"limit": MAX_UPSERT})
        specs = FIELDS[module]
        dup_fields = body.get("duplicate_check_fields")
        if dup_fields is None:
            dup_fields = [f.api_name for f in MODULE_FIELDS[module] if f.unique]
        if not isinstance(dup_fields, list) or any(f not in specs for f in dup_fields):
            return error(400, "INVALID_DATA", "invalid data", {"param_name": "duplicate_check_fields"})
        col = self.college
        mod = col.zoho[module]
        results = []
        for i, item in enumerate(records):
            results.append(self._upsert_one(module, mod, specs, dup_fields, i, item))
        # Zoho answers a batch write with 207 Multi-Status and one status per record.
        response = ZohoResponse(207, {"data": results})
        if self.config.write_fault_rate > 0 and self._write_fault_rng.random() < self.config.write_fault_rate:
            # A write fault: the batch is applied, but its answer never reaches the client.
            response.drop_answer = True
            self.lost_answers += 1
        return response

    def _upsert_one(self, module: str, mod: Any, specs: dict, dup_fields: list, i: int, item: Any) -> dict:
        col = self.college
        if not isinstance(item, dict):
            return self._item_error("INVALID_DATA", "invalid data", {"json_path": f"$.data[{i}]"})
        for name in item:
            spec = specs.get(name)
            if spec is None:
                return self._item_error(
                    "INVALID_DATA", "invalid data", {"api_name": name, "json_path": f"$.data[{i}].{name}"}
                )
            if spec.set is None and name != "id":
                return self._item_error(
                    "INVALID_DATA",
                    "invalid data",
                    {"api_name": name, "json_path": f"$.data[{i}].{name}", "reason": "read-only field"},
                )
        # Find the existing record: by id if given, else by the duplicate-check fields in order.
        existing = None
        dup_used = None
        if "id" in item:
            try:
                existing = mod.records.get(int(item["id"]))
            except (TypeError, ValueError):
                existing = None
            if existing is None or existing.deleted is not None:
                return self._item_error(
                    "INVALID_DATA",
                    "the id given seems to be invalid",
                    {"api_name": "id", "json_path": f"$.data[{i}].id"},
                )
        else:
            for f in dup_fields:
                if f not in item:
                    continue
                existing = self._find_duplicate(module, mod, specs[f], item[f])
                if existing is not None:
                    dup_used = f
                    break
        now = col.clock()
        before = (
            {
                api: self._record_dup_value(FIELDS[module][api], existing)
                for (m, api) in self._dup_indexes
                if m == module
            }
            if existing is not None
            else {}
        )
        target = existing if existing is not None else new_record(col, module, 0, now)
        # Validate on a scratch copy so a bad value leaves the record untouched.
        scratch = _copy_record(target)
        try:
            for name, value in item.items():
                if name != "id":
                    specs[name].set(col, scratch, value)
        except FieldValueError as exc:
            return self._item_error(
                "INVALID_DATA",
                "invalid data",
                {
                    "api_name": exc.api_name,
                    "json_path": f"$.data[{i}].{exc.api_name}",
                    "expected_data_type": exc.expected,
                },
            )
        if existing is None:
            for f in MODULE_FIELDS[module]:
                if f.mandatory and f.api_name not in item:
                    return self._item_error(
                        "MANDATORY_NOT_FOUND",
                        "required field not found",
                        {"api_name": f.api_name, "json_path": f"$.data[{i}].{f.api_name}"},
                    )
            scratch.zid = col.new_zid()
            scratch.created = scratch.modified = now
            mod.add(scratch)
            if module == "Students":
                col.students_by_zid[scratch.zid] = scratch
            rec, action, message = scratch, "insert", "record added"
        else:
            for name in item:
                if name != "id":
                    specs[name].set(col, existing, item[name])
            mod.touch(existing, now)
            rec, action, message = existing, "update", "record updated"
        self._reindex_after_write(module, rec, before)
        owner = {"name": CRM_USERS[0][1], "id": str(CRM_USERS[0][0])}
        out = {
            "code": "SUCCESS",
            "duplicate_field": dup_used,
            "action": action,
            "details": {
                "Modified_Time": zoho_datetime(rec.modified),
                "Modified_By": owner,
                "Created_Time": zoho_datetime(rec.created),
                "id": str(rec.zid),
                "Created_By": owner,
            },
            "message": message,
            "status": "success",
        }
        if dup_used is None:
            del out["duplicate_field"]
        return out

    def _dup_key(self, spec: Any, value: Any) -> Any:
        """Normalised comparison key of a duplicate-check value (case/whitespace-insensitive text)."""
        from .zoho_fields import lookup_id

        if spec.data_type == "lookup":
            return lookup_id(value)
        return value.strip().lower() if isinstance(value, str) else value

    def _dup_index(self, module: str, mod: Any, spec: Any) -> dict:
        """value -> live record for one duplicate-check field, built once and kept up to date."""
        col = self.college
        if self._dup_version != col.zoho_version:
            self._dup_indexes.clear()
            self._dup_version = col.zoho_version
        key = (module, spec.api_name)
        idx = self._dup_indexes.get(key)
        if idx is None:
            idx = {}
            for r in mod.records.values():
                if r.deleted is None:
                    idx.setdefault(self._record_dup_value(spec, r), r)
            self._dup_indexes[key] = idx
        return idx

    def _record_dup_value(self, spec: Any, rec: Any) -> Any:
        v = spec.get(self.college, rec)
        if spec.data_type == "lookup":
            return int(v["id"]) if v else None
        return v.strip().lower() if isinstance(v, str) else v

    def _find_duplicate(self, module: str, mod: Any, spec: Any, value: Any) -> Any:
        return self._dup_index(module, mod, spec).get(self._dup_key(spec, value))

    def _reindex_after_write(self, module: str, rec: Any, before: dict) -> None:
        """Keep the duplicate-check indexes right after one upserted record changed."""
        for (m, api), idx in self._dup_indexes.items():
            if m != module:
                continue
            spec = FIELDS[module][api]
            old = before.get(api)
            if old is not None and idx.get(old) is rec:
                del idx[old]
            idx.setdefault(self._record_dup_value(spec, rec), rec)

    @staticmethod
    def _item_error(code: str, message: str, details: dict) -> dict:
        return {"code": code, "details": details, "message": message, "status": "error"}


def _copy_record(rec: Any) -> Any:
    cls = type(rec)
    new = cls.__new__(cls)
    for name in cls.__slots__:
        setattr(new, name, getattr(rec, name))
    return new


class _Window:
    """A read-only view ``index[lo:hi]`` that slices from either end without copying it."""

    __slots__ = ("index", "lo", "hi")

    def __init__(self, index: list, lo: int, hi: int):
        self.index, self.lo, self.hi = index, lo, hi

    def __len__(self) -> int:
        return max(0, self.hi - self.lo)

    def asc(self, start: int, take: int) -> list:
        a = self.lo + start
        return self.index[a : min(a + take, self.hi)]

    def desc(self, start: int, take: int) -> list:
        b = self.hi - start
        a = max(self.lo, b - take)
        return self.index[a:b][::-1]


def _key_id(r: Any) -> Any:
    return r.zid


_SORT_KEY = {
    "id": _key_id,
    "Modified_Time": lambda r: (r.modified, r.zid),
    "Created_Time": lambda r: (r.created, r.zid),
}
