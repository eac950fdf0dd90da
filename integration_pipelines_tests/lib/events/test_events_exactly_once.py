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
