"""Media's settings: object storage, upload limits and processing."""

from pydantic import Field, SecretStr

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
    # Tries per storage call (boto3's standard retries, with backoff) before StorageUnavailable.
    s3_max_attempts: int = 4
    photo_max_bytes: int = 25 * 1024 * 1024
    photo_max_pixels: int = 50_000_000
    photo_variants: list[int] = [2048, 1080, 320]
    # Presigned links live at most 5 minutes: long enough to load a page of photos, too short to pass on.
    photo_url_ttl_seconds: int = Field(default=300, ge=1, le=300)
    processing_workers: int = 1
    # Uploads are judged (a full decode) in the worker processes; this many at once, the rest wait.
    upload_checks_at_once: int = 2
    # A check that takes longer (from when its worker starts on it) is refused, its worker killed: a healthy
    # 50-megapixel photo takes a few seconds; a file made to keep decoders busy would hold a slot for minutes.
    upload_check_seconds: float = Field(default=30.0, gt=0)
    # Upload limits, answered with 429 and Retry-After: a class trip is a few hundred photos, not thousands.
    photo_uploads_per_person_per_hour: int = 300
    photo_unused_per_person: int = 500
    photo_uploads_per_school_per_hour: int = 3000
    # An upload no post has used by then is deleted (storage, then row); the clean-up runs this often.
    photo_unused_ttl_seconds: int = 24 * 3600
    photo_cleanup_every_seconds: float = 600.0
    # Photos past their school's retention (photo_retention_days after their school year) are purged this often.
    photo_retention_every_seconds: float = 3600.0
    # While storage is unreachable, processing tries again this often, for as long as it takes.
    storage_retry_seconds: float = 10.0
    # Attachments (the newsletter PDF): size limit (413), what the structural check accepts, the links'
    # life (at most 5 minutes), and upload limits like the photos' (429 with Retry-After).
    attachment_max_bytes: int = 20 * 1024 * 1024
    attachment_max_pages: int = 500
    # A newsletter has hundreds of objects; walking 50,000 takes about 3 s of one core.
    attachment_max_objects: int = 50_000
    attachment_check_seconds: float = 10.0
    attachment_url_ttl_seconds: int = Field(default=300, ge=1, le=300)
    attachment_uploads_per_person_per_hour: int = 30
    attachment_unused_per_person: int = 20
    attachment_uploads_per_school_per_hour: int = 300
    # An attachment no post used by then is deleted (storage, then row), by the photo clean-up's job.
    attachment_unused_ttl_seconds: int = 24 * 3600
