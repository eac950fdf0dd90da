"""`integration-pipelines`: the project's one console script (sandbox, demo, API, keys, events, doctor, sync)."""

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
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Processes serving requests: up to one per core (each reads on API_THREADS threads).",
)
@click.option("--access-log/--no-access-log", default=True, show_default=True, help="A log line per request.")
def api_serve(host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve the profile API on the configured warehouse."""
    import uvicorn

    # Each worker process builds the app from the environment's settings.
    uvicorn.run(
        "integration_pipelines.api:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level="info",
    )


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


@main.group()
def events() -> None:
    """The webhook events log: requeue dead events."""


@events.command("requeue")
@click.argument("event_ids", nargs=-1)
@click.option("--status", type=click.Choice(["dead", "failed"]), default="dead", show_default=True)
@click.option("--type", "event_type", help="Only events of this type, e.g. submission_graded.")
@click.option("--since", type=click.DateTime(), help="Only events received at or after this (UTC).")
@click.option("--until", type=click.DateTime(), help="Only events received before this (UTC).")
@click.option("--tenant", default=None, help="The tenant whose events these are. Default: TENANT_ID.")
def events_requeue(event_ids, status, event_type, since, until, tenant) -> None:
    """Requeue EVENT_IDS (or every event of --status matching the filters) of the tenant with
    fresh attempts; another tenant's events are left alone.

    The events_retry schedule applies them within a minute."""
    from datetime import UTC, datetime

    from integration_pipelines.lib.events.log import requeue
    from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema
    from integration_pipelines.lib.warehouse.engine import begin_write

    def utc(value):
        return value.replace(tzinfo=UTC) if value is not None else None

    settings = get_settings()
    engine = create_warehouse_engine(settings.warehouse_url)
    try:
        ensure_schema(engine)
        with begin_write(engine) as conn:
            count = requeue(
                conn,
                datetime.now(UTC),
                tenant_id=tenant or settings.tenant_id,
                event_ids=list(event_ids),
                statuses_=[status],
                event_type=event_type,
                since=utc(since),
                until=utc(until),
            )
    finally:
        engine.dispose()
    click.echo(f"Requeued {count} event(s).")


@main.group()
def keys() -> None:
    """API keys of the profile API: create (shown once), list, revoke."""


def _key_engine():
    from integration_pipelines.lib.warehouse import create_warehouse_engine, ensure_schema

    engine = create_warehouse_engine(get_settings().warehouse_url)
    ensure_schema(engine)
    return engine


@keys.command("create")
@click.option("--scope", type=click.Choice(["admin", "student"]), required=True, help="What the key may read.")
@click.option("--student", "student_key", default=None, help="For a student key: its student_key (zoho:<id>).")
@click.option("--tenant", default=None, help="Tenant of the key. Default: TENANT_ID.")
@click.option("--label", default=None, help="A note saying who holds the key.")
def keys_create(scope: str, student_key: str | None, tenant: str | None, label: str | None) -> None:
    """Create a key and print it once: only its hash is stored."""
    from integration_pipelines.lib.warehouse.api_keys import ApiKeyError, create_key
    from integration_pipelines.lib.warehouse.engine import begin_write

    engine = _key_engine()
    try:
        with begin_write(engine) as conn:
            key, plain = create_key(
                conn,
                tenant or get_settings().tenant_id,
                scope,
                student_key=student_key,
                label=label,  # type: ignore[arg-type]
            )
    except ApiKeyError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"key id {key.key_id} ({key.scope}, tenant {key.tenant_id}). The key, shown this once:", err=True)
    click.echo(plain)


@keys.command("list")
@click.option("--tenant", default=None, help="Only this tenant's keys.")
def keys_list(tenant: str | None) -> None:
    """List keys (never their secrets), revoked ones included."""
    from integration_pipelines.lib.warehouse.api_keys import list_keys

    engine = _key_engine()
    try:
        with engine.connect() as conn:
            found = list_keys(conn, tenant)
    finally:
        engine.dispose()
    for key in found:
        revoked = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        click.echo(
            f"{key.key_id}\t{key.tenant_id}\t{key.scope}\t{key.student_key or '-'}\t{revoked}\t{key.label or ''}"
        )


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key by its id: it fails from the next request on."""
    from integration_pipelines.lib.warehouse.api_keys import ApiKeyError, revoke_key
    from integration_pipelines.lib.warehouse.engine import begin_write

    engine = _key_engine()
    try:
        with begin_write(engine) as conn:
            key = revoke_key(conn, key_id)
    except ApiKeyError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        engine.dispose()
    click.echo(f"revoked {key.key_id}")


@main.command()
@click.option("--token-env", default="MOODLE_TOKEN", show_default=True, help="Environment variable holding the token.")
def doctor(token_env: str) -> None:
    """Check what the Moodle token can do: name each function its service lacks and each
    capability its user lacks (with the fields a sync would not see), and exit 1 if any."""
    import os

    from pydantic import SecretStr

    from integration_pipelines.lib.mapping import load_mapping
    from integration_pipelines.lib.moodle import MoodleClient, MoodleError
    from integration_pipelines.lib.moodle.capabilities import diagnose

    settings = get_settings()
    token = SecretStr(os.environ.get(token_env, "")) if token_env != "MOODLE_TOKEN" else settings.moodle_token
    crm_field = load_mapping(settings.field_mapping_file).identity.moodle_crm_field
    try:
        with MoodleClient(settings.moodle_url, token, max_attempts=2) as client:
            diagnosis = diagnose(client, crm_field=crm_field)
            requests = client.counter.total
    except MoodleError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(diagnosis.report())
    click.echo(f"({requests} requests to {settings.moodle_url})")
    if not diagnosis.ok:
        raise SystemExit(1)


@main.group()
def sync() -> None:
    """Run a job on the configured Dagster instance (its runs show in the UI), a line per step."""


@sync.command("full")
def sync_full() -> None:
    """full_sync: snapshot both sources, apply every raw record, rebuild the marts."""
    from integration_pipelines.sync_runs import run_job

    if not run_job("full_sync").success:
        raise SystemExit(1)


@sync.command("incremental")
@click.option("--partition", type=click.DateTime(["%Y-%m-%d"]), help="One daily window (UTC).")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]), help="First window of a range.")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Last window of a range (default: today).")
def sync_incremental(partition, first, last) -> None:
    """incremental_sync of one window, or of a range in one run (default: yesterday and today)."""
    from integration_pipelines.sync_runs import run_job, window_tags

    try:
        key, tags = window_tags(*(d.date() if d else None for d in (partition, first, last)))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not run_job("incremental_sync", partition_key=key, tags=tags).success:
        raise SystemExit(1)


def _mount_sandbox() -> None:
    # The sandbox is a development tool; production code paths never import it.
    from integration_pipelines.sandbox.cli import sandbox_group

    main.add_command(sandbox_group, name="sandbox")


_mount_sandbox()
