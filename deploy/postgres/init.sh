#!/bin/sh
# Runs once, when the postgres container starts on an empty data volume (docker-entrypoint-initdb.d).
# Each service gets its own login role and its own database, owned by that role, and PUBLIC loses the
# right to connect: no service can read another's tables. Passwords come from <SERVICE>_DB_PASSWORD
# in the container's environment (docker-compose.yml, deploy/env.example).
# POSIX sh without `set -u`: the entrypoint sources this file in bash when it is not executable.

SERVICES="identity posts media notifier"

password_of() {
    eval "printf '%s' \"\${$(echo "$1" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD:-}\""
}

# Check every password before creating anything: a failed first start leaves a data volume that the
# entrypoint will not initialise again.
for service in $SERVICES; do
    if [ -z "$(password_of "$service")" ]; then
        echo "init.sh: $(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD is empty" >&2
        exit 1
    fi
done

for service in $SERVICES; do
    # psql fills in :"name" (an identifier) and :'password' (a literal), quoting both itself.
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        -v name="$service" -v password="$(password_of "$service")" <<'SQL' || exit 1
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
done
