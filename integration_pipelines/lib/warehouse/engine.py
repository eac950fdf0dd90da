"""Engines for both warehouse backends, and the versioned schema they share."""

from __future__ import annotations

import fcntl
import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from integration_pipelines.lib.warehouse.sql import register_sqlite_functions

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

# How long a SQLite writer waits for another writer before failing. WAL lets readers (the API)
# carry on during a sync, but SQLite has one writer at a time, and each sync step writes in one
# transaction (its rows land together or not at all). Two runs at once (a manual backfill during
# the nightly sync, say) take turns, and on a large college one holds the write lock for minutes:
# the other must wait that long rather than fail. PostgreSQL has no such limit.
SQLITE_BUSY_TIMEOUT_MS = 30 * 60 * 1000

# Execution option marking a transaction that will write (see `begin_write`).
_WRITES = "integration_pipelines_writes"
_STEPPED = "integration_pipelines.write_in_steps"


def normalise_url(url: str) -> str:
    """Pick the driver we ship for PostgreSQL (psycopg 3) when the URL names none."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def create_warehouse_engine(url: str, **kwargs) -> Engine:
    """An engine for the warehouse at `url`: a SQLite file (WAL) or PostgreSQL (psycopg 3)."""
    # Canonical steps decode every raw payload they apply: orjson does it several times faster.
    kwargs.setdefault("json_deserializer", orjson.loads)
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_sqlite_transaction)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write, committed when the block ends (rolled back on an error);
    then the tables it wrote in bulk have their statistics refreshed (`refresh_statistics`).

    On SQLite it takes the write lock when it begins (`BEGIN IMMEDIATE`), waiting its turn behind
    another writer. A transaction that only took the lock at its first write would fail at once,
    busy timeout or not, whenever another writer committed after its first read: SQLite cannot
    let it write on top of data it read before that commit. Sync steps read, then write.
    """
    with engine.execution_options(**{_WRITES: True}).begin() as conn:
        counted = rows_written(conn)
        counted.clear()
        yield conn
        written = dict(counted)
    refresh_statistics(engine, written)


@contextmanager
def write_in_steps(engine: Engine) -> Iterator[Connection]:
    """A connection for a long write that lands as it reads (a source snapshot): each
    `commit_step` ends a transaction and the next statement begins another, so that other writers
    (an event batch beside a sync) take their turn between steps instead of waiting for the whole
    read; the last step is committed when the block ends (rolled back on an error). Then, as for
    `begin_write`, the tables written in bulk have their statistics refreshed."""
    with engine.execution_options(**{_WRITES: True}).connect() as conn:
        conn.info[_STEPPED] = True
        counted = rows_written(conn)
        counted.clear()
        try:
            yield conn
            conn.commit()
        finally:
            del conn.info[_STEPPED]
        written = dict(counted)
    refresh_statistics(engine, written)


def commit_step(conn: Connection) -> None:
    """End a step of a `write_in_steps` connection; on any other connection, nothing (its
    transaction ends where it began)."""
    if conn.info.get(_STEPPED):
        conn.commit()


def rows_written(conn: Connection) -> Counter[str]:
    """Rows written per table in this connection's transaction (`begin_write` clears the count
    when one begins): what says which tables' statistics are worth refreshing."""
    return conn.info.setdefault("integration_pipelines.rows_written", Counter())


def _configure_sqlite_connection(dbapi_connection, _record) -> None:
    # SQLAlchemy's recipe for SQLite transactions: the driver's own handling (BEGIN only before
    # an INSERT, UPDATE or DELETE) is switched off, and `_begin_sqlite_transaction` begins each
    # transaction explicitly, so reads and writes of one transaction see one database.
    dbapi_connection.isolation_level = None
    register_sqlite_functions(dbapi_connection)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # NORMAL is durable across application crashes in WAL mode and much faster than FULL.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _begin_sqlite_transaction(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITES) else "BEGIN")


# Fewer rows than this written to a table in one transaction leave its statistics to autovacuum.
ANALYZE_MIN_ROWS = 1_000


def refresh_statistics(engine: Engine, rows_written: Mapping[str, int]) -> None:
    """Let PostgreSQL's planner see what a sync just wrote.

    Autovacuum analyses new rows only after a delay; until then the planner takes a freshly
    loaded table for an empty one and picks nested loops over seq scans, which turns the next
    step's joins (canonical lookups, reference checks) from milliseconds into seconds. So the
    tables a transaction wrote in bulk are analysed at once; a handful of changed rows (an
    incremental window) moves no plan and is left to autovacuum, since sampling a large table
    costs about a second each time. SQLite plans from its indexes alone and needs nothing here.
    """
    tables = sorted(t for t, n in rows_written.items() if n >= ANALYZE_MIN_ROWS)
    if engine.dialect.name == "postgresql" and tables:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE " + ", ".join(f'"{t}"' for t in tables)))


# Alembic is imported where the schema is checked, not with this module, so that a process that
# never checks it (the sandbox, a CLI command that only reads) does not pay ~0.1 s to import it.
# A process that will check it can import these ahead (the PostgreSQL executor's forkserver).
SCHEMA_CHECK_MODULES = ("alembic.command", "alembic.config", "alembic.runtime.migration", "alembic.script")


def _alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def schema_head() -> str:
    """The newest schema revision this code knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the migrations directory holds no revision"
    return head


def schema_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_schema(engine: Engine) -> None:
    """Bring the warehouse schema to the newest revision; a no-op when it is already there.

    Called on first use and after upgrades. Several processes (Dagster steps, the API) may call
    it at once, so the upgrade itself runs under a lock.
    """
    head = schema_head()
    if schema_revision(engine) == head:
        return
    with _migration_lock(engine):
        if schema_revision(engine) == head:
            return
        log.info("Upgrading the warehouse schema to %s", head)
        from alembic import command

        with begin_write(engine) as conn:
            config = _alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "head")


@contextmanager
def _migration_lock(engine: Engine):
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            # An arbitrary constant key: any process migrating this database takes the same lock.
            conn.execute(text("SELECT pg_advisory_lock(725301)"))
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(725301)"))
                conn.commit()
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
