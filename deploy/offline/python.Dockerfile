# Stand-in for python:3.11-slim-bookworm where no image registry is reachable (scripts/docker):
# Debian's own Python 3.11 in a virtualenv that comes first on PATH, so `python` and `pip` are
# where the Klaspost Dockerfile expects them.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local/python
# pip trusts certifi's roots; the base image's system bundle also holds the local proxy's CA.
ENV PATH=/usr/local/python/bin:$PATH \
    LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
