"""Exactly once under failure, CI-sized: 2,000 events (10% repeats, 1% malformed, out-of-order
updates), the processing worker SIGKILLed three times part-way, then recovered; the warehouse
equals an independent replay (bench/exactly_once.py runs the same at 20,000)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "exactly_once.py"


@pytest.fixture(scope="module")
def exactly_once():
    spec = importlib.util.spec_from_file_location("exactly_once", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sigkilled_processing_recovers_to_exactly_the_replay(exactly_once, warehouse_url, tmp_path):
    outcome = exactly_once.run(warehouse_url, tmp_path, events=2_000, kills=3, batch_size=250)
    assert outcome["problems"] == []
    assert outcome["killed"] == 3  # each kill landed while the worker was still applying
    assert outcome["valid_events"] == 2_000 and outcome["quarantined"] == 20
    assert outcome["grades"] > 100 and outcome["completions"] > 50  # the replay compared something


def test_the_replay_check_catches_a_lost_event(exactly_once, warehouse_url, tmp_path):
    """The check is not vacuous: with every copy of one event's file removed, it fails."""
    from integration_pipelines.lib.events.inbox import EventsInbox

    exactly_once.seed_college(warehouse_url)
    inbox = EventsInbox.at(tmp_path / "events" / "inbox")
    generated = exactly_once.generate(300, seed=3)
    valid_ids, malformed = exactly_once.drop(inbox, generated, seed=3)
    newest = max((e for e in generated if e["eventname"].endswith("user_graded")), key=lambda e: e["timecreated"])
    marker = f'"timecreated":{newest["timecreated"]}'
    for path in inbox.inbox.iterdir():
        if marker in path.read_text():
            path.unlink()
    exactly_once.worker(warehouse_url, str(inbox.inbox), 100)
    outcome = exactly_once.check(warehouse_url, inbox, generated, valid_ids, malformed)
    assert any("log holds" in p for p in outcome["problems"])


@pytest.mark.parametrize("order", [(0, 2, 1), (2, 0, 1), (1, 2, 0)])
def test_a_grade_deleted_twice_stays_deleted_whatever_arrives_between(exactly_once, warehouse_url, tmp_path, order):
    """Deleted at t1, given at t2, deleted again at t3, arriving in any order, one batch each:
    deleted. (Two deletions must differ in content, or the second one's time would not be kept.)"""
    import random

    from integration_pipelines.lib.events.inbox import EventsInbox

    exactly_once.seed_college(warehouse_url)
    rng = random.Random(5)
    events = [
        exactly_once.moodle_event("grade_deleted", rng, 1_000, 10_001, 0),
        exactly_once.moodle_event("user_graded", rng, 2_000, 10_001, 0),
        exactly_once.moodle_event("grade_deleted", rng, 3_000, 10_001, 0),
    ]
    inbox = EventsInbox.at(tmp_path / "events" / "inbox")
    for i in order:
        exactly_once.drop(inbox, [events[i]], seed=i)
        for path in inbox.inbox.glob("malformed-*"):
            path.unlink()
        exactly_once.worker(warehouse_url, str(inbox.inbox), 10)
    expected, _ = exactly_once.replay(events)
    assert expected == {}
    outcome = exactly_once.check(warehouse_url, inbox, events, set(), [])
    assert outcome["grades"] == 0
