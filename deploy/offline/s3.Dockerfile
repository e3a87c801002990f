# Stand-in for chrislusf/seaweedfs where no image registry is reachable (scripts/docker): Debian's
# OpenStack Swift with its S3 API (s3api), one replica, on SeaweedFS's S3 port 8333, with the admin
# credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY like SeaweedFS. Swift's access keys are
# account:user (S3_ACCESS_KEY=klaspost:media); signatures are checked, region us-east-1.
ARG BASE_IMAGE=local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends python3-swift memcached \
    && rm -rf /var/lib/apt/lists/* \
    && id swift > /dev/null \
    && mkdir -p /data /etc/swift \
    && chown swift:swift /data /etc/swift
COPY s3-start /usr/local/bin/s3-start
USER swift
EXPOSE 8333
CMD ["s3-start"]
