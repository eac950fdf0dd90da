"""``sandbox`` click group: ``serve``, ``mutate`` and ``truth``. Mounted by the project's console
script as ``integration-pipelines sandbox ...`` (this module only exposes ``sandbox_group``)."""

from __future__ import annotations

import json
import sys

import click
import httpx

from .config import SandboxConfig


@click.group(name="sandbox", help="Fake Moodle + Zoho CRM over a seeded, generated college.")
def sandbox_group() -> None:
    pass


@sandbox_group.command("serve")
@click.option("--students", default=500, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0 = any free port.")
@click.option("--fault-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option(
    "--response-delay",
    "response_delay",
    metavar="SECONDS",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Latency added to each Moodle and Zoho data request (not the token endpoint or /_sandbox).",
)
@click.option("--token-ttl-calls", default=None, type=click.IntRange(min=1), help="Zoho token dies after N calls.")
@click.option("--token-ttl-seconds", default=3600, show_default=True, type=click.IntRange(min=1))
@click.option("--webhook-url", default=None, help="POST each emitted Moodle event here.")
@click.option("--moodle-token", envvar="SANDBOX_MOODLE_TOKEN", default=None, help="Default: sandbox-moodle-token.")
@click.option("--zoho-client-id", envvar="SANDBOX_ZOHO_CLIENT_ID", default=None)
@click.option("--zoho-client-secret", envvar="SANDBOX_ZOHO_CLIENT_SECRET", default=None)
@click.option("--zoho-refresh-token", envvar="SANDBOX_ZOHO_REFRESH_TOKEN", default=None)
def serve_cmd(
    students: int,
    seed: int,
    host: str,
    port: int,
    fault_rate: float,
    response_delay: float,
    token_ttl_calls: int | None,
    token_ttl_seconds: int,
    webhook_url: str | None,
    moodle_token: str | None,
    zoho_client_id: str | None,
    zoho_client_secret: str | None,
    zoho_refresh_token: str | None,
) -> None:
    """Generate the college and serve both APIs in the foreground until Ctrl-C."""
    from .server import serve

    overrides = {
        k: v
        for k, v in {
            "moodle_token": moodle_token,
            "zoho_client_id": zoho_client_id,
            "zoho_client_secret": zoho_client_secret,
            "zoho_refresh_token": zoho_refresh_token,
        }.items()
        if v
    }
    config = SandboxConfig(
        students=students,
        seed=seed,
        host=host,
        port=port,
        fault_rate=fault_rate,
        response_delay_seconds=response_delay,
        token_ttl_calls=token_ttl_calls,
        token_ttl_seconds=token_ttl_seconds,
        webhook_url=webhook_url,
        **overrides,
    )
    click.echo(f"generating a college of {students} students (seed {seed}) ...", err=True)

    def ready(sandbox) -> None:  # noqa: ANN001
        # Secrets are not printed; the defaults are documented in the sandbox README.
        click.echo(f"Moodle wwwroot:     {sandbox.moodle_url}")
        click.echo(f"Moodle REST:        {sandbox.moodle_url}/webservice/rest/server.php")
        click.echo(f"Zoho API domain:    {sandbox.zoho_api_domain}")
        click.echo(f"Zoho accounts URL:  {sandbox.zoho_accounts_url}")
        click.echo(f"Control:            {sandbox.base_url}/_sandbox/ (mutate, events, truth, state)")
        sys.stdout.flush()

    serve(config, on_ready=ready)


@sandbox_group.command("mutate")
@click.option("--url", default="http://127.0.0.1:8765", show_default=True, help="Base URL of a running sandbox.")
@click.option("--advance-seconds", default=3600, show_default=True, type=int)
@click.option("--zoho-change-share", default=0.0, type=float)
@click.option("--zoho-delete-share", default=0.0, type=float)
@click.option("--zoho-new-students", default=0, type=int)
@click.option("--moodle-new-grades", default=0, type=int)
@click.option("--moodle-regrades", default=0, type=int)
@click.option("--moodle-overrides", default=0, type=int, help="Grades overridden in the gradebook, then regraded.")
@click.option("--moodle-suspend-enrolments", default=0, type=int)
@click.option("--moodle-user-updates", default=0, type=int)
@click.option("--moodle-completions", default=0, type=int)
@click.option("--moodle-delete-users", default=0, type=int)
@click.option("--json", "raw_json", default=None, help="A full MutateRequest as JSON (overrides the options).")
def mutate_cmd(url: str, raw_json: str | None, **params: float) -> None:
    """Advance time and change records in a running sandbox; prints the summary as JSON."""
    body = json.loads(raw_json) if raw_json else params
    resp = httpx.post(url.rstrip("/") + "/_sandbox/mutate", json=body, timeout=600)
    if resp.status_code != 200:
        raise click.ClickException(f"mutate failed ({resp.status_code}): {resp.text}")
    click.echo(json.dumps(resp.json(), indent=2))


@sandbox_group.command("truth")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="File to write ('-' = stdout).")
@click.option("--url", default=None, help="Read the truth of a running sandbox (else generate locally).")
@click.option("--students", default=500, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=7, show_default=True, type=int)
def truth_cmd(out: str, url: str | None, students: int, seed: int) -> None:
    """Write the ground truth ({"meta", "tables"}) of a running sandbox or of a fresh college."""
    stream = sys.stdout.buffer if out == "-" else open(out, "wb")
    try:
        if url:
            with httpx.stream("GET", url.rstrip("/") + "/_sandbox/truth", timeout=600) as resp:
                if resp.status_code != 200:
                    raise click.ClickException(f"truth failed ({resp.status_code})")
                for chunk in resp.iter_bytes():
                    stream.write(chunk)
        else:
            from .control import iter_truth_json
            from .server import SandboxApp

            app = SandboxApp(SandboxConfig(students=students, seed=seed), "http://127.0.0.1:0")
            for chunk in iter_truth_json(app):
                stream.write(chunk)
    finally:
        if stream is not sys.stdout.buffer:
            stream.close()
