"""Zoho CRM v8 behaviour of the sandbox, validated against Zoho's OpenAPI component schemas."""

from __future__ import annotations

import io
import zipfile

import pytest

from .oas import errors

RECORD = "record.json"
WRAPPER = "/components/schemas/Response_Wrapper"
EXCEPTION = "/components/schemas/API_Exception"
UPSERT_200 = "/paths/~1crm~1v8~1{module_api_name}~1upsert/post/responses/200/content/application~1json/schema/oneOf/0"


def test_list_answer_validates_against_response_wrapper(zoho):
    resp = zoho.get(
        "/crm/v8/Payments",
        {
            "fields": "Student,Amount,Currency,Payment_Status,Due_Date,Paid_On,Owner,Created_Time,Modified_Time",
            "per_page": 50,
        },
    )
    assert resp.status_code == 200
    body = resp.json()
    assert errors(RECORD, WRAPPER, body) == []
    assert isinstance(body["data"][0]["Amount"], float)
    assert body["data"][0]["Modified_Time"][-6:] in ("+00:00",)


@pytest.mark.parametrize(
    "params,status,code",
    [
        ({}, 400, "REQUIRED_PARAM_MISSING"),
        ({"fields": ",".join(["Email"] * 51)}, 400, "LIMIT_EXCEEDED"),
        ({"fields": "Email", "per_page": 201}, 400, "LIMIT_EXCEEDED"),
        ({"fields": "No_Such_Field"}, 400, "INVALID_DATA"),
        ({"fields": "Email", "page": 1, "page_token": "x"}, 400, "INVALID_DATA"),
    ],
)
def test_list_errors_validate_against_api_exception(zoho, params, status, code):
    resp = zoho.get("/crm/v8/Students", params)
    assert resp.status_code == status
    assert resp.json()["code"] == code
    assert errors(RECORD, EXCEPTION, resp.json()) == []


def test_unknown_module_and_bad_token_validate(zoho, http, sandbox):
    resp = zoho.get("/crm/v8/Leads", {"fields": "Email"})
    assert resp.status_code == 400 and resp.json()["code"] == "INVALID_MODULE"
    assert errors(RECORD, EXCEPTION, resp.json()) == []
    resp = http.get(sandbox.zoho_api_domain + "/crm/v8/Students", params={"fields": "Email"})
    assert resp.status_code == 401 and resp.json()["code"] == "AUTHENTICATION_FAILURE"
    assert errors(RECORD, EXCEPTION, resp.json()) == []


def test_discrete_page_limit(zoho):
    resp = zoho.get("/crm/v8/Registrations", {"fields": "Status", "per_page": 200, "page": 11})
    assert resp.status_code == 400
    assert resp.json() == {
        "code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
        "details": {"limit": 2000},
        "message": "You can only get the first 2000 records without using page_token param",
        "status": "error",
    }
    assert errors(RECORD, EXCEPTION, resp.json(), relax_enums=True) == []


