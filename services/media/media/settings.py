"""Media's settings: object storage, upload limits and processing."""

from pydantic import SecretStr

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8083
    token_audience: str = "klaspost-media"
    s3_endpoint_url: str
    # What clients reach the presigned links on; differs from S3_ENDPOINT_URL behind a proxy or in compose.
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key: str
    s3_secret_key: SecretStr
    s3_bucket_originals: str = "klaspost-originals"
    s3_bucket_variants: str = "klaspost-variants"
    photo_max_bytes: int = 25 * 1024 * 1024
    photo_max_pixels: int = 50_000_000
    photo_variants: list[int] = [2048, 1080, 320]
    photo_url_ttl_seconds: int = 300
    processing_workers: int = 1
