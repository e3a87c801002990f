# Stand-in for postgres:16 where no image registry is reachable (scripts/docker): Debian's
# PostgreSQL 15 with an entrypoint that does what the official image's does for Klaspost
# (deploy/offline/postgres-entrypoint): POSTGRES_PASSWORD, PGDATA=/var/lib/postgresql/data, the
# scripts in /docker-entrypoint-initdb.d on the first start, password logins over TCP.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /docker-entrypoint-initdb.d /var/lib/postgresql/data /var/run/postgresql \
    && chown postgres:postgres /var/lib/postgresql/data /var/run/postgresql
COPY postgres-entrypoint /usr/local/bin/docker-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    POSTGRES_USER=postgres \
    POSTGRES_DB=postgres
USER postgres
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["docker-entrypoint"]
CMD ["postgres"]
