#!/usr/bin/env bash
# The PostgreSQL tests need a server at IBEX_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test).
# These machines start one before a session; start it again if it has stopped. Each test makes and drops its own
# database, so nothing else is needed.
set -euo pipefail
url="${IBEX_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
if psql "$url" -qAtc 'select 1' >/dev/null 2>&1; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
  echo "[ensure-postgres] starting PostgreSQL" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do
    psql "$url" -qAtc 'select 1' >/dev/null 2>&1 && exit 0
    sleep 1
  done
fi
echo "[ensure-postgres] PostgreSQL is not reachable at $url" >&2
exit 1
