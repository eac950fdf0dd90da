"""Canonical students: one row per student, linking the Zoho admissions record and the Moodle account.

A Moodle user and a Zoho student are one student when, in order of trust:
1. the Moodle custom profile field the mapping names (`identity.moodle_crm_field`) holds the
   Zoho record id;
2. the Moodle `idnumber` equals the Zoho student number, case-insensitively (if
   `identity.match_on_idnumber`); where two Zoho students share a number, the later wins (a
   deleted one after live ones, then the later modified);
3. their emails, trimmed and lower-cased, are equal. An email two Zoho students share links
   nobody: it is ambiguous, and counted.

A user's candidate is the first rule that names a student. Each Zoho student links at most one
Moodle account: when several claim it, the oldest account (lowest id) keeps it, and the others are
conflicts, left unlinked. Students known to one system only are kept (`identity_match` is null)
and counted as unmatched. Moodle users without a student role (teachers, administrators) that
match no Zoho student are not students and are left out.

A student Zoho lists as deleted is kept as a soft-deleted row (a tombstone), with the fields last
seen if any, so that enrollments and grades that still point at it resolve. A Moodle account
linked to such a student belongs to the tombstone and does not come back as a Moodle-only student.

Zoho is the system of record for who a student is, so a linked row takes its profile fields from
Zoho and only the Moodle id from Moodle.

How it is computed. What identity matches on lives in two indexed tables kept by key from the
raw layer (`identity_zoho_students`, `identity_moodle_users`). Applying a set of raw keys first
refreshes those keys' entries, then finds every student and account the change can reach: the
changed ones, those sharing a key with them before or after the change, those linked to them,
and everyone competing for the same students. Only their rows are recomputed: a handful of
index lookups for an event, and the whole college, set-based, for `full_sync`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Select,
    String,
    Table,
    and_,
    case,
    cast,
    delete,
    false,
    func,
    literal,
    null,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.sql import FromClause

from integration_pipelines.lib.canonical.apply import Scope, TableResult
from integration_pipelines.lib.canonical.raw_keys import Entity
from integration_pipelines.lib.canonical.scratch import drop_scratch, fill, present, scratch_table
from integration_pipelines.lib.canonical.transforms import TRANSFORMS, Field
from integration_pipelines.lib.canonical.zoho_records import map_record, raise_for_problem, zoho_key
from integration_pipelines.lib.mapping import EntityMapping, FieldMapping, IdentityConfig
from integration_pipelines.lib.warehouse.raw import deleted_entity_name
from integration_pipelines.lib.warehouse.schema import (
    identity_moodle_users,
    identity_zoho_students,
    is_moodle_enrolment,
    moodle_user_of,
    raw_records,
    students,
)
from integration_pipelines.lib.warehouse.sql import blank_to_null, json_array_find, json_array_has, json_text
from integration_pipelines.lib.warehouse.upsert import SyncCounts, soft_delete_unstaged, upsert_select

STUDENT_ROLE = "student"
MATCH_RULES = ("crm_field", "idnumber", "email")
Z, U = identity_zoho_students.c, identity_moodle_users.c


def normalise_email(value: str | None) -> str | None:
    """An email as identity compares it: trimmed and lower-cased; None when blank."""
    value = (value or "").strip().lower()
    return value or None


def email_key(text) -> ColumnElement:
    return func.lower(blank_to_null(text))


def number_key(text) -> ColumnElement:
    return func.upper(blank_to_null(text))


# -- the identity keys, refreshed from the raw layer -----------------------------------------


def _zoho_keys_rows(scope: Scope, mapping: EntityMapping, zoho_ids: Table | None):
    """Identity entries of Zoho students: each live record, then each one Zoho lists as deleted
    (matchable by what the warehouse last saw of it)."""
    tenant, r = scope.tenant_id, raw_records.c
    live = map_record(mapping)
    base = [r.tenant_id == tenant, r.source == "zoho", r.deleted_at.is_(None)]
    live_rows = select(
        literal(tenant).label("tenant_id"),
        r.record_id.label("zoho_id"),
        number_key(live.columns["student_number"]).label("number_key"),
        email_key(live.columns["email"]).label("email_key"),
        false().label("deleted"),
        live.modified_at.label("source_modified_at"),
        # A record with a problem makes no entry: the students' own statement stops on it, naming it.
    ).where(*base, r.entity == mapping.module, live.problem.is_(None))
    listed = raw_records.alias("listed")
    seen = raw_records.alias("seen")
    last_seen = map_record(mapping, seen.c.payload)
    deleted_time = TRANSFORMS["datetime"](Field(listed.c.payload, "deleted_time")).value
    still_alive = (
        select(literal(1))
        .where(
            r.tenant_id == tenant,
            r.source == "zoho",
            r.entity == mapping.module,
            r.record_id == listed.c.record_id,
            r.deleted_at.is_(None),
        )
        .exists()
    )
    deleted_rows = (
        select(
            literal(tenant),
            listed.c.record_id,
            number_key(last_seen.columns["student_number"]),
            email_key(last_seen.columns["email"]),
            true(),
            deleted_time,
        )
        .select_from(
            listed.outerjoin(
                seen,
                and_(
                    seen.c.tenant_id == tenant,
                    seen.c.source == "zoho",
                    seen.c.entity == mapping.module,
                    seen.c.record_id == listed.c.record_id,
                ),
            )
        )
        .where(
            listed.c.tenant_id == tenant,
            listed.c.source == "zoho",
            listed.c.entity == deleted_entity_name(mapping.module),
            listed.c.deleted_at.is_(None),
            ~still_alive,
        )
    )
    if zoho_ids is not None:
        live_rows = live_rows.where(r.record_id.in_(select(zoho_ids.c.zoho_id)))
        deleted_rows = deleted_rows.where(listed.c.record_id.in_(select(zoho_ids.c.zoho_id)))
    return union_all(live_rows, deleted_rows)


def holds_student_role(payload) -> ColumnElement:
    """Whether a Moodle enrolment (as the enrolled-users answer gives it) carries the student role."""
    return json_array_has(payload, "roles", "shortname", STUDENT_ROLE)


def student_users(tenant_id: str, users: Table | None) -> Select:
    """The Moodle users holding a student role in some course (a live enrolment says so): all of
    them, or those among `users`, each found by the index of enrolments by user."""
    enrolment = raw_records.alias("enrolment")
    user = moodle_user_of(enrolment)
    found = select(user).where(
        enrolment.c.tenant_id == tenant_id,
        is_moodle_enrolment(enrolment),
        enrolment.c.deleted_at.is_(None),
        holds_student_role(enrolment.c.payload),
    )
    return found if users is None else found.where(user.in_(select(users.c.user_id)))


def _moodle_keys_rows(scope: Scope, rules: IdentityConfig, user_ids: Table | None):
    """Identity entries of the live Moodle users."""
    tenant, r = scope.tenant_id, raw_records.c
    user_id = cast(r.record_id, BigInteger)
    field = rules.moodle_crm_field
    crm = blank_to_null(json_array_find(r.payload, "customfields", "shortname", field, "value")) if field else null()
    rows = select(
        literal(tenant).label("tenant_id"),
        user_id.label("moodle_user_id"),
        crm.label("crm_key"),
        number_key(json_text(r.payload, "idnumber")).label("number_key"),
        email_key(json_text(r.payload, "email")).label("email_key"),
        user_id.in_(student_users(tenant, user_ids)).label("is_student"),
        r.source_modified_at,
    ).where(r.tenant_id == tenant, r.source == "moodle", r.entity == "users", r.deleted_at.is_(None))
    if user_ids is not None:
        rows = rows.where(r.record_id.in_(select(cast(user_ids.c.user_id, String))))  # by the primary key
    return rows


# -- matching ---------------------------------------------------------------------------------


def _candidates(tenant_id: str, rules: IdentityConfig, users: Table | None):
    """Each user's candidate: (user, Zoho student or NULL when its email is ambiguous, rule),
    by the first rule that names a student."""
    in_scope = [U.tenant_id == tenant_id, U.deleted_at.is_(None)]
    if users is not None:
        in_scope.append(U.moodle_user_id.in_(select(users.c.user_id)))
    z_live = [Z.tenant_id == tenant_id, Z.deleted_at.is_(None)]
    hits = [
        select(U.moodle_user_id.label("user_id"), Z.zoho_id.label("zoho_id"), literal(1).label("rule"))
        .select_from(identity_moodle_users.join(identity_zoho_students, and_(*z_live, Z.zoho_id == U.crm_key)))
        .where(*in_scope)
    ]
    if rules.match_on_idnumber:
        later = identity_zoho_students.alias("later")
        later_wins = (
            select(literal(1))
            .where(
                later.c.tenant_id == tenant_id,
                later.c.deleted_at.is_(None),
                later.c.number_key == Z.number_key,
                tuple_(later.c.deleted, later.c.source_modified_at, later.c.zoho_id)
                > tuple_(Z.deleted, Z.source_modified_at, Z.zoho_id),
            )
            .exists()
        )
        hits.append(
            select(U.moodle_user_id, Z.zoho_id, literal(2))
            .select_from(
                identity_moodle_users.join(identity_zoho_students, and_(*z_live, Z.number_key == U.number_key))
            )
            .where(*in_scope, ~later_wins)
        )
    hits.append(
        select(U.moodle_user_id, case((func.count() == 1, func.min(Z.zoho_id)), else_=None), literal(3))
        .select_from(identity_moodle_users.join(identity_zoho_students, and_(*z_live, Z.email_key == U.email_key)))
        .where(*in_scope)
        .group_by(U.moodle_user_id)
    )
    every = union_all(*hits).subquery("hits")
    first = func.row_number().over(partition_by=every.c.user_id, order_by=every.c.rule).label("first")
    ranked = select(every, first).subquery("ranked")
    return select(ranked.c.user_id, ranked.c.zoho_id, ranked.c.rule).where(ranked.c.first == 1)


@dataclass
class _Match:
    """The candidates of the users a change reached, and who won each student."""

    candidates: Table  # user_id, zoho_id (NULL: ambiguous email), rule
    winners: Table  # zoho_id, user_id, rule


def _match(conn: Connection, tenant_id: str, rules: IdentityConfig, users: Table | None) -> _Match:
    candidates = scratch_table(
        conn,
        "identity_candidates",
        Column("user_id", BigInteger, primary_key=True),
        Column("zoho_id", String(32), index=True),
        Column("rule", BigInteger),
    )
    fill(conn, candidates, _candidates(tenant_id, rules, users))
    winners = scratch_table(
        conn,
        "identity_winners",
        Column("zoho_id", String(32), primary_key=True),
        Column("user_id", BigInteger, nullable=False, index=True),
        Column("rule", BigInteger),
    )
    c = candidates.c
    first = func.row_number().over(partition_by=c.zoho_id, order_by=c.user_id).label("first")
    ranked = select(c.zoho_id, c.user_id, c.rule, first).where(c.zoho_id.is_not(None)).subquery()
    fill(conn, winners, select(ranked.c.zoho_id, ranked.c.user_id, ranked.c.rule).where(ranked.c.first == 1))
    return _Match(candidates, winners)


# -- what a change reaches --------------------------------------------------------------------


class _Reach:
    """The Zoho students and Moodle users a set of raw keys reaches, in scratch tables."""

    def __init__(self, conn: Connection, tenant_id: str):
        self.conn, self.tenant_id = conn, tenant_id
        self.zoho = scratch_table(conn, "reached_zoho", Column("zoho_id", String(32), primary_key=True))
        self.users = scratch_table(conn, "reached_users", Column("user_id", BigInteger, primary_key=True))

    def add_zoho(self, rows) -> None:
        fill(self.conn, self.zoho, rows, ignore_repeats=True)

    def add_users(self, rows) -> None:
        fill(self.conn, self.users, rows, ignore_repeats=True)

    def sharing_keys(
        self, rules: IdentityConfig, keys_of_zoho: Table | None = None, keys_of_users: Table | None = None
    ):
        """Add the students and users sharing a key with the reached ones: for each reached user,
        every student any of its keys names; for each reached student, every user naming it."""
        t = self.tenant_id
        z_keys = keys_of_zoho if keys_of_zoho is not None else identity_zoho_students
        u_keys = keys_of_users if keys_of_users is not None else identity_moodle_users
        zk, uk = z_keys.c, u_keys.c
        reached_u = uk.moodle_user_id.in_(select(self.users.c.user_id))
        reached_z = zk.zoho_id.in_(select(self.zoho.c.zoho_id))
        pairs = [(Z.zoho_id, uk.crm_key), (Z.email_key, uk.email_key)]
        if rules.match_on_idnumber:
            pairs.append((Z.number_key, uk.number_key))
        for z_col, u_col in pairs:
            self.add_zoho(
                select(Z.zoho_id)
                .select_from(u_keys.join(identity_zoho_students, and_(Z.tenant_id == t, z_col == u_col)))
                .where(uk.tenant_id == t, reached_u)
            )
        for z_col, u_col in [(zk.zoho_id, U.crm_key), (zk.email_key, U.email_key)] + (
            [(zk.number_key, U.number_key)] if rules.match_on_idnumber else []
        ):
            self.add_users(
                select(U.moodle_user_id)
                .select_from(z_keys.join(identity_moodle_users, and_(U.tenant_id == t, u_col == z_col)))
                .where(zk.tenant_id == t, reached_z)
            )
        # Students sharing a number or an email with a reached student compete with it.
        for z_col in ([zk.number_key] if rules.match_on_idnumber else []) + [zk.email_key]:
            other = identity_zoho_students.alias()
            self.add_zoho(
                select(other.c.zoho_id)
                .select_from(z_keys.join(other, and_(other.c.tenant_id == t, other.c[z_col.name] == z_col)))
                .where(zk.tenant_id == t, reached_z)
            )

    def linked(self) -> None:
        """Add the students linked to reached users, and the users linked to reached students."""
        s, t = students.c, self.tenant_id
        self.add_zoho(
            select(s.zoho_id).where(
                s.tenant_id == t, present(s.zoho_id), s.moodle_user_id.in_(select(self.users.c.user_id))
            )
        )
        self.add_users(
            select(s.moodle_user_id).where(
                s.tenant_id == t, present(s.moodle_user_id), s.zoho_id.in_(select(self.zoho.c.zoho_id))
            )
        )


# -- what other tables look up in the students ------------------------------------------------


def account_of_student(tenant_id: str, student_zoho_id) -> ColumnElement:
    """A Zoho student's Moodle account, where it has one (a scalar subquery)."""
    return (
        select(students.c.moodle_user_id)
        .where(
            students.c.tenant_id == tenant_id,
            students.c.zoho_id == student_zoho_id,
            students.c.moodle_user_id.is_not(None),
        )
        .limit(1)
        .scalar_subquery()
    )


