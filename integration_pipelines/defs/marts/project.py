"""The dbt project (`dbt_models/`), how dbt runs, and what lets dbt skip re-parsing it.

dbt runs inside the step's process (dbt's `dbtRunner`), never in a process of its own. The run's
process has already imported dbt with the code location (`@dbt_assets` reads the manifest), and
a process of dbt's own imported it again and held a second copy beside the run: 109 MB of a
25,000-student sync's peak memory (docs/benchmarks.md, "dbt inside the step's process"), and
most of an event batch's refresh (3.2 s to 0.5 s at 2,000 students). And a run killed without
a trace (SIGKILL, the OOM killer) takes its dbt with it: no build goes on writing marts for a run
that no longer exists, and its open transaction is never committed.

dbt could not reuse its previous parse of the project: each invocation writes into a fresh target
directory, seeded with the parse made when the code location loaded, whose profile (the default
SQLite path, read before the run's warehouse was known) differed from the run's, so dbt said
"Unable to do partial parsing because profile has changed" and parsed the project whole (2 s at
5,000 students). So each build starts from the last parse made with the same profile
(`PartialParseCache`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster_dbt import DbtProject
from filelock import FileLock

from integration_pipelines.lib.warehouse.dbt_env import dbt_environment
from integration_pipelines.settings import get_settings

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_models"
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# dbt's structured events that report a node's result: what dagster-dbt turns into Dagster events.
RESULT_EVENTS = frozenset({"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"})
FAILED = frozenset({"error", "fail", "runtime error"})


@functools.cache
def get_dbt_project() -> DbtProject:
    """The dbt project, with a manifest ready for `@dbt_assets` (parsed once per process at most).

    `@dbt_assets` reads `target/manifest.json` when the definitions load. Under `dagster dev` the
    project is parsed again on each load (models may have changed); everywhere else (validate,
    run workers, tests, CI) only when no manifest exists yet, or when the project's files are not
    those it was parsed from (a checkout that pulled new models would otherwise load a manifest
    that lacks them).
    """
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    stamp = project.manifest_path.parent / "manifest.sources"

    def stale() -> bool:
        if project.preparer.using_dagster_dev() or not project.manifest_path.exists():
            return True
        return not stamp.exists() or stamp.read_text() != project_sources_digest(project.project_dir)

    if stale():
        with FileLock(project.manifest_path.parent / "manifest.lock", timeout=300):
            if stale():
                digest = project_sources_digest(project.project_dir)
                parse_project(project, dbt_environment(get_settings().warehouse_url))
                stamp.write_text(digest)
    return project


def project_sources_digest(project_dir: Path) -> str:
    """A digest of the files dbt parses (models, macros, tests, seeds, snapshots, project and
    profiles): what a manifest was made from."""
    digest = hashlib.sha256()
    for path in sorted(project_dir.rglob("*")):
        relative = path.relative_to(project_dir)
        if not path.is_file() or relative.parts[0] in ("target", "logs", "dbt_packages"):
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def parse_project(project: DbtProject, profile_env: Mapping[str, str]) -> None:
    """`dbt parse` into the project's target directory, with the profile of the configured warehouse
    (so that the first build can reuse this parse)."""
    target = project.project_dir / project.target_path
    cache = PartialParseCache(project, profile_env)
    cache.seed(target)
    run_dbt(project, ["parse"], target, profile_env).raise_on_failure()
    cache.keep(target)


@dataclass(frozen=True)
class DbtOutcome:
    """What one dbt invocation did: its nodes' result events (dbt's structured events, as
    `--log-format json` writes them, which dagster-dbt turns into Dagster events), a line per
    node for a run's log (name, status, seconds, and dbt's message: a failed model's error),
    whether dbt had to parse the project whole, and why it failed (None when it succeeded)."""

    results: list[dict[str, Any]]
    nodes: list[str]
    reparsed: bool
    error: str | None

    def raise_on_failure(self) -> None:
        if self.error is not None:
            raise DbtError(self.error)


class DbtError(RuntimeError):
    """dbt failed: the message names the failed nodes, or dbt's own error, and its log."""


