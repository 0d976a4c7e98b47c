#!/bin/sh
# The imaging_db image's entrypoint: when a database login is mounted ($IMAGING_DB_LOGIN names the file),
# bring the database's schema up to date, then run the command (Jupyter Lab by default).
#   IMAGING_DB_MIGRATE=0 skips the migration (e.g. to run an older image against a newer database read-only).
# The migration's report goes to stderr, so that a command's own output (query_data --format json) stays clean.
set -eu

if [ -n "${IMAGING_DB_LOGIN:-}" ]; then
    if [ ! -f "$IMAGING_DB_LOGIN" ] || [ ! -r "$IMAGING_DB_LOGIN" ]; then
        echo "imaging_db: IMAGING_DB_LOGIN is $IMAGING_DB_LOGIN, which is not a file that uid $(id -u) can read:" \
             "mount the login JSON there (readable by this uid, see IMAGING_DB_UID), or unset IMAGING_DB_LOGIN" >&2
        exit 2
    fi
    if [ "${IMAGING_DB_MIGRATE:-1}" != "0" ]; then
        imaging_db_migrate --login "$IMAGING_DB_LOGIN" >&2
    fi
fi

if [ "$#" -eq 0 ]; then
    echo "imaging_db: no command to run" >&2
    exit 2
fi
exec "$@"