def student_of_account(tenant_id: str, user_id) -> ColumnElement:
    """The student a Moodle account is, a live row before a tombstone (a scalar subquery)."""
    return (
        select(students.c.student_key)
        .where(students.c.tenant_id == tenant_id, students.c.moodle_user_id == user_id)
        .order_by(students.c.deleted_at.is_(None).desc(), students.c.deleted_at.desc(), students.c.student_key)
        .limit(1)
        .scalar_subquery()
    )


def accounts_of_changed_students(tenant_id: str, since: datetime) -> Select:
    """The Moodle accounts of the students whose rows were written at or after `since`."""
    return select(students.c.moodle_user_id).where(
        students.c.tenant_id == tenant_id,
        students.c.updated_at >= since,
        students.c.moodle_user_id.is_not(None),
    )


def enrolments_of_changed_students(tenant_id: str, since: datetime) -> Select:
    """(course, user) of every raw Moodle enrolment of an account whose student row was written at
    or after `since`: what a table keyed by enrolment applies again when students change."""
    course_id = cast(json_text(raw_records.c.payload, "courseid"), BigInteger)
    return select(course_id, moodle_user_of()).where(
        raw_records.c.tenant_id == tenant_id,
        is_moodle_enrolment(),
        moodle_user_of().in_(accounts_of_changed_students(tenant_id, since)),
    )


