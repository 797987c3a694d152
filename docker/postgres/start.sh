#!/bin/sh
# Start PostgreSQL on $PGDATA: initialise it on first start (superuser $EMULATOR_POSTGRES_USER,
# password auth over the network), set the password from the environment on every start (so the
# state dir that started the deployment holds the one that works), then run the server.
set -eu
user="${EMULATOR_POSTGRES_USER:-emulator}"
password="${EMULATOR_POSTGRES_PASSWORD:-}"
case "$password" in
    "" ) echo "emulator-postgres: EMULATOR_POSTGRES_PASSWORD is empty; start it with" \
              "\`emulator up --docker --store postgres\` (which generates one) or set it" >&2; exit 64 ;;
    *[!A-Za-z0-9_-]* ) echo "emulator-postgres: EMULATOR_POSTGRES_PASSWORD may hold only letters," \
              "digits, _ and -" >&2; exit 64 ;;
esac
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile="$(mktemp)"
    printf '%s\n' "$password" > "$pwfile"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    # Reachable from the other Compose services (the port is not published on the host).
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
fi
echo "ALTER ROLE \"$user\" PASSWORD '$password'" | postgres --single -D "$PGDATA" postgres >/dev/null
exec postgres -D "$PGDATA"
