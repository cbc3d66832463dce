#!/usr/bin/env bash
# Starts a real PostgreSQL server on the loopback for the tests of studies that several
# machines share (kiln tune --storage postgres://...), installing it from Debian's packages on
# a fresh machine; prints the URL of a database the tests may write to.
set -euo pipefail
if [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt-get install -y postgresql >/dev/null \
        || { apt-get update >/dev/null && apt-get install -y postgresql >/dev/null; }
fi
version=$(ls /etc/postgresql | sort -n | tail -1)
pg_isready -q || pg_ctlcluster "$version" main start >&2
for _ in $(seq 100); do pg_isready -q && break; sleep 0.2; done
pg_isready -q || { echo "PostgreSQL $version did not start" >&2; exit 1; }
as_postgres() { su postgres -c "$1"; }
as_postgres "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'kiln'\"" | grep -q 1 \
    || as_postgres "psql -qc \"CREATE ROLE kiln LOGIN PASSWORD 'kiln'\""
as_postgres "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'kiln_test'\"" | grep -q 1 \
    || as_postgres "createdb -O kiln kiln_test"
echo "postgres://kiln:kiln@localhost/kiln_test"