def photo_of(payload) -> ColumnElement:
    """A Moodle user's photo, as `core_user_get_users_by_field` gives it (`profileimageurl`)."""
    return blank_to_null(json_text(payload, "profileimageurl"))


def _moodle_user_record(raw: FromClause, tenant_id: str, user_id) -> ColumnElement:
    """The join condition of a Moodle user's raw record (an alias of `raw_records`), by its key."""
    return and_(
        raw.c.tenant_id == tenant_id,
        raw.c.source == "moodle",
        raw.c.entity == "users",
        raw.c.record_id == cast(user_id, String),
        raw.c.deleted_at.is_(None),
    )


# -- the table ---------------------------------------------------------------------------------


class Students:
    name = "students"

    def inputs(self, mapping: FieldMapping) -> list[Entity]:
        module = mapping.zoho.entities["students"].module
        return [("zoho", module), ("zoho", deleted_entity_name(module)), ("moodle", "users"), ("moodle", "enrolments")]

    def apply(self, scope: Scope) -> TableResult:
        conn, tenant, keys = scope.conn, scope.tenant_id, scope.keys
        mapping, rules = scope.mapping.zoho.entities["students"], scope.mapping.identity
        reach = None if keys.all else self._reach(scope, mapping, rules)
        self._refresh_keys(scope, mapping, rules, reach)
        match = _match(conn, tenant, rules, None if reach is None else reach.users)
        if reach is not None:
            self._competitors(scope, rules, reach, match)
        written = upsert_select(conn, "students", self._rows(scope, mapping, reach, match), now=scope.now)
        raise_for_problem(conn, tenant, mapping, written)
        tenant_rows = students.c.tenant_id == tenant
        if reach is None:
            deleted = soft_delete_unstaged(conn, written, tenant_rows, now=scope.now)
        else:
            # The reached students, then the reached Moodle-only accounts: two statements, each
            # through an index (an OR of the two is planned as a pass over every student).
            reached = [
                students.c.zoho_id.in_(select(reach.zoho.c.zoho_id)),
                and_(students.c.zoho_id.is_(None), students.c.moodle_user_id.in_(select(reach.users.c.user_id))),
            ]
            deleted = sum(soft_delete_unstaged(conn, written, tenant_rows, part, now=scope.now) for part in reached)
        found = self._found(conn, tenant, match, whole=reach is None)
        drop_scratch(conn, match.candidates, match.winners, *(() if reach is None else (reach.zoho, reach.users)))
        return TableResult(SyncCounts(read=written.staged + deleted, written=written.counts, deleted=deleted), found)

    def _reach(self, scope: Scope, mapping: EntityMapping, rules: IdentityConfig) -> _Reach:
        """The students and accounts the keys reach, as they stood before the change (keys
        they shared then, links they had), so that what a change undoes is recomputed too."""
        conn, tenant, keys = scope.conn, scope.tenant_id, scope.keys
        reach = _Reach(conn, tenant)
        for entity in (mapping.module, deleted_entity_name(mapping.module)):
            reach.add_zoho(keys.ids("zoho", entity))
        reach.add_users(keys.ids("moodle", "users", as_type=BigInteger))
        source, where = keys.raw(tenant, "moodle", "enrolments", live=False)
        reach.add_users(select(moodle_user_of()).select_from(source).where(*where))
        reach.linked()
        reach.sharing_keys(rules)
        return reach

    def _refresh_keys(self, scope: Scope, mapping: EntityMapping, rules: IdentityConfig, reach: _Reach | None) -> None:
        conn, tenant, now = scope.conn, scope.tenant_id, scope.now
        zoho_ids = None if reach is None else reach.zoho
        user_ids = None if reach is None else reach.users
        for table, rows, key_scope in (
            ("identity_zoho_students", _zoho_keys_rows(scope, mapping, zoho_ids), zoho_ids),
            ("identity_moodle_users", _moodle_keys_rows(scope, rules, user_ids), user_ids),
        ):
            spec = identity_zoho_students if table == "identity_zoho_students" else identity_moodle_users
            written = upsert_select(conn, table, select(rows.subquery()), now=now)
            owned = [spec.c.tenant_id == tenant]
            if key_scope is not None:
                key = spec.c.zoho_id if key_scope is zoho_ids else spec.c.moodle_user_id
                owned.append(key.in_(select(list(key_scope.c)[0])))
            soft_delete_unstaged(conn, written, *owned, now=now)

    def _competitors(self, scope: Scope, rules: IdentityConfig, reach: _Reach, match: _Match) -> None:
        """After the refresh: the students the reached users now name, and every user competing
        for a reached student, so that each reached student's winner is decided among all."""
        reach.sharing_keys(rules)
        reach.add_zoho(select(match.candidates.c.zoho_id).where(match.candidates.c.zoho_id.is_not(None)))
        reach.sharing_keys(rules)
        drop_scratch(scope.conn, match.candidates, match.winners)
        fresh = _match(scope.conn, scope.tenant_id, rules, reach.users)
        match.candidates, match.winners = fresh.candidates, fresh.winners
        # A user whose candidate lies beyond the reach keeps the row it has: the student it names,
        # and so who wins it, did not change.
        c = match.candidates.c
        beyond = select(c.user_id).where(c.zoho_id.is_not(None), c.zoho_id.not_in(select(reach.zoho.c.zoho_id)))
        scope.conn.execute(delete(reach.users).where(reach.users.c.user_id.in_(beyond)))

    def _rows(self, scope: Scope, mapping: EntityMapping, reach: _Reach | None, match: _Match):
        """The rows: every live Zoho student, every one Zoho lists as deleted, and every Moodle
        user with a student role that no student is linked to."""
        tenant, r = scope.tenant_id, raw_records.c
        w = match.winners.c
        rule_name = case(*((w.rule == i, name) for i, name in enumerate(MATCH_RULES, start=1)), else_=None)
        mapped = map_record(mapping)
        profile = [c.name for c in students.c if c.name in mapped.columns]
        # The Moodle account a linked student won, for its photo (Zoho has none).
        account = raw_records.alias("account")
        tomb_account = raw_records.alias("tomb_account")
        zoho_live = (
            select(
                literal(tenant).label("tenant_id"),
                zoho_key(r.record_id).label("student_key"),
                r.record_id.label("zoho_id"),
                *(mapped.columns[c].label(c) for c in profile),
                w.user_id.label("moodle_user_id"),
                rule_name.label("identity_match"),
                photo_of(account.c.payload).label("photo_url"),
                mapped.modified_at.label("source_modified_at"),
                null().label("deleted_at"),
                mapped.problem.label("problem"),
            )
            .select_from(
                raw_records.outerjoin(match.winners, w.zoho_id == r.record_id).outerjoin(
                    account, _moodle_user_record(account, tenant, w.user_id)
                )
            )
            .where(r.tenant_id == tenant, r.source == "zoho", r.entity == mapping.module, r.deleted_at.is_(None))
        )
        zk = Z
        seen = raw_records.alias("seen")
        last_seen = map_record(mapping, seen.c.payload)
        tombstones = (
            select(
                literal(tenant),
                zoho_key(zk.zoho_id),
                zk.zoho_id,
                *(last_seen.columns[c] for c in profile),
                w.user_id,
                rule_name,
                photo_of(tomb_account.c.payload),
                func.coalesce(last_seen.modified_at, zk.source_modified_at),
                zk.source_modified_at,
                null(),
            )
            .select_from(
                identity_zoho_students.outerjoin(match.winners, w.zoho_id == zk.zoho_id)
                .outerjoin(
                    seen,
                    and_(
                        seen.c.tenant_id == tenant,
                        seen.c.source == "zoho",
                        seen.c.entity == mapping.module,
                        seen.c.record_id == zk.zoho_id,
                    ),
                )
                .outerjoin(tomb_account, _moodle_user_record(tomb_account, tenant, w.user_id))
            )
            .where(zk.tenant_id == tenant, zk.deleted, zk.deleted_at.is_(None))
        )
        c = match.candidates.c
        user_id = U.moodle_user_id
        p = r.payload
        won = select(literal(1)).where(w.user_id == user_id).exists()
        moodle_only = (
            select(
                literal(tenant),
                literal("moodle:") + cast(user_id, String),
                null(),
                *(self._moodle_profile(p)[col] for col in profile),
                user_id,
                null(),
                photo_of(p),
                r.source_modified_at,
                null(),
                null(),
            )
            .select_from(
                identity_moodle_users.join(
                    raw_records,
                    and_(
                        r.tenant_id == tenant,
                        r.source == "moodle",
                        r.entity == "users",
                        r.record_id == cast(user_id, String),
                    ),
                ).outerjoin(match.candidates, c.user_id == user_id)
            )
            .where(U.tenant_id == tenant, U.deleted_at.is_(None), U.is_student, r.deleted_at.is_(None), ~won)
        )
        if reach is not None:
            in_reach = select(reach.zoho.c.zoho_id)
            zoho_live = zoho_live.where(r.record_id.in_(in_reach))
            tombstones = tombstones.where(zk.zoho_id.in_(in_reach))
            moodle_only = moodle_only.where(user_id.in_(select(reach.users.c.user_id)))
        return union_all(zoho_live, tombstones, moodle_only)

    @staticmethod
    def _moodle_profile(payload) -> dict:
        number = blank_to_null(json_text(payload, "idnumber"))
        suspended = json_text(payload, "suspended").in_(("true", "1"))
        return {
            "student_number": number,
            "first_name": json_text(payload, "firstname"),
            "last_name": json_text(payload, "lastname"),
            "email": email_key(json_text(payload, "email")),
            "program_zoho_id": null(),
            "status": case((suspended, "suspended"), else_="active"),
            # Moodle's optional profile fields (left out of its answer when empty).
            "phone": blank_to_null(json_text(payload, "phone1")),
            "date_of_birth": null(),
            "address": blank_to_null(json_text(payload, "address")),
            "city": blank_to_null(json_text(payload, "city")),
            "country": blank_to_null(json_text(payload, "country")),
        }

    @staticmethod
    def _found(conn: Connection, tenant: str, match: _Match, *, whole: bool) -> dict[str, int | float]:
        """What this application found (conflicts, ambiguous emails, links to deleted students)
        and, applying everything, how the link stands over the whole table. (Counting the whole
        table after a handful of changes would cost more than applying them.)"""
        c, w = match.candidates.c, match.winners.c
        won = select(literal(1)).where(w.zoho_id == c.zoho_id, w.user_id == c.user_id).exists()
        conflicts = conn.execute(select(func.count()).where(c.zoho_id.is_not(None), ~won)).scalar_one()
        ambiguous = conn.execute(select(func.count()).where(c.zoho_id.is_(None))).scalar_one()
        deleted_student = (
            select(literal(1))
            .where(Z.tenant_id == tenant, Z.zoho_id == w.zoho_id, Z.deleted, Z.deleted_at.is_(None))
            .exists()
        )
        to_deleted = conn.execute(select(func.count()).select_from(match.winners).where(deleted_student)).scalar_one()
        found: dict[str, int | float] = {
            "ambiguous_emails": ambiguous,
            "identity_conflicts": conflicts,
            "linked_to_deleted": to_deleted,
        }
        if not whole:
            return found
        s = students.c
        live = [s.tenant_id == tenant, s.deleted_at.is_(None)]
        by_rule = dict(
            conn.execute(
                select(func.coalesce(s.identity_match, "none"), func.count()).where(*live).group_by(s.identity_match)
            ).all()
        )
        zoho_only = conn.execute(
            select(func.count()).where(*live, s.zoho_id.is_not(None), s.identity_match.is_(None))
        ).scalar_one()
        total, unmatched = sum(by_rule.values()), by_rule.get("none", 0)
        return {
            **{f"matched_by_{rule}": by_rule.get(rule, 0) for rule in MATCH_RULES},
            "zoho_only": zoho_only,
            "moodle_only": unmatched - zoho_only,
            "unmatched_share": round(unmatched / total, 4) if total else 0.0,
            **found,
        }


TABLE = Students()
