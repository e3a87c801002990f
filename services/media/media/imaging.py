"""Photo processing: an untrusted upload judged at the door, then metadata-free sRGB JPEG variants out.

`inspect_upload` and `process_photo` are synchronous and meant for a worker process (`PhotoProcessor`):
decoding untrusted images can take long, use much memory or crash, and must never block the service's event
loop. JPEG, PNG and WebP are decoded by libvips; HEIC (iPhone photos) by libheif through pillow-heif, because
the libheif inside pyvips-binary decodes only AV1, not the HEVC that HEIC holds.
"""

import asyncio
import contextlib
import ctypes
import functools
import html
import multiprocessing
import os
import signal
import struct
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import pillow_heif
import pyvips

from media.structure import NotAnImage, image_end

P = ParamSpec("P")
T = TypeVar("T")

JPEG = "image/jpeg"
PNG = "image/png"
WEBP = "image/webp"
HEIC = "image/heic"
SNIFF_BYTES = 64
# ISO BMFF brands of HEVC-coded HEIF still images (iPhones write heic; mif1 is generic HEIF), and of HEIF
# image sequences, which are moving pictures.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis"})
_HEIF_STILL = frozenset({b"mif1", b"mif2"})
_HEIF_SEQUENCE = frozenset({b"msf1", b"hevc", b"hevx", b"hevm", b"hevs"})
_SEQUENCE = "image/heic-sequence"
# What pillow-heif raises for data it cannot read (its documented exceptions, out of memory aside).
_HEIF_ERRORS = (ValueError, EOFError, SyntaxError, RuntimeError)
_DECODE_CHECK_SHRINK = 8  # JPEG's DCT-scaled decode still reads every entropy-coded byte, 3x faster

# Errors and truncation fail the decode (the default would hand back grey where data is missing); mere
# warnings, which decoders also raise for harmless quirks, do not.
_FAIL_ON = "error"
# libjpeg's warning (JWRN_HIT_MARKER) for picture data that stops before the picture is whole: a JPEG cut
# short and closed with an end marker decodes "fine", its missing part grey. The one warning that means
# missing pixels, so it refuses the photo; libjpeg's other warnings are quirks of healthy files.
_JPEG_CUT_SHORT = "premature end of data segment"


class ImageRejected(Exception):
    """The upload is not a photo we accept; `reason` is fit to show the person who uploaded it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CheckTookTooLong(ImageRejected):
    """The check of an upload passed its time limit in the worker (PhotoProcessor.check_seconds); the worker
    was killed and replaced."""

    def __init__(self) -> None:
        super().__init__("it took too long to check")


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
class Inspection:
    content_type: str  # as the bytes prove it
    width: int  # as displayed
    height: int
    size_bytes: int  # of the image itself; the file was cut to this length


@dataclass(frozen=True)
class ProcessedPhoto:
    width: int  # of the source, as displayed (after EXIF orientation)
    height: int
    variants: dict[int, Variant]  # by requested size, in the order asked for


def sniff_image_type(head: bytes) -> str | None:
    """The type the file's first bytes (up to SNIFF_BYTES) prove, or None; names and Content-Type headers are
    never trusted. A HEIF image sequence is named "image/heic-sequence", to be refused as moving."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[4:8] == b"ftyp":
        return _heif_type(head)
    return None


