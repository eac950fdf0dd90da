#!/usr/bin/env bash
# Start the machine's PostgreSQL 15 and create the role and database the tests use.
#
# Idempotent: safe to run again. Needs root (or the postgres OS user) on a Debian-style install.
# The tests read TEST_POSTGRES_URL (default below) and create a throwaway database per run,
# so the role needs CREATEDB.
set -euo pipefail

ROLE="${TEST_POSTGRES_ROLE:-integration}"
PASSWORD="${TEST_POSTGRES_PASSWORD:-integration}"
DATABASE="${TEST_POSTGRES_DB:-integration_test}"
VERSION="${TEST_POSTGRES_VERSION:-15}"

if ! command -v pg_ctlcluster >/dev/null; then
  echo "pg_ctlcluster not found: install PostgreSQL ${VERSION} (apt-get install postgresql-${VERSION})" >&2
  exit 1
fi

if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
  pg_ctlcluster --skip-systemctl-redirect "$VERSION" main start
fi

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"; else su postgres -c "$(printf '%q ' "$@")"; fi
}

for _ in $(seq 1 30); do
  as_postgres psql -qtAc "SELECT 1" >/dev/null 2>&1 && break
  sleep 0.5
done

if [ "$(as_postgres psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname = '${ROLE}'")" != 1 ]; then
  as_postgres psql -qc "CREATE ROLE ${ROLE} LOGIN CREATEDB PASSWORD '${PASSWORD}'"
fi
if [ "$(as_postgres psql -qtAc "SELECT 1 FROM pg_database WHERE datname = '${DATABASE}'")" != 1 ]; then
  as_postgres psql -qc "CREATE DATABASE ${DATABASE} OWNER ${ROLE}"
fi
echo "PostgreSQL ready: postgresql+psycopg://${ROLE}:***@127.0.0.1:5432/${DATABASE}"
