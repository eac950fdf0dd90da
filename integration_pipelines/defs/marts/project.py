"""The dbt project (`dbt_models/`), how dbt is started, and what lets dbt skip re-parsing it.

Where a `dbt build` under dagster-dbt spent its time, at 5,000 students on SQLite (8.4-9.0 s in all,
0.4 s of it dbt's four nodes): `dbt --version`, which dagster-dbt runs once per resource to learn
the engine (2.5 s: it asks PyPI for the latest release); a dbt adapter set up inside the step, for
row counts and column metadata this project never fetches (about 1 s); a full parse of the project in
every build (2 s), because dbt could not reuse its previous parse: each invocation writes into a
fresh target directory, seeded with the parse made when the code location loaded, whose profile
(the default SQLite path, read before the run's warehouse was known) differs from the run's, so dbt
said "Unable to do partial parsing because profile has changed". The rest is dbt's own start
(about 2 s of imports) and the build.

So: the resource states the engine version instead of asking (`ProjectDbtCliResource`), sets up no
adapter, and each build starts from the last parse made with the same profile (`PartialParseCache`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster_dbt import DbtCliResource, DbtProject
from filelock import FileLock
from packaging.version import Version

from integration_pipelines.defs.marts.launcher import MODULE as LAUNCHER_MODULE
from integration_pipelines.lib.warehouse.dbt_env import dbt_environment
from integration_pipelines.settings import get_settings

if TYPE_CHECKING:
    from dbt.adapters.base.impl import BaseAdapter

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt_models"
PARTIAL_PARSE_FILE = "partial_parse.msgpack"
# dbt runs on this interpreter, through the launcher: no PATH lookup, and it dies with its parent.
DBT_COMMAND: tuple[str, ...] = (sys.executable, "-m", LAUNCHER_MODULE)


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
    subprocess.run(
        [*DBT_COMMAND, "parse", "--quiet"],
        cwd=project.project_dir,
        env={
            **os.environ,
            **profile_env,
            "DBT_PROFILES_DIR": str(project.profiles_dir),
            "DBT_TARGET_PATH": str(target),
            "DBT_LOG_PATH": str(target),
        },
        check=True,
    )
    cache.keep(target)


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


class ProjectDbtCliResource(DbtCliResource):
    """dagster-dbt's dbt CLI resource, without two costs this project does not need.

    - The dbt engine is the dbt-core installed beside this interpreter (`DBT_COMMAND` runs it), so
      its version is read from the package metadata instead of running `dbt --version`.
    - No dbt adapter is set up inside the step: dagster-dbt uses it only to fetch row counts and
      column metadata (`fetch_row_counts`, `fetch_column_metadata`), which the marts do not call;
      dbt itself connects in its own process. dagster-dbt's invocation accepts no adapter.

    Both override private members of dagster-dbt (pinned in pyproject.toml); a test checks that they
    still exist, so an upgrade that renames them fails there rather than silently costing seconds.
    """

    @functools.cached_property
    def _cli_version(self) -> Version:
        return Version(installed_version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> BaseAdapter | None:  # pyright: ignore[reportIncompatibleMethodOverride]
        return None


def dbt_cli_resource(**overrides: Any) -> ProjectDbtCliResource:
    """The `dbt` resource of the code location: dbt started through the launcher, on this project."""
    project = get_dbt_project()
    executable, *flags = DBT_COMMAND
    return ProjectDbtCliResource(
        project_dir=str(project.project_dir),
        profiles_dir=str(project.profiles_dir),
        dbt_executable=executable,
        global_config_flags=list(flags),
        **overrides,
    )