def _heif_type(head: bytes) -> str | None:
    size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    brands = {major} | {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
    if major in _HEIF_SEQUENCE:
        return _SEQUENCE
    if major in _HEIC_BRANDS or (major in _HEIF_STILL and brands & _HEIC_BRANDS):
        return HEIC
    return None  # AVIF and other ISO media files


def inspect_upload(path: str, max_pixels: int) -> Inspection:
    """Judge an upload before anything is stored: its magic bytes, its structure (cut at the image's end;
    a polyglot refused), its header (pixel limit; animated or sequence files refused; an MPO's first frame),
    then a full decode of every pixel. Raises ImageRejected with a reason fit to show."""
    _configure_libvips()
    content_type = _sniffed(path)
    try:
        end = image_end(path, content_type)
    except NotAnImage as exc:
        raise ImageRejected(exc.reason) from exc
    if end < os.path.getsize(path):
        os.truncate(path, end)
    try:
        width, height = _checked_size(path, content_type, max_pixels)
        _decode_every_pixel(path, content_type)
    except (pyvips.Error, *_HEIF_ERRORS) as exc:
        raise ImageRejected("the image is damaged or incomplete") from exc
    return Inspection(content_type, width, height, end)


def started_marker(path: str) -> str:
    """The file a worker creates beside the upload at `path` when it starts checking it: its modification
    time is the moment the check started, its content the worker's process id."""
    return f"{path}.check-started"


def _inspect_in_worker(path: str, max_pixels: int) -> Inspection:
    """`inspect_upload`, saying first (started_marker) when and in which process it starts: the time limit
    runs from then, not from when the upload joined the queue."""
    with open(started_marker(path), "w") as marker:
        marker.write(str(os.getpid()))
    return inspect_upload(path, max_pixels)


def _forget_start(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(started_marker(path))


def _check_started(path: str) -> tuple[float, int] | None:
    """When and in which worker process the check of `path` started; None while it waits in the queue."""
    try:
        with open(started_marker(path)) as marker:
            pid = int(marker.read() or 0)
            started = os.fstat(marker.fileno()).st_mtime
    except (FileNotFoundError, ValueError):
        return None
    return (started, pid) if pid else None  # a marker being written has no process id yet


def _sniffed(path: str) -> str:
    with open(path, "rb") as file:
        content_type = sniff_image_type(file.read(SNIFF_BYTES))
    if content_type == _SEQUENCE:
        raise ImageRejected("animated images are not supported")
    if content_type is None:
        raise ImageRejected("not a supported image (JPEG, PNG, WebP or HEIC)")
    return content_type


def _decode_every_pixel(path: str, content_type: str) -> None:
    if content_type == HEIC:
        _heif(path).data  # noqa: B018 - the property decodes
        return
    if content_type == JPEG:
        try:
            pyvips.Image.new_from_file(
                path, access="sequential", fail_on="warning", shrink=_DECODE_CHECK_SHRINK
            ).avg()
            return
        except pyvips.Error as exc:
            if _JPEG_CUT_SHORT in str(exc):
                raise
        # Another warning (a harmless quirk): judged again on errors alone.
        pyvips.Image.new_from_file(
            path, access="sequential", fail_on=_FAIL_ON, shrink=_DECODE_CHECK_SHRINK
        ).avg()
        return
    pyvips.Image.new_from_file(path, access="sequential", fail_on=_FAIL_ON).avg()


def process_photo(
    path: str, sizes: Sequence[int], max_pixels: int, quality: int = 80, watermark: str | None = None
) -> ProcessedPhoto:
    """JPEG variants whose longest side is each of `sizes` (never upscaled), turned upright, in sRGB and
    without any metadata; with `watermark` (plain text, e.g. "Niet delen, OBS De Lichtstraat") written
    across the bottom of each. Raises ImageRejected for anything that is not an acceptable, intact photo."""
    if not sizes or min(sizes) < 1:
        raise ValueError(f"sizes must be positive, got {sizes!r}")
    _configure_libvips()
    content_type = _sniffed(path)
    try:
        return _process(path, content_type, sizes, max_pixels, quality, watermark)
    except (pyvips.Error, *_HEIF_ERRORS) as exc:
        raise ImageRejected("the image is damaged or incomplete") from exc


class PhotoProcessor:
    """Runs `process_photo` in worker processes and replaces them when one crashes or takes too long to
    check an upload (`check_seconds` from the moment a worker starts on it)."""

    def __init__(self, workers: int = 1, check_seconds: float = 30.0) -> None:
        self._workers = workers
        self.check_seconds = check_seconds
        self._executor = self._start()

    async def inspect(self, path: str, max_pixels: int) -> Inspection:
        """`inspect_upload` in a worker process (`path` in a folder of its own: a marker file goes beside
        it); WorkerCrashed if the worker died on it, CheckTookTooLong (an ImageRejected) if it passed the
        time limit: a file no decoder gets through in that time (thousands of scans, say) must not hold a
        worker and a check slot for a minute."""
        # A check tried again (its worker crashed) starts its time anew.
        await asyncio.to_thread(_forget_start, path)
        executor, future = self._submit(_inspect_in_worker, path, max_pixels)
        work = asyncio.wrap_future(future)
        try:
            return await self._within_limit(executor, work, path)
        except BrokenProcessPool as exc:
            self._replace(executor)
            raise WorkerCrashed("the photo worker crashed") from exc

    async def _within_limit(self, executor: ProcessPoolExecutor, work: asyncio.Future[T], path: str) -> T:
        # Checked whenever the time left since the marker runs out: queued behind others, a check is given
        # its full time once it starts.
        while True:
            started = await asyncio.to_thread(_check_started, path)
            left = self.check_seconds if started is None else started[0] + self.check_seconds - time.time()
            if started is not None and left <= 0:
                break
            done, _ = await asyncio.wait({work}, timeout=max(left, 0.05))
            if done:
                return work.result()
        # The worker is stuck in C code that cannot be interrupted: killed, which breaks the pool (the other
        # checks it held fail as WorkerCrashed and are judged again), and replaced.
        work.cancel()
        if started[1] in {child.pid for child in multiprocessing.active_children()}:  # one of our workers
            with contextlib.suppress(ProcessLookupError):
                os.kill(started[1], signal.SIGKILL)
        self._replace(executor)
        raise CheckTookTooLong()

    async def process(
        self,
        path: str,
        sizes: Sequence[int],
        max_pixels: int,
        quality: int = 80,
        watermark: str | None = None,
    ) -> ProcessedPhoto:
        executor, future = self._submit(process_photo, path, tuple(sizes), max_pixels, quality, watermark)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            self._replace(executor)
            raise WorkerCrashed("the photo worker crashed; try again") from exc

    def _submit(
        self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> tuple[ProcessPoolExecutor, Future[T]]:
        """Hand `call` to the pool. A pool that broke before this photo reached it (a worker that died while
        idle, or on another photo) is replaced first: not this photo's doing, so not held against it (an
        upload would be refused as unreadable, and counted against its teacher's limit)."""
        executor = self._executor
        try:
            return executor, executor.submit(call, *args, **kwargs)
        except BrokenProcessPool:
            self._replace(executor)
        executor = self._executor
        return executor, executor.submit(call, *args, **kwargs)

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
    _keep_large_buffers_out_of_the_heap()
    # Only the loaders of accepted formats may see upload bytes; libvips has many more, several never meant
    # for untrusted input.
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in ("VipsForeignLoadJpeg", "VipsForeignLoadPng", "VipsForeignLoadWebp"):
        pyvips.operation_block_set(loader, False)
    # The primary image only: no thumbnails, depth maps or auxiliary images decoded; one thread, as libvips.
    pillow_heif.options.THUMBNAILS = False
    pillow_heif.options.DEPTH_IMAGES = False
    pillow_heif.options.AUX_IMAGES = False
    pillow_heif.options.DECODE_THREADS = 1


# glibc's mallopt parameter M_MMAP_THRESHOLD, and the size from which buffers are mapped (glibc's initial
# value, kept fixed).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 128 * 1024


def _keep_large_buffers_out_of_the_heap() -> None:
    """glibc raises its mmap threshold after each large free (up to 32 MB), so from the second photo on a
    decoded frame's buffers come from the heap, which then fragments: a worker's peak RSS grew from 133 to
    158 MB over three HEIC photos, 125 MB with the threshold fixed, at no measurable cost in speed
    (bench/RESULTS.md). Mapped buffers are given back to the system when freed. Nothing to do where the C
    library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    if hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


def _process(
    path: str, content_type: str, sizes: Sequence[int], max_pixels: int, quality: int, watermark: str | None
) -> ProcessedPhoto:
    width, height = _checked_size(path, content_type, max_pixels)
    # One decode (with shrink-on-load and autorotate) to the largest size, kept in memory because every
    # smaller variant is made from it; about twice as fast as decoding once per size.
    if content_type == HEIC:
        largest = _heif_pixels(path).thumbnail_image(max(sizes), size="down")
    else:
        largest = pyvips.Image.thumbnail(path, max(sizes), size="down", fail_on=_FAIL_ON)
    largest = _srgb(largest).copy_memory()
    variants: dict[int, Variant] = {}
    for size in sizes:
        image = largest if size >= max(largest.width, largest.height) else largest.thumbnail_image(size)
        if watermark:
            image = _with_watermark(image, watermark)
        # keep="none" is libvips >= 8.15's spelling of the deprecated strip=True: no EXIF, XMP, IPTC, ICC.
        data = image.jpegsave_buffer(Q=quality, keep="none")
        variants[size] = Variant(size, int(image.width), int(image.height), bytes(data))
    return ProcessedPhoto(width, height, variants)


# The mark's strip: its height a fraction of the variant's shorter side (never below legible), the text
# white over the photo darkened to this fraction, so it reads on light and dark photos alike.
_MARK_HEIGHT = 0.05
_MARK_MIN_TEXT_PX = 11
_MARK_SHADE = 0.45
_MARK_FONT = "DejaVu Sans Bold"
_MARK_RENDER_PT = 96  # at 72 dpi: larger than the mark on any variant, so it is only ever scaled down


def _with_watermark(image: pyvips.Image, text: str) -> pyvips.Image:
    """`image` (sRGB, uchar) with `text` in a darkened strip across its bottom (seed rule 6: a visible
    "do not share" mark). Drawn on each variant at its own size, so the mark is as legible on 320 px as
    on 2048 px: the text, rendered once per worker (`_mark`), is scaled to fit the strip, one line."""
    width, height = int(image.width), int(image.height)
    text_height = max(_MARK_MIN_TEXT_PX, round(min(width, height) * _MARK_HEIGHT))
    pad = max(2, text_height // 4)
    strip_height = min(height, text_height + 2 * pad)
    mask = _mark(text)
    scale = min(text_height / mask.height, max(1, width - 2 * pad) / mask.width)
    mask = mask.resize(scale, kernel="linear")
    mask = mask.embed(pad, (strip_height - int(mask.height)) // 2, width, strip_height)
    top = height - strip_height
    strip = image.crop(0, top, width, strip_height)
    shaded = (strip * _MARK_SHADE).cast("uchar")
    marked = mask.ifthenelse([255] * int(image.bands), shaded, blend=True)
    return image.insert(marked, 0, top)


@functools.lru_cache(maxsize=32)
def _mark(text: str) -> pyvips.Image:
    """The text as a one-band coverage mask (0 to 255), cut to its ink, at _MARK_RENDER_PT (about 75 px
    high): rendered by libvips (Pango) once per worker and school name, then only scaled down; rendering
    costs more than the rest of the mark. Pango reads markup, so a school named "A & B" is escaped to be
    drawn as written."""
    rendered = pyvips.Image.text(html.escape(text, quote=False), font=f"{_MARK_FONT} {_MARK_RENDER_PT}")
    return rendered.copy_memory()


def _checked_size(path: str, content_type: str, max_pixels: int) -> tuple[int, int]:
    """Width and height as displayed, once the limits are met; read from the header alone, before a single
    pixel is decoded."""
    if content_type == HEIC:
        return _checked_heif_size(path, max_pixels)
    header = pyvips.Image.new_from_file(path, access="sequential", fail_on=_FAIL_ON)
    width, height = int(header.width), int(header.height)
    if width * height > max_pixels:
        raise ImageRejected(f"image too large: {width * height} pixels (max {max_pixels})")
    # An MPO (stereo or multi-angle JPEG) is shown as its first frame, as libvips reads it: not refused.
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


def _heif(path: str) -> pillow_heif.HeifFile:
    # Opening reads the boxes and the primary image's header; `.data` decodes. libheif has applied the
    # container's rotation and mirroring (irot, imir) by then, which HEIF readers must follow, so the EXIF
    # orientation an iPhone also writes is not applied a second time.
    heif = pillow_heif.open_heif(path, convert_hdr_to_8bit=True)
    if len(heif) == 0:  # boxes that parse but name no image
        raise ImageRejected("the image is damaged or incomplete")
    return heif


def _checked_heif_size(path: str, max_pixels: int) -> tuple[int, int]:
    heif = _heif(path)
    width, height = heif.size
    if width * height > max_pixels:
        raise ImageRejected(f"image too large: {width * height} pixels (max {max_pixels})")
    return width, height


_HEIF_BANDS = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def _heif_pixels(path: str) -> pyvips.Image:
    """The primary image, upright, as a libvips image carrying its ICC profile (an iPhone's is Display P3)."""
    heif = _heif(path)
    bands = _HEIF_BANDS.get(heif.mode)
    if bands is None:
        raise ImageRejected(f"unsupported HEIC pixel format {heif.mode}")
    width, height = heif.size
    image = pyvips.Image.new_from_memory(heif.data, width, height, bands, "uchar")
    image = image.copy(interpretation="b-w" if bands < 3 else "srgb")
    profile = heif.info.get("icc_profile")
    if profile and heif.info.get("icc_profile_type") == "prof":
        image = image.copy()
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", profile)
        image = image.icc_transform("srgb", embedded=True, intent="perceptual")
    return image
