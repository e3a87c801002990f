"""Photo storage in S3-compatible object storage: private buckets, server-made keys, and
short-lived presigned links as the only way out. boto3 blocks, so every call runs in a thread."""

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from mypy_boto3_s3 import S3Client

from media.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")


class StorageUnavailable(Exception):
    """Object storage did not do what was asked (unreachable, timed out, refused); try again later."""


class OriginalMissing(Exception):
    """The original asked for is not in storage (S3 404 / NoSuchKey): gone for good, so waiting for
    storage to come back would wait forever."""


_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def _in_thread(call: Callable[P, T]) -> Callable[P, Awaitable[T]]:
    """Run a blocking storage call in a thread; its failures become StorageUnavailable."""

    @functools.wraps(call)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await asyncio.to_thread(call, *args, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(repr(exc)) from exc

    return run


def _client(settings: Settings, endpoint: str) -> S3Client:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key.get_secret_value(),
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            max_pool_connections=16,
            # Swift's s3api predates the flexible checksums that boto3 sends by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def original_key(school_id: uuid.UUID, photo_id: uuid.UUID) -> str:
    return f"{school_id}/{photo_id}"


def variant_key(school_id: uuid.UUID, photo_id: uuid.UUID, size: int) -> str:
    return f"{school_id}/{photo_id}/{size}.jpg"


class PhotoStorage:
    def __init__(self, settings: Settings) -> None:
        self._s3 = _client(settings, settings.s3_endpoint_url)
        # Links are signed for the host clients reach, which behind a proxy is not ours.
        self._public = _client(settings, settings.s3_public_endpoint_url or settings.s3_endpoint_url)
        self.originals = settings.s3_bucket_originals
        self.variants = settings.s3_bucket_variants

    async def ensure_buckets(self) -> None:
        await asyncio.to_thread(self._ensure_buckets)

    def _ensure_buckets(self) -> None:
        for bucket in (self.originals, self.variants):
            try:
                self._s3.head_bucket(Bucket=bucket)
            except ClientError:
                self._s3.create_bucket(Bucket=bucket)

    async def put_original(self, key: str, path: str, content_type: str) -> None:
        """Store the file at `path` (streamed from disk) as an original. Raises StorageUnavailable."""
        await _in_thread(self._s3.upload_file)(
            path, self.originals, key, ExtraArgs={"ContentType": content_type}
        )

    async def download_original(self, key: str, path: str) -> None:
        """The original at `key` into the file at `path`. Raises OriginalMissing when storage answers that
        there is no such object, StorageUnavailable for any other failure."""
        try:
            await asyncio.to_thread(self._s3.download_file, self.originals, key, path)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                raise OriginalMissing(key) from exc
            raise StorageUnavailable(repr(exc)) from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(repr(exc)) from exc

    async def delete_original(self, key: str) -> None:
        """Delete an original; deleting one that is gone already succeeds (S3 semantics)."""
        await _in_thread(self._s3.delete_object)(Bucket=self.originals, Key=key)

    async def put_variant(self, key: str, data: bytes, content_type: str) -> None:
        await _in_thread(self._s3.put_object)(
            Bucket=self.variants,
            Key=key,
            Body=data,
            ContentType=content_type,
            ContentDisposition='inline; filename="klaspost-foto.jpg"',
            CacheControl="private, max-age=300",
        )

    async def delete_variant(self, key: str) -> None:
        await _in_thread(self._s3.delete_object)(Bucket=self.variants, Key=key)

    def presigned_variant_url(self, key: str, ttl_seconds: int) -> str:
        # Signing is local computation: no thread needed.
        return self._public.generate_presigned_url(
            "get_object", Params={"Bucket": self.variants, "Key": key}, ExpiresIn=ttl_seconds
        )

    async def put_attachment(self, key: str, path: str, content_type: str, disposition: str) -> None:
        """Store an accepted attachment (streamed from disk) in the bucket links are handed out for.
        Raises StorageUnavailable."""
        await _in_thread(self._s3.upload_file)(
            path,
            self.variants,
            key,
            ExtraArgs={
                "ContentType": content_type,
                "ContentDisposition": disposition,
                "CacheControl": "private, max-age=300",
            },
        )

    async def delete_attachment(self, key: str) -> None:
        """Delete an attachment; deleting one that is gone already succeeds (S3 semantics)."""
        await _in_thread(self._s3.delete_object)(Bucket=self.variants, Key=key)

    def presigned_attachment_url(
        self, key: str, ttl_seconds: int, content_type: str, disposition: str
    ) -> str:
        """A link that downloads the attachment: the response's type and disposition are fixed by the
        signature, so the browser saves the file rather than showing it in our origin."""
        return self._public.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.variants,
                "Key": key,
                "ResponseContentType": content_type,
                "ResponseContentDisposition": disposition,
                "ResponseCacheControl": "private, no-store",
            },
            ExpiresIn=ttl_seconds,
        )

    def close(self) -> None:
        self._s3.close()
        self._public.close()
