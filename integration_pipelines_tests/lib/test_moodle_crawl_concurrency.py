"""The snapshot crawl keeps `concurrency` requests in flight in every phase (enrolled users, users
by id, grade reports, users' courses and completion statuses), never more, and answers the same
whatever the concurrency."""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter, defaultdict

import httpx

from integration_pipelines_tests.lib.test_moodle_client import FakeSite, form, make_client


class InFlight:
    """Wraps a fake site: each answer takes `delay` seconds, and for each wsfunction it notes the
    most requests (of any function) in flight at once while one of its own was."""

    def __init__(self, site: FakeSite, delay: float = 0.02) -> None:
        self.site, self.delay = site, delay
        self.lock = threading.Lock()
        self.running: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.most = 0
        self.in_flight_at_start: defaultdict[str, list[int]] = defaultdict(list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        fn = form(request)["wsfunction"]
        with self.lock:
            self.running[fn] += 1
            now = sum(self.running.values())
            self.most = max(self.most, now)
            self.in_flight_at_start[fn].append(now)
            for running in [f for f, n in self.running.items() if n]:
                self.peak[running] = max(self.peak[running], now)
        try:
            time.sleep(self.delay)
            return self.site(request)
        finally:
            with self.lock:
                self.running[fn] -= 1


def test_every_phase_of_a_crawl_keeps_concurrency_requests_in_flight() -> None:
    site = InFlight(FakeSite(n_courses=16, n_users=2000, per_course=200))
    client, _ = make_client(site, page_size=50, user_batch_size=20)
    records = list(client.crawl_snapshot(enrolment_status=True, concurrency=4))
    assert site.most == 4, "never more than concurrency"
    for fn in ("core_enrol_get_enrolled_users", "core_user_get_users_by_field", "gradereport_user_get_grade_items"):
        assert site.peak[fn] == 4, fn
    assert {r.kind for r in records} == {"course", "enrolment", "user", "grade"}


def test_users_are_fetched_concurrently_even_when_no_course_is_left_to_read() -> None:
    # One course holds every user: once it is read, only user batches remain.
    site = InFlight(FakeSite(n_courses=1, n_users=400, per_course=400))
    client, _ = make_client(site, user_batch_size=25)
    records = list(client.crawl_snapshot(grades=False, concurrency=4))
    assert site.peak["core_user_get_users_by_field"] == 4
    assert sorted(r.id for r in records if r.kind == "user") == sorted(site.site.users)


def test_completions_are_read_concurrently_and_in_order() -> None:
    # Each user's courses, then the completion status of those completed since the last crawl
    # (and of the suspended enrolments): all on the one pool, `concurrency` in flight.
    site = InFlight(FakeSite(n_courses=3, n_users=40, per_course=20))
    client, _ = make_client(site)
    known = {(10, u) for u in range(1000, 1040, 4)}
    crawl = {"grades": False, "enrolment_status": True, "completions": "per_user", "known_completed": known}
    records = list(client.crawl_snapshot(**crawl, concurrency=4))
    assert site.most == 4
    assert site.peak["core_enrol_get_users_courses"] == 4
    assert site.peak["core_completion_get_course_completion_status"] == 4
    sequential, _ = make_client(FakeSite(n_courses=3, n_users=40, per_course=20))
    assert records == list(sequential.crawl_snapshot(**crawl))
    assert any(r.kind == "completion" and r.completed for r in records)


def test_the_completion_phase_keeps_most_of_concurrency_in_flight() -> None:
    # A user's completion statuses were queued only when the consumer reached the user, and were
    # then nearly all that was in flight: a median of 3 requests of 8 for the users' courses and 2
    # for the statuses. Queued as soon as the user's courses answer, 8 and 6.
    site = InFlight(FakeSite(n_courses=6, n_users=200, per_course=60))
    client, _ = make_client(site)
    crawl = {"grades": False, "enrolment_status": True, "completions": "per_user"}
    records = list(client.crawl_snapshot(**crawl, concurrency=8))
    assert statistics.median(site.in_flight_at_start["core_enrol_get_users_courses"]) >= 6
    assert statistics.median(site.in_flight_at_start["core_completion_get_course_completion_status"]) >= 4
    sequential, _ = make_client(FakeSite(n_courses=6, n_users=200, per_course=60))
    assert records == list(sequential.crawl_snapshot(**crawl))


def _crawl_asking_only_suspended(site_size: dict[str, int], **crawl: object) -> tuple[FakeSite, InFlight]:
    """A crawl at 8 in flight that knows every open enrolment's completion, so that only the
    suspended enrolments are asked their completion status; its records equal a sequential crawl's."""
    fake = FakeSite(**site_size)
    site = InFlight(fake)
    client, _ = make_client(site)
    others_known = {(c["id"], u) for c in fake.courses for u in fake.enrol[c["id"]]} - fake.suspended
    crawl = {**crawl, "enrolment_status": True, "completions": "per_user", "known_completed": others_known}
    records = list(client.crawl_snapshot(**crawl, concurrency=8))
    sequential, _ = make_client(FakeSite(**site_size))
    assert records == list(sequential.crawl_snapshot(**crawl))
    return fake, site


def test_a_courses_suspended_enrolments_are_asked_their_completion_side_by_side() -> None:
    # Moodle lists a user's active enrolments only, so each suspended one is asked its completion
    # status. One task asked a course's one after another: a median of 1 request in flight at
    # each one's start. Now the first answer (does the course track completion?) is followed by
    # the others side by side.
    fake, site = _crawl_asking_only_suspended({"n_courses": 6, "n_users": 200, "per_course": 60}, grades=False)
    statuses = site.in_flight_at_start["core_completion_get_course_completion_status"]
    assert len(statuses) == len(fake.suspended)  # the suspended enrolments' only
    assert statistics.median(statuses) >= 4


def test_suspended_enrolments_are_asked_as_soon_as_their_course_is_read() -> None:
    # Across many courses: a course's suspended enrolments were asked their completion status only
    # when the crawl's consumer reached the course, and were then nearly all that was in flight (a
    # median of 4 of 8 at each one's start; against the sandbox with answers held 0.25 s, 3-4 in
    # flight for the whole course phase). Asked as soon as the course's suspended set is known: 8.
    _, site = _crawl_asking_only_suspended({"n_courses": 30, "n_users": 300, "per_course": 40})
    assert site.most == 8
    assert statistics.median(site.in_flight_at_start["core_completion_get_course_completion_status"]) >= 7


def test_a_crawl_stopped_early_cancels_what_it_queued() -> None:
    site = InFlight(FakeSite(n_courses=40, n_users=400, per_course=50), delay=0.005)
    client, _ = make_client(site)
    crawl = client.crawl_snapshot(concurrency=4)
    assert next(crawl).kind == "course"
    crawl.close()
    asked = len(site.site.calls)
    time.sleep(0.05)
    assert len(site.site.calls) == asked, "nothing is sent once the crawl is closed"
    assert asked < 1 + 3 * 40
