"""What the webhook senders POST, validated, and the one envelope an accepted event is kept in.

Three senders reach the receiver:
- the seed's Moodle-plugin contract (`MoodleContractBody`): headers `X-Moodle-Token`,
  `X-Tenant-ID`, `X-Event-ID`, and `{event_id, event_type, timestamp, source, moodle_url,
  tenant_id, data}` with `data` being Moodle's `$event->get_data()`;
- the public plugin `local_webhooks` (`LocalWebhooksBody`): `get_data()` plus `host`, `token`
  and `extra`, with no event id (one is derived from the event's identity, `derived_event_id`);
- Zoho CRM notifications (`ZohoNotification`): the ids of records to re-fetch, with the channel's
  token.

Moodle types its ids as ints or numeric strings depending on the code path (the reference
captures' INDEX.md), so every id field accepts both and holds an int. An event type this project
applies must carry what applying it needs (`REQUIRED_BY_TYPE`); a body without it is rejected
naming the field, so an accepted file can always be applied or ignored, never half-understood.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

# Moodle timestamps are Unix seconds; these bounds only reject what cannot be a Moodle time.
_MAX_UNIX_SECONDS = 32_503_680_000  # year 3000


def _moodle_int(value: Any) -> Any:
    # Moodle sends ids as ints or numeric strings ("53"); booleans and floats are not ids.
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("must be an integer or a numeric string")
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("-").isdigit() or len(text) > 19:
            raise ValueError("must be an integer or a numeric string")
        return int(text)
    return value


MoodleInt = Annotated[int, BeforeValidator(_moodle_int), Field(ge=-(2**62), le=2**62)]


def _other(value: Any) -> Any:
    # PHP encodes an empty array as `[]`: that is an empty `other`, not a list of values.
    return None if value == [] else value


# The event types this project applies (their short names, without the PHP namespace), and what
# each must carry: `relateduserid` is the user the event is about, `other.*` the values it holds.
APPLIED_MOODLE_EVENTS: dict[str, tuple[str, ...]] = {
    "user_created": ("objectid",),
    "user_updated": ("objectid",),
    "user_deleted": ("objectid",),
    "user_enrolment_created": ("relateduserid", "courseid"),
    "user_enrolment_updated": ("relateduserid", "courseid"),
    "user_enrolment_deleted": ("relateduserid", "courseid"),
    "submission_graded": ("relateduserid", "contextinstanceid"),
    "user_graded": ("relateduserid", "other.itemid"),
    "grade_deleted": ("relateduserid", "other.itemid"),
    "course_completed": ("relateduserid", "courseid"),
    "course_module_completion_updated": ("relateduserid", "contextinstanceid", "other.completionstate"),
}


class MoodleEvent(BaseModel):
    """Moodle's `$event->get_data()`: the 17 keys every event carries."""

    model_config = ConfigDict(extra="allow")

    eventname: str = Field(min_length=2, max_length=255, pattern=r"^\\?[A-Za-z0-9_]+(\\[A-Za-z0-9_]+)+$")
    component: str = Field(max_length=255)
    action: str = Field(max_length=100)
    target: str = Field(max_length=100)
    objecttable: str | None = Field(default=None, max_length=100)
    objectid: MoodleInt | None = None
    crud: Literal["c", "r", "u", "d"]
    edulevel: MoodleInt = 0
    contextid: MoodleInt
    contextlevel: MoodleInt
    contextinstanceid: MoodleInt
    userid: MoodleInt
    courseid: MoodleInt
    relateduserid: MoodleInt | None = None
    anonymous: MoodleInt = 0
    other: Annotated[dict[str, Any] | None, BeforeValidator(_other)] = None
    timecreated: MoodleInt = Field(ge=0, le=_MAX_UNIX_SECONDS)

    @property
    def short_name(self) -> str:
        """`user_graded` for `\\core\\event\\user_graded`."""
        return self.eventname.rsplit("\\", 1)[-1]

    @property
    def applied(self) -> bool:
        return self.short_name in APPLIED_MOODLE_EVENTS

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timecreated, UTC)

    @model_validator(mode="after")
    def _carries_what_applying_needs(self) -> MoodleEvent:
        for name in APPLIED_MOODLE_EVENTS.get(self.short_name, ()):
            if name.startswith("other."):
                key = name.split(".", 1)[1]
                value = (self.other or {}).get(key)
                if value is None or _moodle_int(value) is None:
                    raise ValueError(f"{self.short_name} needs {name}")
            elif getattr(self, name) is None:
                raise ValueError(f"{self.short_name} needs {name}")
        return self

    def data(self) -> dict[str, Any]:
        """The event as Moodle sent it (ids as they came: the file keeps the sender's body)."""
        return self.model_dump(mode="json")


