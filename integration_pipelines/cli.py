"""`integration-pipelines`: the project's one console script (sandbox, demo, API)."""

from __future__ import annotations

import click

from integration_pipelines.settings import get_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="integration_pipelines")
def main() -> None:
    """Moodle and Zoho CRM into one warehouse under Dagster, with a student-profile API."""


@main.group()
def api() -> None:
    """The student-profile API (FastAPI)."""


@api.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8000, show_default=True, type=int)
def api_serve(host: str, port: int) -> None:
    """Serve the profile API on the configured warehouse."""
    import uvicorn

    from integration_pipelines.api import create_app

    uvicorn.run(create_app(get_settings()), host=host, port=port, log_level="info")


@main.command()
@click.option(
    "--students", default=200, show_default=True, type=click.IntRange(min=1), help="Size of the sandbox college."
)
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the sandbox college.")
def demo(students: int, seed: int) -> None:
    """Run the whole path once on the embedded default: sandbox, full_sync, a profile read."""
    from integration_pipelines.demo import run_demo

    run_demo(students=students, seed=seed)


@main.command("dagster-home")
def dagster_home() -> None:
    """Create DAGSTER_HOME (default: under the data directory) and print its path."""
    from integration_pipelines.dagster_home import ensure_dagster_home

    click.echo(ensure_dagster_home(get_settings().dagster_home))


def _mount_sandbox() -> None:
    # The sandbox is a development tool; production code paths never import it.
    from integration_pipelines.sandbox.cli import sandbox_group

    main.add_command(sandbox_group, name="sandbox")


_mount_sandbox()
