# Stand-in for rabbitmq:3.13-management where no image registry is reachable (scripts/docker):
# Debian's RabbitMQ 3.10 with the management plugin; its entrypoint makes RABBITMQ_DEFAULT_USER and
# RABBITMQ_DEFAULT_PASS the broker's user, as the official image does.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/* \
    && rabbitmq-plugins enable --offline rabbitmq_management > /dev/null \
    && chown -R rabbitmq:rabbitmq /etc/rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
COPY rabbitmq-entrypoint /usr/local/bin/docker-entrypoint
ENV HOME=/var/lib/rabbitmq \
    RABBITMQ_LOGS=-
USER rabbitmq
EXPOSE 5672 15672
ENTRYPOINT ["docker-entrypoint"]
CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
