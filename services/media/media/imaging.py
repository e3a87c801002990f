"""Photo processing: an untrusted upload in, metadata-free sRGB JPEG variants out.

`process_photo` is synchronous and meant for a worker process (`PhotoProcessor`): decoding untrusted images
can take long, use much memory or crash, and must never block the service's event loop.
"""

import asyncio
import functools
import multiprocessing
import os
import struct
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import pyvips

JPEG = "image/jpeg"
PNG = "image/png"
WEBP = "image/webp"
SNIFF_BYTES = 16

# Errors and truncation fail the decode (the default would hand back grey where data is missing); mere
# warnings, which decoders also raise for harmless quirks, do not.
_FAIL_ON = "error"


class ImageRejected(Exception):
    """The upload is not a photo we accept; `reason` is fit to show the person who uploaded it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class WorkerCrashed(Exception):
    """A worker process died while (or before) processing; the photo itself may be fine, so retry it, a
    bounded number of times: a file that crashes libvips will crash it again."""


@dataclass(frozen=True)
class Variant:
    size: int  # the requested longest side; width and height are smaller when the source is
    width: int
    height: int
    data: bytes
    content_type: str = JPEG


@dataclass(frozen=True)
class ProcessedPhoto:
    width: int  # of the source, as displayed (after EXIF orientation)
    height: int
    variants: dict[int, Variant]  # by requested size, in the order asked for


def sniff_image_type(head: bytes) -> str | None:
    """The type the file's first bytes prove, or None; names and Content-Type headers are never trusted."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    # HEIC is not recognised: it holds HEVC, and the libheif inside pyvips-binary (8.18) decodes only AV1
    # (HEVC is patent-encumbered), so libvips could not decode it. iOS browsers upload JPEG anyway.
    return None


def process_photo(path: str, sizes: Sequence[int], max_pixels: int, quality: int = 80) -> ProcessedPhoto:
    """JPEG variants whose longest side is each of `sizes` (never upscaled), turned upright, in sRGB and
    without any metadata. Raises ImageRejected for anything that is not an acceptable, intact photo."""
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes must be positive, got {sizes!r}")
    _configure_libvips()
    with open(path, "rb") as file:
        content_type = sniff_image_type(file.read(SNIFF_BYTES))
    if content_type is None:
        raise ImageRejected("not a supported image (JPEG, PNG or WebP)")
    try:
        return _process(path, content_type, sizes, max_pixels, quality)
    except pyvips.Error as exc:
        raise ImageRejected("the image is damaged or incomplete") from exc


class PhotoProcessor:
    """Runs `process_photo` in worker processes and replaces them when one crashes."""

    def __init__(self, workers: int = 1) -> None:
        self._workers = workers
        self._executor = self._start()

    async def process(
        self, path: str, sizes: Sequence[int], max_pixels: int, quality: int = 80
    ) -> ProcessedPhoto:
        executor = self._executor
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                executor, process_photo, path, tuple(sizes), max_pixels, quality
            )
        except BrokenProcessPool as exc:
            self._replace(executor)
            raise WorkerCrashed("the photo worker crashed; try again") from exc

    async def close(self) -> None:
        # Waits for the photo in progress; in a thread, because that can take a second.
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)

    def _start(self) -> ProcessPoolExecutor:
        # spawn, not fork: the service is multi-threaded (asyncio, aio-pika, boto3) and holds connections
        # and keys; a forked child would inherit all that, and locks held by other threads. Not forkserver
        # either: workers live until they crash, so its faster start buys nothing, and spawn behaves the
        # same on every platform and needs no extra server process.
        return ProcessPoolExecutor(max_workers=self._workers, mp_context=multiprocessing.get_context("spawn"))

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        # A dead worker fails every call in flight; only the first of them replaces the pool.
        if self._executor is broken:
            self._executor = self._start()
            broken.shutdown(wait=False, cancel_futures=True)


@functools.cache
def _configure_libvips() -> None:
    # A worker handles one photo at a time: no operation cache to grow, and one thread (a second one gains
    # ~5 % here; more processes scale better and keep memory bounded per photo).
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    # Only the loaders of accepted formats may see upload bytes; libvips has many more, several never meant
    # for untrusted input.
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in ("VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadWebp"):
        pyvips.operation_block_set(loader, False)


def _process(
    path: str, content_type: str, sizes: Sequence[int], max_pixels: int, quality: int
) -> ProcessedPhoto:
    width, height = _checked_size(path, content_type, max_pixels)
    # One decode (with shrink-on-load and autorotate) to the largest size, kept in memory because every
    # smaller variant is made from it; about twice as fast as decoding once per size.
    largest = _srgb(pyvips.Image.thumbnail(path, max(sizes), size="down", fail_on=_FAIL_ON)).copy_memory()
    variants: dict[int, Variant] = {}
    for size in sizes:
        image = largest if size >= max(largest.width, largest.height) else largest.thumbnail_image(size)
        # keep="none" is libvips >= 8.15's spelling of the deprecated strip=True: no EXIF, XMP, IPTC, ICC.
        data = image.jpegsave_buffer(Q=quality, keep="none")
        variants[size] = Variant(size, int(image.width), int(image.height), bytes(data))
    return ProcessedPhoto(width, height, variants)


def _checked_size(path: str, content_type: str, max_pixels: int) -> tuple[int, int]:
    """Width and height as displayed, once the limits are met; read from the header alone, before a single
    pixel is decoded."""
    header = pyvips.Image.new_from_file(path, access="sequential", fail_on=_FAIL_ON)
    width, height = int(header.width), int(header.height)
    if width * height > max_pixels:
        raise ImageRejected(f"image too large: {width * height} pixels (max {max_pixels})")
    pages = int(header.get("n-pages")) if header.get_typeof("n-pages") else 1
    if pages > 1 or (content_type == PNG and _is_animated_png(path)):
        raise ImageRejected("animated images are not supported")
    if header.get_typeof("orientation") and int(header.get("orientation")) in (5, 6, 7, 8):
        return height, width  # these orientations turn the image a quarter
    return width, height


def _srgb(image: pyvips.Image) -> pyvips.Image:
    # thumbnail already converts images with an ICC profile (and CMYK) to sRGB; this covers the rest:
    # greyscale, 16-bit, and transparency, which JPEG cannot hold (flattened on white, not black).
    if image.interpretation != "srgb":
        image = image.colourspace("srgb")
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    return image.cast("uchar") if image.format != "uchar" else image


def _is_animated_png(path: str) -> bool:
    # libvips would quietly show an APNG's first frame; an APNG is told by its acTL chunk before the IDAT.
    with open(path, "rb") as file:
        file.seek(8)
        while len(chunk := file.read(8)) == 8:
            length, kind = struct.unpack(">I4s", chunk)
            if kind == b"acTL":
                return True
            if kind in (b"IDAT", b"IEND"):
                return False
            file.seek(length + 4, os.SEEK_CUR)  # data and CRC
    return False
