"""Media: the routes and the pieces that make the service."""

from pathlib import Path

from media import api
from media.attachments import api as attachments
from media.attachments.domain import AttachmentLink, UploadedAttachment, UploadQuery
from media.attachments.resources import removal
from media.consent import api as consent
from media.consent.domain import PhotoChildren, TagChildren
from media.consent.erasure import erasure
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
        "Short-lived links to a photo's processed variants, for members of its group (404 otherwise)",
        response=PhotoView,
        # Anonymous callers get 404 as everyone else who may not see it (issue 9), not 401.
        auth="optional",
    ),
    Route(
        "PUT",
        "/photos/{photo_id}/children",
        consent.tag_children,
        "Its uploader or a teacher of its group says which children appear in the photo (no face recognition)",
        body=TagChildren,
        response=PhotoChildren,
        errors=(403,),  # a guardian of the group
    ),
    Route(
        "GET",
        "/photos/{photo_id}/children",
        consent.photo_children,
        "The children tagged in a photo, their photo consent, and whether a post may carry it",
        response=PhotoChildren,
        errors=(403,),
        auth="optional",  # anonymous callers: 404, as for the photo itself
    ),
    Route(
        "POST",
        "/groups/{group_id}/attachments",
        attachments.upload_attachment,
        "A teacher uploads an attachment (a PDF: the raw file as the body) for a group they teach",
        response=UploadedAttachment,
        status=201,
        raw_body=attachments.ACCEPTED_TYPES,
        query=UploadQuery,
        # Guardians may not upload; an empty, damaged, encrypted or active PDF is refused; upload limits
        # per person and school; storage briefly unavailable.
        errors=(403, 422, 429, 503),
    ),
    Route(
        "POST",
        "/schools/{school_id}/attachments",
        attachments.upload_school_attachment,
        "A school admin uploads an attachment (a PDF: the raw file as the body) for the school, to name in"
        " one announcement: every group it goes to gets it",
        response=UploadedAttachment,
        status=201,
        raw_body=attachments.ACCEPTED_TYPES,
        query=UploadQuery,
        # 404 for anyone but the school's admins; an empty, damaged, encrypted or active PDF is refused;
        # upload limits per person and school; storage briefly unavailable.
        errors=(422, 429, 503),
    ),
    Route(
        "GET",
        "/attachments/{attachment_id}",
        attachments.get_attachment,
        "A short-lived download link to an attachment, for the members of its post's group (404 otherwise)",
        response=AttachmentLink,
        auth="optional",
    ),
]


def spec() -> ServiceSpec:
    return ServiceSpec(
        name="media",
        routes=routes,
        handlers=handlers,
        migrations=Path(__file__).parent / "migrations",
        contexts=[storage, pipeline, cleanup, retention, erasure, removal],
        metrics=retention_metrics,
    )