def run_dbt(project: DbtProject, args: Sequence[str], target_path: Path, profile_env: Mapping[str, str]) -> DbtOutcome:
    """Run dbt inside this process: `args` (a dbt command and its flags) on the project, writing
    its artifacts and its log into `target_path`, with the warehouse's profile environment set
    for that moment only. dbt's events are collected as they fire, not printed."""
    from dbt.cli.main import dbtRunner
    from dbt_common.events.base_types import EventMsg
    from dbt_common.events.functions import msg_to_dict

    results: list[dict[str, Any]] = []
    reparsed: list[bool] = []

    def collect(event: EventMsg) -> None:
        name = event.info.name
        if name in RESULT_EVENTS:
            results.append(msg_to_dict(event))
        elif name == "UnableToPartialParse":
            reparsed.append(True)

    paths = ["--project-dir", str(project.project_dir), "--profiles-dir", str(project.profiles_dir)]
    paths += ["--target-path", str(target_path), "--log-path", str(target_path)]
    with _environment(profile_env):
        outcome = dbtRunner(callbacks=[collect]).invoke([*args, *paths, "--quiet"])
    ran = getattr(outcome.result, "results", None) or []
    nodes = [
        f"{r.node.name}: {r.status} in {r.execution_time:.2f} s" + (f" ({r.message})" if r.message else "") for r in ran
    ]
    error = None
    if not outcome.success:
        failed = "; ".join(line for line, r in zip(nodes, ran, strict=True) if str(r.status) in FAILED)
        error = f"dbt {args[0]} failed (its log: {target_path / 'dbt.log'}): {failed or outcome.exception}"
    return DbtOutcome(results, nodes, bool(reparsed), error)


@contextmanager
def _environment(extra: Mapping[str, str]) -> Iterator[None]:
    """dbt reads its profile from this process's environment: set the variables for one
    invocation, then put the environment back."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def invocation_target_path(project: DbtProject, step_name: str, run_id: str) -> Path:
    """A target directory of one dbt invocation (dagster-dbt's naming), so runs never share artifacts."""
    return project.project_dir / project.target_path / f"{step_name}-{run_id[:7]}-{uuid.uuid4().hex[:7]}"


class PartialParseCache:
    """dbt's last parse of the project under one profile, kept between invocations.

    dbt reuses a parse (`partial_parse.msgpack`) only when the profile's connection details are the
    ones it was made with; the marts' profile follows the warehouse URL. Each profile gets its own
    file, named by a hash of its environment (which holds the password, so only the hash is kept).
    A build copies it into its own target directory and, once it succeeds, replaces it with the parse
    it made, atomically, so concurrent runs never read half a file.
    """

    def __init__(self, project: DbtProject, profile_env: Mapping[str, str]):
        digest = hashlib.sha256(json.dumps(sorted(profile_env.items())).encode()).hexdigest()[:16]
        self.directory = project.project_dir / project.target_path / "partial_parse"
        self.path = self.directory / f"{digest}.msgpack"

    def seed(self, target_path: Path) -> bool:
        """Start `target_path` from the kept parse, if there is one and the target has none."""
        destination = target_path / PARTIAL_PARSE_FILE
        if not self.path.exists() or destination.exists():
            return False
        target_path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, destination)
        return True

    def keep(self, target_path: Path) -> None:
        """Keep the parse an invocation wrote into `target_path`."""
        source = target_path / PARTIAL_PARSE_FILE
        if not source.exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.directory, suffix=".tmp", delete=False) as tmp:
            with open(source, "rb") as parsed:
                shutil.copyfileobj(parsed, tmp)
        os.replace(tmp.name, self.path)