class LocalWebhooksBody(MoodleEvent):
    """What `local_webhooks` (valentineus/moodle-webhooks 3.0.x) POSTs: the event, then the
    service's `host`, `token` (the shared secret) and `extra`."""

    host: str | None = Field(default=None, max_length=255)
    token: str = Field(max_length=255, repr=False)
    extra: str | None = Field(default=None, max_length=10_000)

    def event(self) -> MoodleEvent:
        return MoodleEvent.model_validate(self.model_dump(exclude={"host", "token", "extra"}))


class MoodleContractBody(BaseModel):
    """The seed's Moodle-plugin contract: an envelope around `get_data()`."""

    event_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    event_type: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9_]+$")
    timestamp: datetime | MoodleInt
    source: str = Field(default="moodle", max_length=32)
    moodle_url: str | None = Field(default=None, max_length=2000)
    tenant_id: str = Field(min_length=1, max_length=64)
    data: MoodleEvent

    @model_validator(mode="after")
    def _type_matches_data(self) -> MoodleContractBody:
        if self.data.short_name != self.event_type:
            raise ValueError(f"event_type {self.event_type!r} does not match data.eventname {self.data.eventname!r}")
        return self


class ZohoNotification(BaseModel):
    """A Zoho CRM notification (API_NOTES B6): which records of a module changed."""

    model_config = ConfigDict(extra="allow")

    server_time: MoodleInt = Field(ge=0)  # milliseconds
    module: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_]+$")
    ids: list[Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9]+$")]] = Field(
        min_length=1, max_length=1000
    )
    operation: str = Field(min_length=1, max_length=32)
    channel_id: str = Field(min_length=1, max_length=64)
    token: str = Field(max_length=50, repr=False)
    resource_uri: str | None = Field(default=None, max_length=2000)
    affected_fields: list[Any] | None = None
    query_params: dict[str, Any] | None = None

    # Spellings Zoho uses for a deletion (API_NOTES B6: unverified, so both are accepted).
    DELETE_OPERATIONS: frozenset[str] = frozenset({"delete", "deleted"})

    @property
    def deletes(self) -> bool:
        return self.operation.lower() in self.DELETE_OPERATIONS

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.server_time / 1000, UTC)


Sender = Literal["moodle_contract", "local_webhooks", "zoho"]


class InboxEvent(BaseModel):
    """An accepted event as the inbox keeps it: one JSON file per event.

    `body` is what the sender POSTed, secrets removed (`token`). A file dropped by hand must have
    this shape; `process_events` quarantines one that does not.
    """

    event_id: str = Field(min_length=1, max_length=128)
    tenant_id: str = Field(min_length=1, max_length=64)
    sender: Sender
    received_at: datetime
    body: dict[str, Any]

    _validated: MoodleEvent | ZohoNotification | None = PrivateAttr(default=None)

    def moodle_event(self) -> MoodleEvent:
        """The Moodle event inside (either Moodle sender)."""
        if self.sender == "moodle_contract":
            return MoodleEvent.model_validate(self.body["data"])
        return MoodleEvent.model_validate({k: v for k, v in self.body.items() if k not in ("host", "extra")})

    def zoho_notification(self) -> ZohoNotification:
        return ZohoNotification.model_validate({**self.body, "token": ""})

    def validated(self) -> MoodleEvent | ZohoNotification:
        """The body, validated again (a file may have been dropped by hand), once."""
        if self._validated is None:
            self._validated = self.zoho_notification() if self.sender == "zoho" else self.moodle_event()
        return self._validated

    @property
    def source(self) -> str:
        return "zoho" if self.sender == "zoho" else "moodle"

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)


def parse_inbox_file(content: bytes) -> InboxEvent:
    """An inbox file's event, validated; raises `ValueError` naming what is wrong."""
    try:
        raw = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    try:
        event = InboxEvent.model_validate(raw)
        event.validated()
    except ValidationError as exc:
        raise ValueError(describe_errors(exc)) from exc
    except KeyError as exc:
        raise ValueError(f"body: missing {exc.args[0]}") from exc
    return event


def derived_event_id(tenant_id: str, event: MoodleEvent) -> str:
    """A stable id for an event sent without one (`local_webhooks`): a hash of what identifies it.

    Moodle fires one event per (name, object, related user, context, time, other) — e.g. one
    `grade_deleted` per grade item — and types ids inconsistently between code paths, so the ids
    are hashed as the ints they denote: the same event sent twice hashes the same.
    """
    identity = event.model_dump(mode="json")
    identity["eventname"] = "\\" + event.eventname.lstrip("\\")
    digest = hashlib.sha256(orjson.dumps([tenant_id, identity], option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"moodle-{digest[:40]}"


def describe_errors(exc: ValidationError) -> str:
    """`field: message` for each error, fields dotted (`data.other.itemid`)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
