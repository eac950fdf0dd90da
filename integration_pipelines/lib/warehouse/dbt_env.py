"""The environment dbt's `profiles.yml` reads, derived from the warehouse URL.

The warehouse URL is the single source of truth: the syncs write through it, and dbt builds the
marts in the same database.

The password deliberately does *not* use dbt's `DBT_ENV_SECRET_` prefix. dbt replaces every
occurrence of such a value in all its output with `*****`, node ids included, so a password that
happens to be a substring of a model name ("student", say) corrupts the structured events
dagster-dbt reads, and the run fails. dbt never prints profile passwords, and the variable is
set only for the dbt invocation.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from integration_pipelines.lib.warehouse.engine import SQLITE_BUSY_TIMEOUT_MS


def dbt_environment(warehouse_url: str) -> dict[str, str]:
    url = make_url(warehouse_url)
    backend = url.get_backend_name()
    env = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    if backend == "sqlite":
        path = Path(url.database or "").resolve()
        env |= {
            "INTEGRATION_DBT_TARGET": "sqlite",
            "INTEGRATION_SQLITE_PATH": str(path),
            "INTEGRATION_SQLITE_DIR": str(path.parent),
            "INTEGRATION_SQLITE_BUSY_TIMEOUT_MS": str(SQLITE_BUSY_TIMEOUT_MS),
        }
    elif backend == "postgresql":
        env |= {
            "INTEGRATION_DBT_TARGET": "postgres",
            "INTEGRATION_PG_HOST": url.host or "127.0.0.1",
            "INTEGRATION_PG_PORT": str(url.port or 5432),
            "INTEGRATION_PG_USER": url.username or "",
            "INTEGRATION_PG_PASSWORD": url.password or "",
            "INTEGRATION_PG_DATABASE": url.database or "",
            "INTEGRATION_PG_SCHEMA": _last(url.query.get("schema", "public")),
        }
    else:
        raise ValueError(f"unsupported warehouse backend {backend!r}: use sqlite or postgresql")
    return env


def _last(value: str | tuple[str, ...]) -> str:
    """A URL query parameter's value (the last, where the URL repeats it)."""
    return value if isinstance(value, str) else value[-1]
