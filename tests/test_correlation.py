"""A correlation id given with a request travels into every event it causes and into the log
lines of every service that handles them."""

import logging

import pytest

from shared.testing.images import png_bytes
from tests.harness.school import make_class
from tests.harness.system import System, eventually


async def test_the_correlation_id_of_a_post_reaches_the_logs_of_media_and_the_notifier(
    system: System, caplog: pytest.LogCaptureFixture
) -> None:
    _school, group, teacher, _parent = await make_class(system, "Groep 7")
    caplog.set_level(logging.INFO)
    # Each send is a DEBUG line (a drain logs one INFO summary for all it sent, whatever caused it).
    caplog.set_level(logging.DEBUG, logger="notifier.delivery")
    # The photo is processed on upload: its processing logs carry the upload's id.
    status, uploaded = await system.call(
        "POST",
        "media",
        f"/groups/{group}/photos",
        teacher.token,
        data=png_bytes(64, 48),
        headers={"Content-Type": "image/png", "X-Correlation-Id": "trace-upload-41"},
    )
    assert status == 201, uploaded
    photo_id = uploaded["photo_id"]

    status, post = await system.call(
        "POST",
        "posts",
        f"/groups/{group}/posts",
        teacher.token,
        json={"title": "Nieuws", "body": "Morgen sportdag!", "photo_ids": [photo_id]},
        headers={"X-Correlation-Id": "trace-sportdag-42"},
    )
    assert status == 201, post

    def traced(trace: str = "trace-sportdag-42") -> set[str]:
        return {r.name for r in caplog.records if getattr(r, "correlation_id", None) == trace}

    def handled_types(trace: str = "trace-sportdag-42") -> list[str | None]:
        return [
            getattr(r, "event_type", None)
            for r in caplog.records
            if r.name == "shared.consumer" and getattr(r, "correlation_id", None) == trace
        ]

    async def reached_every_service() -> bool:
        loggers = {"shared.consumer", "notifier.delivery"} <= traced()
        loggers = loggers and "media.processing" in traced("trace-upload-41")
        # The photo ready for the post: told when media attaches it (the post's id) or when its
        # processing ends after that (the upload's).
        both = handled_types() + handled_types("trace-upload-41")
        return loggers and "media.photo_processed" in both

    await eventually(reached_every_service, what="log lines with the correlation id")
    types = handled_types()
    # Handled by media and the notifier, and what media published in turn (handled by posts).
    assert types.count("posts.post_published") >= 2
