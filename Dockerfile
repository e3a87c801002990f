# One image recipe for all four services; SERVICE picks which one an image holds and runs:
#   docker build --build-arg SERVICE=posts -t klaspost-posts .
# The services share shared/ and one lock file, so four copies of this file would only drift apart.
# PYTHON_IMAGE: where no registry is reachable, scripts/docker builds a stand-in from Debian's
# Python 3.11 (deploy/offline/python.Dockerfile) and passes it here.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# requirements.lock also pins the development tools and what only they need. No runtime package depends
# on these, so dropping their lines cannot take anything the services need; `--no-deps` plus `pip check`
# fail the build if that ever stops being true, and tests/test_compose.py checks it before a build.
# The lock writes some names with _ and some with -: the pattern below takes either.
# mypy-boto3-s3 is not in the list: media imports its S3Client type at run time.
ARG DEV_PACKAGES="pytest pytest-asyncio pytest-timeout iniconfig pluggy Pygments ruff mypy mypy-extensions ast-serialize librt pathspec boto3-stubs botocore-stubs types-PyYAML types-s3transfer aiosmtpd atpublic PyYAML schemathesis hypothesis hypothesis-graphql graphql-core harfile pyrate-limiter jsonschema-rs click rich markdown-it-py mdurl Werkzeug sortedcontainers anyio packaging"

# MALLOC_ARENA_MAX: glibc's per-thread malloc arenas fragment badly under libvips' threads (media).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HTTP_HOST=0.0.0.0 \
    MALLOC_ARENA_MAX=2

WORKDIR /app

SHELL ["/bin/bash", "-eo", "pipefail", "-c"]

# Before ARG SERVICE, so that the four images share this layer (one pip install, not four).
# media draws a school's "do not share" watermark with libvips' text rendering (Pango), which needs
# fontconfig's configuration and a font; the slim image has neither (scripts/install installs the
# same font on a development machine). A few MB, so every image has them rather than a fifth layer.
# Rendering a text once as root writes fontconfig's cache where the unprivileged user can read it but
# not write it: without it, every media worker scans the fonts and logs "No writable cache directories".
COPY requirements.lock /tmp/requirements.lock
RUN names=${DEV_PACKAGES// /|}; \
    grep -viE "^(${names//[-_]/[-_.]})==" /tmp/requirements.lock > /tmp/runtime.txt; \
    pip install --no-cache-dir --no-deps -r /tmp/runtime.txt; \
    pip check; \
    rm /tmp/requirements.lock /tmp/runtime.txt; \
    apt-get update; \
    apt-get install -y --no-install-recommends fontconfig-config fonts-dejavu-core; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    python -c "import pyvips; pyvips.Image.text('x', font='DejaVu Sans 10')"; \
    groupadd --system --gid 10001 klaspost; \
    useradd --system --uid 10001 --gid klaspost --no-create-home --shell /usr/sbin/nologin klaspost

COPY shared/ shared/

ARG SERVICE
ENV PYTHONPATH=/app:/app/services/${SERVICE} \
    KLASPOST_SERVICE=${SERVICE}
COPY services/${SERVICE}/${SERVICE}/ services/${SERVICE}/${SERVICE}/

# Importing the app proves at build time that the image holds everything the service imports; the
# default port is written down for the health check, which must not need the service's settings.
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=identity|posts|media|notifier" >&2; exit 1; }; \
    python -c "import ${SERVICE}.app; from ${SERVICE}.settings import Settings; print(Settings.model_fields['http_port'].default)" > /app/default-http-port

USER 10001:10001

# Liveness only (the process answers); docker-compose.yml checks readiness (/readyz) instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('HTTP_PORT') or open('/app/default-http-port').read().strip(); urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# exec: python becomes PID 1 and gets the SIGTERM that aiohttp turns into a graceful shutdown.
CMD ["sh", "-c", "exec python -m \"$KLASPOST_SERVICE\""]