def test_sort_by_modified_time_and_if_modified_since(zoho, sandbox):
    col = sandbox.college
    with sandbox.lock:
        times = sorted(r.modified for r in col.zoho["Enrollments"].records.values() if r.deleted is None)
    cutoff = times[len(times) // 2]
    from integration_pipelines.sandbox.college import zoho_datetime

    seen = []
    params = {"fields": "Modified_Time,Status", "sort_by": "Modified_Time", "sort_order": "asc", "per_page": 37}
    headers = {"If-Modified-Since": zoho_datetime(cutoff)}
    while True:
        resp = zoho.get("/crm/v8/Enrollments", params, headers)
        assert resp.status_code == 200
        body = resp.json()
        seen += body["data"]
        if not body["info"]["more_records"]:
            break
        params = {"fields": "Modified_Time,Status", "per_page": 37, "page_token": body["info"]["next_page_token"]}
    assert len(seen) == sum(1 for t in times if t >= cutoff)
    stamps = [r["Modified_Time"] for r in seen]
    assert stamps == sorted(stamps)
    assert len({r["id"] for r in seen}) == len(seen)


def test_nothing_modified_is_304_and_empty_is_204(zoho, sandbox):
    resp = zoho.get("/crm/v8/Students", {"fields": "Email"}, {"If-Modified-Since": "2099-01-01T00:00:00+00:00"})
    assert resp.status_code == 304 and resp.content == b""
    resp = zoho.get("/crm/v8/Students", {"fields": "Email", "ids": "1"})
    assert resp.status_code == 204 and resp.content == b""


def test_ids_parameter(zoho, sandbox):
    zids = [str(z) for z in list(sandbox.college.zoho["Programs"].records)[:2]]
    resp = zoho.get("/crm/v8/Programs", {"fields": "Programme_Code", "ids": ",".join(zids)})
    assert [r["id"] for r in resp.json()["data"]] == zids


def test_mutate_is_visible_to_incremental_and_deleted_reads(zoho, sandbox, http):
    from integration_pipelines.sandbox.college import zoho_datetime

    before = sandbox.college.clock()
    summary = http.post(
        sandbox.base_url + "/_sandbox/mutate",
        json={
            "advance_seconds": 600,
            "zoho_change_share": 0.05,
            "zoho_delete_share": 0.02,
            "zoho_modules": ["Payments"],
        },
    ).json()
    changed, deleted = summary["zoho"]["Payments"]["changed"], summary["zoho"]["Payments"]["deleted"]
    assert changed > 0 and deleted > 0
    since = {"If-Modified-Since": zoho_datetime(before + 1)}
    resp = zoho.get(
        "/crm/v8/Payments", {"fields": "Payment_Status", "sort_by": "Modified_Time", "sort_order": "asc"}, since
    )
    assert resp.status_code == 200 and len(resp.json()["data"]) == changed
    resp = zoho.get("/crm/v8/Payments/deleted", {"type": "all"}, since)
    assert resp.status_code == 200
    body = resp.json()
    assert errors(RECORD, "/components/schemas/Deleted_Records_Wrapper", body) == []
    assert len(body["data"]) == deleted and {d["type"] for d in body["data"]} == {"recycle"}
    truth = {p["zoho_id"]: p for p in sandbox.truth()["payments"]}
    assert all(truth[d["id"]]["deleted"] for d in body["data"])


def test_upsert_insert_update_and_errors(zoho, sandbox):
    col = sandbox.college
    student = next(s for s in col.zoho["Students"].records.values() if s.deleted is None)
    unit = next(iter(col.zoho["Units"].records.values()))
    key = f"{student.student_number}-{unit.code}-WB"
    record = {"Grade_Key": key, "Student": {"id": str(student.zid)}, "Unit": {"id": str(unit.zid)}, "Grade": "Merit"}
    bad = {"Grade_Key": key + "-bad", "Student": {"id": str(student.zid)}, "Unit": {"id": str(unit.zid)}, "Grade": "A*"}
    resp = zoho.post("/crm/v8/BTEC_Grades/upsert", {"data": [record, bad], "duplicate_check_fields": ["Grade_Key"]})
    assert resp.status_code == 207
    body = resp.json()
    assert errors(RECORD, UPSERT_200, body) == []
    ok, err = body["data"]
    assert ok["status"] == "success" and ok["action"] == "insert"
    assert err["status"] == "error" and err["code"] == "INVALID_DATA" and err["details"]["api_name"] == "Grade"
    new_id = ok["details"]["id"]
    # the upserted record is visible; the failed one did nothing
    got = zoho.get("/crm/v8/BTEC_Grades", {"fields": "Grade_Key,Grade", "ids": new_id}).json()["data"]
    assert got == [{"id": new_id, "Grade_Key": key, "Grade": "Merit"}]
    assert not any(r.key == key + "-bad" for r in col.zoho["BTEC_Grades"].records.values())
    # same key again: an update of that record
    resp = zoho.post(
        "/crm/v8/BTEC_Grades/upsert",
        {"data": [{**record, "Grade": "Distinction"}], "duplicate_check_fields": ["Grade_Key"]},
    )
    again = resp.json()["data"][0]
    assert again["action"] == "update" and again["details"]["id"] == new_id
    assert again["duplicate_field"] == "Grade_Key"
    assert errors(RECORD, UPSERT_200, resp.json()) == []
    truth = [g for g in sandbox.truth()["grades"] if g["zoho_id"] == new_id]
    assert truth[0]["btec_grade"] == "Distinction"
    # a missing mandatory field on insert
    resp = zoho.post("/crm/v8/BTEC_Grades/upsert", {"data": [{"Grade_Key": "X-1", "Grade": "Pass"}]})
    assert resp.json()["data"][0]["code"] == "MANDATORY_NOT_FOUND"
    assert errors(RECORD, UPSERT_200, resp.json()) == []


def test_metadata(zoho):
    modules = zoho.get("/crm/v8/settings/modules").json()["modules"]
    assert {m["api_name"] for m in modules} >= {
        "Students",
        "Programs",
        "Units",
        "Classes",
        "Enrollments",
        "Registrations",
        "Payments",
        "BTEC_Grades",
    }
    fields = {f["api_name"]: f for f in zoho.get("/crm/v8/settings/fields", {"module": "Students"}).json()["fields"]}
    assert fields["Programme"]["data_type"] == "lookup"
    assert fields["Programme"]["lookup"]["module"]["api_name"] == "Programs"
    assert fields["Modified_Time"]["data_type"] == "datetime"
    me = zoho.get("/crm/v8/users", {"type": "CurrentUser"}).json()["users"]
    assert len(me) == 1
    org = zoho.get("/crm/v8/org").json()["org"][0]
    assert org["license_details"]["paid_type"] == "enterprise"


def test_bulk_read_job_lifecycle(zoho, sandbox):
    resp = zoho.post(
        "/crm/bulk/v8/read",
        {"query": {"module": {"api_name": "Students"}, "fields": ["Student_Number", "Email", "Programme"]}},
    )
    assert resp.status_code == 201
    created = resp.json()
    assert (
        errors(
            "bulk_read.json",
            "/paths/~1crm~1bulk~1v8~1read/post/responses/201/content/application~1json/schema/oneOf/0",
            created,
        )
        == []
    )
    job_id = created["data"][0]["details"]["id"]
    states = []
    for _ in range(10):
        detail = zoho.get(f"/crm/bulk/v8/read/{job_id}").json()["data"][0]
        states.append(detail["state"])
        if detail["state"] == "COMPLETED":
            break
    assert states == ["QUEUED", "IN PROGRESS", "COMPLETED"]
    result = detail["result"]
    live = sandbox.college.zoho["Students"].live_count()
    assert result["count"] == live and result["more_records"] is False
    data = zoho.get(f"/crm/bulk/v8/read/{job_id}/result")
    assert data.status_code == 200 and data.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(data.content)) as zf:
        assert zf.namelist() == [f"{job_id}.csv"]
        lines = zf.read(f"{job_id}.csv").decode().splitlines()
    assert lines[0] == "Id,Student_Number,Email,Programme"
    assert len(lines) == live + 1
