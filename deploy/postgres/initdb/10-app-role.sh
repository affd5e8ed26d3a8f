#!/bin/sh
# Runs once, on the first start of the postgres container (empty data volume): the application's login role.
# It is not the owner and not BYPASSRLS, so row-level security applies to it; the migrations (run as the
# owner by the `migrate` service) grant it table privileges.  The password comes from the environment
# (MEDSPA_APP_PASSWORD in .env) and is passed as a psql variable, quoted by psql (:'...'), never inlined.
set -eu
: "${MEDSPA_APP_PASSWORD:?MEDSPA_APP_PASSWORD must be set}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
     -v app_password="$MEDSPA_APP_PASSWORD" -f /docker-entrypoint-initdb.d/app-role.sql.in
