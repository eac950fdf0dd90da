"""The code location loads, and a broken field mapping stops it loading with a message that says where."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mappings"


def load_code_location(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from integration_pipelines.definitions import defs; defs.resolve_asset_graph()"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_code_location_loads_with_the_default_mapping():
    loaded = load_code_location()
    assert loaded.returncode == 0, loaded.stderr[-2000:]


def test_a_broken_mapping_file_stops_the_load_naming_file_line_and_field():
    broken = FIXTURES / "bad_unknown_transform.yaml"
    line = next(n for n, text in enumerate(broken.read_text().splitlines(), 1) if "<- error" in text)
    loaded = load_code_location(FIELD_MAPPING_FILE=str(broken))
    assert loaded.returncode != 0
    assert f"bad_unknown_transform.yaml:{line}:" in loaded.stderr
    assert "transform" in loaded.stderr.splitlines()[-1] or "unknown transform" in loaded.stderr
