"""An upload's body streamed to a temporary file, judged by its size and first bytes as it arrives (the
photo and attachment uploads share it; each then runs its own full check)."""

import asyncio
from collections.abc import Callable

from aiohttp import web

from shared.errors import PayloadTooLarge, UnsupportedMediaType, ValidationFailed

_CHUNK = 256 * 1024


async def receive_upload(
    request: web.Request,
    path: str,
    limit: int,
    noun: str,
    sniff_bytes: int,
    accepted: Callable[[bytes], bool],
    unsupported: Callable[[], UnsupportedMediaType],
) -> int:
    """The body into the file at ``path``; its size in bytes. Refused (413) as soon as it passes ``limit``
    bytes, (415, ``unsupported()``) as soon as its first ``sniff_bytes`` fail ``accepted`` (or the whole
    body, when shorter), and (422) when empty. ``noun`` ("photo", "attachment") names it in the errors."""
    article = "an" if noun[:1] in "aeiou" else "a"
    too_large = PayloadTooLarge(f"{article} {noun} may be at most {limit // (1024 * 1024)} MB")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    size, head = 0, b""
    # The disk is written from a thread: a slow disk must not stall the event loop.
    file = await asyncio.to_thread(open, path, "wb")
    try:
        async for chunk in request.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise too_large
            if len(head) < sniff_bytes:
                head += chunk[: sniff_bytes - len(head)]
                # The bytes decide what this is, not the file name or the Content-Type header: what is
                # not accepted is refused before the rest of it is read.
                if len(head) == sniff_bytes and not accepted(head):
                    raise unsupported()
            await asyncio.to_thread(file.write, chunk)
    finally:
        file.close()
    if size == 0:
        raise ValidationFailed(f"the {noun} is empty", [{"field": "(body)", "problem": "no bytes sent"}])
    if not accepted(head):
        raise unsupported()
    return size
