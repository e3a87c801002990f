"""Media: the routes and the pieces that make the service."""

from pathlib import Path

from media import api
from media.domain import PhotoUploaded, PhotoView
from media.events import handlers
from media.resources import cleanup, pipeline, retention, storage
from media.retention import retention_metrics
from shared.app import ServiceSpec
from shared.http import Route

routes = [
    Route(
        "POST",
        "/groups/{group_id}/photos",
        api.upload_photo,
        "A teacher uploads a photo for a group they teach (the raw image as the body)",
        response=PhotoUploaded,
        status=201,
        raw_body=api.ACCEPTED_TYPES,
        # Guardians may not upload; an empty, damaged, too large (pixels) or moving image is refused;
        # upload limits per person and school; storage briefly unavailable.
        errors=(403, 422, 429, 503),
    ),
    Route(
        "GET",
        "/photos/{photo_id}",
        api.get_photo,
        "Short-lived links to a photo's processed variants, for members of its group",
        response=PhotoView,
    ),
]


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="media",
        routes=routes,
        handlers=handlers,
        migrations=Path(__file__).parent / "migrations",
        contexts=[storage, pipeline, cleanup, retention],
        metrics=retention_metrics,
    )
