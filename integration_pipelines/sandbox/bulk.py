"""Zoho Bulk Read (``/crm/bulk/v8/read``): create a job, poll its state, download a zipped CSV.

A job moves one state per poll: ADDED -> QUEUED -> IN PROGRESS -> COMPLETED, so a client's
polling loop is exercised without waiting on the wall clock. The records are read when the
job completes; one result page holds ``bulk_read_page_size`` records (200,000 by default),
``query.page`` picks the page.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

from .college import CRM_USERS, College, parse_zoho_datetime, zoho_datetime
from .config import SandboxConfig
from .zoho import ZohoResponse, error
from .zoho_fields import FIELDS, MODULE_FIELDS

STATES = ("ADDED", "QUEUED", "IN PROGRESS", "COMPLETED")
COMPARATORS = (
    "equal",
    "not_equal",
    "in",
    "not_in",
    "greater_than",
    "greater_equal",
    "less_than",
    "less_equal",
    "between",
    "not_between",
    "starts_with",
    "ends_with",
    "contains",
    "not_contains",
)
DOWNLOADS_PER_MINUTE = 10


@dataclass
class Job:
    id: str
    module: str
    fields: list[str]
    criteria: dict | None
    page: int
    created: int
    polls: int = 0
    result: dict | None = None
    zip_bytes: bytes | None = None
    query_echo: dict = field(default_factory=dict)

    @property
    def state(self) -> str:
        return STATES[min(self.polls, len(STATES) - 1)]


def _job_not_found() -> ZohoResponse:
    return error(404, "RESOURCE_NOT_FOUND", "the requested resource was not found", {"resource": "job_id"})


class BulkRead:
    """The Bulk Read jobs of one sandbox, over its college (read under the app's lock)."""

    def __init__(self, college: College, config: SandboxConfig):
        self.college = college
        self.config = config
        self.jobs: dict[str, Job] = {}
        self.downloads: list[float] = []

    def route(self, method: str, rest: list[str], body: bytes) -> ZohoResponse:
        if method == "POST" and not rest:
            return self.create(body)
        if method == "GET" and len(rest) == 1:
            return self.status(rest[0])
        if method == "GET" and len(rest) == 2 and rest[1] == "result":
            return self.download(rest[0])
        return error(404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")

    @staticmethod
    def _bad(code: str, message: str, details: dict | None = None, status: int = 400) -> ZohoResponse:
        return ZohoResponse(
            status,
            {"data": [{"status": "error", "code": code, "message": message, "details": details or {}}]}
            if status == 400
            else {"status": "error", "code": code, "message": message, "details": details or {}},
        )

    def create(self, body: bytes) -> ZohoResponse:
        try:
            req = json.loads(body or b"null")
        except ValueError:
            return self._bad("REQUEST_BODY_NOT_READABLE", "the request body is not readable")
        if not isinstance(req, dict) or not isinstance(req.get("query"), dict):
            return self._bad("REQUEST_BODY_IS_EMPTY", "query is missing")
        q = req["query"]
        module = (q.get("module") or {}).get("api_name") if isinstance(q.get("module"), dict) else q.get("module")
        if module not in MODULE_FIELDS:
            return self._bad("MODULE_NOT_AVAILABLE", "the module is not available", {"api_name": "module"})
        specs = FIELDS[module]
        fields = q.get("fields") or [n for n in specs if n != "id"]
        if not isinstance(fields, list) or any(f not in specs for f in fields):
            bad = next((f for f in (fields if isinstance(fields, list) else []) if f not in specs), "fields")
            return self._bad("FIELD_NOT_AVAILABLE", "the field is not available", {"api_name": bad, "module": module})
        page = q.get("page") or 1
        if not isinstance(page, int) or page < 1:
            return self._bad("INVALID_REQUEST", "page is invalid", {"api_name": "page"})
        criteria = q.get("criteria")
        if criteria is not None and not self._valid_criteria(criteria, specs):
            return self._bad("INVALID_CRITERIA", "the criteria is invalid")
        col = self.college
        job = Job(str(col.new_zid()), module, [f for f in fields if f != "id"], criteria, page, col.clock())
        job.query_echo = {
            "module": {"api_name": module, "id": str(5843104000000002000 + list(MODULE_FIELDS).index(module))},
            "fields": fields,
            "page": page,
            **({"criteria": criteria} if criteria else {}),
        }
        self.jobs[job.id] = job
        user = {"id": str(CRM_USERS[0][0]), "name": CRM_USERS[0][1]}
        return ZohoResponse(
            201,
            {
                "data": [
                    {
                        "status": "success",
                        "code": "ADDED_SUCCESSFULLY",
                        "message": "Added successfully.",
                        "details": {
                            "id": job.id,
                            "operation": "read",
                            "state": "ADDED",
                            "created_by": user,
                            "created_time": zoho_datetime(job.created),
                        },
                    }
                ],
                "info": {},
            },
        )

    def _valid_criteria(self, c: Any, specs: dict) -> bool:
        if not isinstance(c, dict):
            return False
        if "group" in c:
            return (
                c.get("group_operator") in ("and", "or")
                and isinstance(c["group"], list)
                and all(self._valid_criteria(g, specs) for g in c["group"])
            )
        return c.get("api_name") in specs and c.get("comparator") in COMPARATORS and "value" in c

    def status(self, job_id: str) -> ZohoResponse:
        job = self.jobs.get(job_id)
        if job is None:
            return _job_not_found()
        if job.state != "COMPLETED":
            job.polls += 1
        if job.state == "COMPLETED" and job.result is None:
            self._run(job)
        user = {"id": str(CRM_USERS[0][0]), "name": CRM_USERS[0][1]}
        detail: dict[str, Any] = {
            "id": job.id,
            "operation": "read",
            "state": job.state,
            "query": job.query_echo,
            "created_by": user,
            "created_time": zoho_datetime(job.created),
            "file_type": "csv",
        }
        if job.result is not None:
            detail["result"] = job.result
        return ZohoResponse(200, {"data": [detail]})

    def _matches(self, job: Job, rec: Any, c: dict) -> bool:
        if "group" in c:
            results = (self._matches(job, rec, g) for g in c["group"])
            return all(results) if c["group_operator"] == "and" else any(results)
        spec = FIELDS[job.module][c["api_name"]]
        have = spec.get(self.college, rec)
        if isinstance(have, dict):
            have = have.get("id")
        want = c["value"]

        def norm(v: Any) -> Any:
            if spec.data_type == "datetime" and isinstance(v, str):
                return parse_zoho_datetime(v)
            return str(v) if spec.data_type in ("lookup", "ownerlookup", "bigint") else v

        have = norm(have)
        comp = c["comparator"]
        if comp in ("in", "not_in", "between", "not_between"):
            vals = [norm(v) for v in (want if isinstance(want, list) else [want])]
            if comp in ("in", "not_in"):
                return (have in vals) == (comp == "in")
            inside = len(vals) == 2 and have is not None and vals[0] <= have <= vals[1]
            return inside == (comp == "between")
        want = norm(want)
        if comp == "equal":
            return have == want
        if comp == "not_equal":
            return have != want
        if have is None:
            return False
        if comp in ("starts_with", "ends_with", "contains", "not_contains"):
            h, w = str(have), str(want)
            return {
                "starts_with": h.startswith(w),
                "ends_with": h.endswith(w),
                "contains": w in h,
                "not_contains": w not in h,
            }[comp]
        return {
            "greater_than": have > want,
            "greater_equal": have >= want,
            "less_than": have < want,
            "less_equal": have <= want,
        }[comp]

    def _run(self, job: Job) -> None:
        size = self.config.bulk_read_page_size
        recs = self.college.zoho[job.module].index("id")
        if job.criteria:
            recs = [r for r in recs if self._matches(job, r, job.criteria)]
        start = (job.page - 1) * size
        chunk = recs[start : start + size]
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["Id"] + job.fields)
        specs = FIELDS[job.module]
        for r in chunk:
            row = [str(r.zid)]
            for f in job.fields:
                v = specs[f].get(self.college, r)
                if isinstance(v, dict):
                    v = v.get("id")
                row.append("" if v is None else v)
            writer.writerow(row)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{job.id}.csv", buf.getvalue())
        job.zip_bytes = out.getvalue()
        more = start + len(chunk) < len(recs)
        job.result = {
            "page": job.page,
            "count": len(chunk),
            "download_url": f"/crm/bulk/v8/read/{job.id}/result",
            "per_page": size,
            "more_records": more,
        }

    def download(self, job_id: str) -> ZohoResponse:
        job = self.jobs.get(job_id)
        if job is None:
            return _job_not_found()
        if job.zip_bytes is None:
            return ZohoResponse(
                400,
                {
                    "code": "INVALID_REQUEST",
                    "details": {"state": job.state},
                    "message": "the job is not completed yet",
                    "status": "error",
                },
            )
        now = self.college.time()
        self.downloads = [t for t in self.downloads if t > now - 60]
        if len(self.downloads) >= DOWNLOADS_PER_MINUTE:
            return error(
                429, "TOO_MANY_REQUESTS", "too many downloads", {"limit": DOWNLOADS_PER_MINUTE}, {"Retry-After": 60}
            )
        self.downloads.append(now)
        return ZohoResponse(
            200,
            headers={"content-type": "application/zip", "Content-Disposition": f'attachment; filename="{job.id}.zip"'},
            raw=job.zip_bytes,
        )
