"""Domain errors with an HTTP meaning, rendered by the error middleware as one JSON shape:
``{"error": {"code": ..., "message": ..., "details": ...}}``."""

from typing import Any


class AppError(Exception):
    """``retry_after`` (seconds) becomes a Retry-After header: give it with 429 and 503 when known."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.retry_after = retry_after


class BadRequest(AppError):
    status = 400
    code = "bad_request"


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"


class Forbidden(AppError):
    status = 403
    code = "forbidden"


class NotFound(AppError):
    """Also used for what exists but the caller may not see: ids cannot be probed."""

    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(AppError):
    status = 422
    code = "validation_failed"


class TooManyRequests(AppError):
    status = 429
    code = "too_many_requests"


class ServiceUnavailable(AppError):
    status = 503
    code = "unavailable"
