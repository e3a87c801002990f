# Stand-in for axllent/mailpit where no image registry is reachable (scripts/docker): maildev 2
# (from npm, on Debian's Node.js 18; maildev 3 needs Node 20) on mailpit's ports, SMTP 1025 and
# web 8025. It has its own API: GET /api/email lists the caught mails (scripts/docker-smoke reads
# either). npm is needed to install only, so it stays in the first stage.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE} AS install
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN npm install --prefix /opt/maildev --omit=dev --no-audit --no-fund --loglevel=error maildev@2.2.1

FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends nodejs \
    && rm -rf /var/lib/apt/lists/*
COPY --from=install /opt/maildev /opt/maildev
USER nobody
EXPOSE 1025 8025
CMD ["node", "/opt/maildev/node_modules/maildev/bin/maildev", "--smtp", "1025", "--web", "8025", "--ip", "0.0.0.0"]
HEALTHCHECK --interval=5s --timeout=5s --retries=12 \
    CMD ["node", "-e", "require('http').get('http://127.0.0.1:8025/healthz', r => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))"]
