import asyncio
import io
import multiprocessing
import os
import signal
import zipfile
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest
from PIL import ExifTags, Image

from media.imaging import (
    ImageRejected,
    PhotoProcessor,
    ProcessedPhoto,
    WorkerCrashed,
    inspect_upload,
    process_photo,
    sniff_image_type,
)
from shared.testing.images import (
    CAMERA_MAKE,
    LEFT_COLOUR,
    RIGHT_COLOUR,
    animated,
    heic_exif,
    heic_with_gps,
    jpeg_with_gps,
    metadata_report,
    mpo,
    png_bomb,
    png_bytes,
)

SIZES = (2048, 1080, 320)
MAX_PIXELS = 50_000_000


def saved(tmp_path: Path, data: bytes, name: str = "upload") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.convert("RGB")


def near(pixel: object, colour: tuple[int, int, int]) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) < 40 for a, b in zip(pixel, colour, strict=True))


def new_worker(before: set[BaseProcess]) -> int:
    (worker,) = set(multiprocessing.active_children()) - before
    assert worker.pid is not None
    assert worker.pid != os.getpid()
    return worker.pid


@pytest.fixture
async def processor():
    processor = PhotoProcessor(workers=1)
    yield processor
    await processor.close()


def test_gps_and_all_metadata_are_removed_from_every_variant(tmp_path):
    upload = jpeg_with_gps(2400, 1600)
    found = metadata_report(upload)
    assert all(found[kind] for kind in ("exif", "gps", "xmp", "iptc", "icc", "comment")), "nothing to remove"

    photo = process_photo(saved(tmp_path, upload), SIZES, MAX_PIXELS)

    assert len(photo.variants) == len(SIZES)
    for variant in photo.variants.values():
        report = metadata_report(variant.data)
        assert report == {
            "exif": False,
            "gps": False,
            "xmp": False,
            "iptc": False,
            "icc": False,
            "comment": False,
            "segments": [],
        }
        assert CAMERA_MAKE.encode() not in variant.data
        assert variant.content_type == "image/jpeg"
        assert decoded(variant.data).getexif() == {}


@pytest.mark.parametrize(
    ("orientation", "top_left", "bottom_right", "turned"),
    [
        (1, LEFT_COLOUR, RIGHT_COLOUR, False),  # as stored: red left, blue right
        (3, RIGHT_COLOUR, LEFT_COLOUR, False),  # half a turn
        (6, LEFT_COLOUR, RIGHT_COLOUR, True),  # a quarter clockwise: red on top
        (8, RIGHT_COLOUR, LEFT_COLOUR, True),  # a quarter anticlockwise: blue on top
    ],
)
def test_orientation_is_applied(tmp_path, orientation, top_left, bottom_right, turned):
    photo = process_photo(saved(tmp_path, jpeg_with_gps(600, 400, orientation)), [320], MAX_PIXELS)

    assert (photo.width, photo.height) == ((400, 600) if turned else (600, 400))
    variant = photo.variants[320]
    image = decoded(variant.data)
    assert image.size == (variant.width, variant.height) == ((213, 320) if turned else (320, 213))
    assert near(image.getpixel((10, 10)), top_left)
    assert near(image.getpixel((image.width - 10, image.height - 10)), bottom_right)
    assert near(image.getpixel((image.width - 10, 10)), top_left if turned else bottom_right)


def test_each_variant_has_its_size_as_longest_side(tmp_path):
    photo = process_photo(saved(tmp_path, jpeg_with_gps(3000, 2000, orientation=1)), SIZES, MAX_PIXELS)

    assert (photo.width, photo.height) == (3000, 2000)
    assert [(v.size, v.width, v.height) for v in photo.variants.values()] == [
        (2048, 2048, 1365),
        (1080, 1080, 720),
        (320, 320, 213),
    ]
    for variant in photo.variants.values():
        assert decoded(variant.data).size == (variant.width, variant.height)


def test_variants_are_never_upscaled(tmp_path):
    photo = process_photo(saved(tmp_path, jpeg_with_gps(800, 600, orientation=1)), SIZES, MAX_PIXELS)

    assert list(photo.variants) == list(SIZES), "in the order asked for"
    assert [(v.size, v.width, v.height) for v in photo.variants.values()] == [
        (2048, 800, 600),
        (1080, 800, 600),
        (320, 320, 240),
    ]


def test_pngs_and_webps_become_srgb_jpegs_and_transparency_becomes_white(tmp_path):
    transparent = png_bytes(50, 40, (255, 0, 0, 0), mode="RGBA")
    grey16 = png_bytes(50, 40, (65535,), mode="I;16")
    webp = io.BytesIO()
    Image.new("RGB", (50, 40), (0, 255, 0)).save(webp, "WEBP", lossless=True)

    white = (255, 255, 255)
    for upload, colour in [(transparent, white), (grey16, white), (webp.getvalue(), (0, 255, 0))]:
        variant = process_photo(saved(tmp_path, upload), [320], MAX_PIXELS).variants[320]
        image = Image.open(io.BytesIO(variant.data))
        assert (image.format, image.mode) == ("JPEG", "RGB")
        assert near(image.getpixel((5, 5)), colour)


def test_too_many_pixels_is_rejected_before_decoding(tmp_path):
    bomb = png_bomb(20_000, 20_000)
    assert len(bomb) < 100_000

    with pytest.raises(ImageRejected, match=r"image too large: 400000000 pixels \(max 50000000\)"):
        process_photo(saved(tmp_path, bomb), SIZES, MAX_PIXELS)
    # Half its pixel data is missing, so decoding it fails; over the limit it is refused for its size instead.
    half = saved(tmp_path, bomb[: len(bomb) // 2])
    with pytest.raises(ImageRejected, match="damaged"):
        process_photo(half, SIZES, max_pixels=20_000 * 20_000)
    with pytest.raises(ImageRejected, match="image too large"):
        process_photo(half, SIZES, MAX_PIXELS)


def test_a_photo_at_the_pixel_limit_is_accepted(tmp_path):
    path = saved(tmp_path, jpeg_with_gps(300, 200, orientation=1))

    assert process_photo(path, SIZES, max_pixels=300 * 200).width == 300
    with pytest.raises(ImageRejected, match="image too large"):
        process_photo(path, SIZES, max_pixels=300 * 200 - 1)


@pytest.mark.parametrize("kind", ["PNG", "WEBP"])
def test_animated_images_are_rejected(tmp_path, kind):
    with pytest.raises(ImageRejected, match="animated images are not supported"):
        process_photo(saved(tmp_path, animated(kind)), SIZES, MAX_PIXELS)


@pytest.mark.parametrize(
    "upload",
    [
        b"%PDF-1.7 not a photo at all",
        b"",
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
        b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    ],
    ids=["pdf", "empty", "gif", "avif", "svg"],
)
def test_a_non_image_is_rejected(tmp_path, upload):
    with pytest.raises(ImageRejected, match="not a supported image"):
        process_photo(saved(tmp_path, upload, "photo.jpg"), SIZES, MAX_PIXELS)


def test_truncated_jpeg_is_rejected(tmp_path):
    whole = jpeg_with_gps(1200, 800, textured=True)

    with pytest.raises(ImageRejected, match="the image is damaged or incomplete"):
        process_photo(saved(tmp_path, whole[: len(whole) // 2]), SIZES, MAX_PIXELS)


def test_sniff_recognises_magic_bytes_not_names(tmp_path):
    assert sniff_image_type(jpeg_with_gps(20, 10)) == "image/jpeg"
    assert sniff_image_type(png_bytes(20, 10)) == "image/png"
    assert sniff_image_type(animated("WEBP")) == "image/webp"
    assert sniff_image_type(heic_with_gps(20, 10)) == "image/heic"
    assert sniff_image_type(b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic") == "image/heic"
    assert sniff_image_type(b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif") is None
    assert sniff_image_type(b"\x00\x00\x00\x18ftypmsf1\x00\x00\x00\x00msf1heic") == "image/heic-sequence"
    assert sniff_image_type(b"GIF89a") is None
    assert sniff_image_type(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    assert sniff_image_type(b"\xff\xd8") is None

    # A PNG named like a JPEG is processed as the PNG it is.
    photo = process_photo(saved(tmp_path, png_bytes(60, 40), "holiday.jpg"), [320], MAX_PIXELS)
    assert (photo.width, photo.height) == (60, 40)


async def test_processor_runs_in_a_separate_process(processor, tmp_path):
    path = saved(tmp_path, jpeg_with_gps(1200, 800, orientation=1))
    before = set(multiprocessing.active_children())

    call = asyncio.ensure_future(processor.process(path, SIZES, MAX_PIXELS))
    await asyncio.sleep(0)  # submitted: the worker process exists
    worker = new_worker(before)
    os.kill(worker, signal.SIGSTOP)
    try:
        done, _ = await asyncio.wait({call}, timeout=0.5)
        # The photo waits for that stopped process while the event loop keeps running.
        assert not done
    finally:
        os.kill(worker, signal.SIGCONT)

    photo = await call
    assert isinstance(photo, ProcessedPhoto)
    assert [v.width for v in photo.variants.values()] == [1200, 1080, 320]


async def test_a_rejection_in_the_worker_reaches_the_caller(processor, tmp_path):
    with pytest.raises(ImageRejected, match="image too large"):
        await processor.process(saved(tmp_path, png_bomb()), SIZES, MAX_PIXELS)


async def test_a_crashed_worker_is_replaced_and_the_photo_can_be_retried(processor, tmp_path):
    path = saved(tmp_path, jpeg_with_gps(1200, 800, orientation=1))
    before = set(multiprocessing.active_children())

    call = asyncio.ensure_future(processor.process(path, SIZES, MAX_PIXELS))
    await asyncio.sleep(0)
    os.kill(new_worker(before), signal.SIGKILL)
    with pytest.raises(WorkerCrashed):
        await call

    photo = await processor.process(path, SIZES, MAX_PIXELS)
    assert (photo.width, photo.height) == (1200, 800)


def test_an_iphone_heic_is_turned_upright_and_stripped_of_all_metadata(tmp_path):
    upload = heic_with_gps(600, 400, orientation=6)
    exif = heic_exif(upload)
    assert exif[ExifTags.Base.Orientation] == 6
    assert exif.get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] == (52.0, 5.0, 31.25)

    photo = process_photo(saved(tmp_path, upload, "IMG_0001.HEIC"), SIZES, MAX_PIXELS)

    # Turned once (by the container's rotation), not twice by the EXIF orientation as well.
    assert (photo.width, photo.height) == (400, 600)
    variant = photo.variants[320]
    image = decoded(variant.data)
    assert image.size == (variant.width, variant.height) == (213, 320)
    assert near(image.getpixel((10, 10)), LEFT_COLOUR)
    assert near(image.getpixel((image.width - 10, 10)), LEFT_COLOUR)
    assert near(image.getpixel((image.width - 10, image.height - 10)), RIGHT_COLOUR)
    for variant in photo.variants.values():
        assert metadata_report(variant.data)["segments"] == []
        assert CAMERA_MAKE.encode() not in variant.data
        assert decoded(variant.data).getexif() == {}


def test_an_upload_is_judged_whole_before_it_is_kept(tmp_path):
    whole = jpeg_with_gps(1200, 800, textured=True)

    judged = inspect_upload(saved(tmp_path, whole), MAX_PIXELS)
    assert (judged.content_type, judged.width, judged.height, judged.size_bytes) == (
        "image/jpeg",
        800,
        1200,
        len(whole),
    )
    heic = inspect_upload(saved(tmp_path, heic_with_gps(600, 400)), MAX_PIXELS)
    assert (heic.content_type, heic.width, heic.height) == ("image/heic", 400, 600)
    with pytest.raises(ImageRejected, match="damaged or incomplete"):
        inspect_upload(saved(tmp_path, whole[: 101 * 1024]), MAX_PIXELS)
    with pytest.raises(ImageRejected, match="damaged or incomplete"):
        inspect_upload(saved(tmp_path, heic_with_gps(600, 400)[:1500]), MAX_PIXELS)
    with pytest.raises(ImageRejected, match=r"image too large: 400000000 pixels"):
        inspect_upload(saved(tmp_path, png_bomb()), MAX_PIXELS)
    with pytest.raises(ImageRejected, match="animated"):
        inspect_upload(saved(tmp_path, animated("WEBP")), MAX_PIXELS)


def zip_of(name: str, content: bytes) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(name, content)
    return archive.getvalue()


@pytest.mark.parametrize(
    "extra",
    [
        zip_of("payload.html", b"<script>alert(1)</script>"),
        b"\x00" * 16 + zip_of("a.txt", b"hidden"),
        b"<html><script>alert(1)</script></html>",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
        b"\x00\x00\x00\x18ftypmp42" + bytes(100) + zip_of("a.txt", b"hidden") + b"trailing junk",
    ],
    ids=["zip", "padded zip", "html", "pdf", "zip between other data"],
)
def test_an_image_with_another_file_hidden_in_it_is_refused(tmp_path, extra):
    for image in (jpeg_with_gps(300, 200), png_bytes(30, 20), heic_with_gps(60, 40)):
        with pytest.raises(ImageRejected, match="more than an image"):
            inspect_upload(saved(tmp_path, image + extra), MAX_PIXELS)


def test_data_after_the_image_is_cut_off_and_an_mpo_keeps_its_first_frame(tmp_path):
    # A motion photo: the phone appends a short video after the JPEG.
    photo = jpeg_with_gps(300, 200, orientation=1)
    path = saved(tmp_path, photo + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    assert inspect_upload(path, MAX_PIXELS).size_bytes == len(photo)
    assert Path(path).read_bytes() == photo

    # A ZIP end record's four bytes by chance, with no archive behind them: not a polyglot.
    video = b"\x00\x00\x00\x18ftypmp42" + bytes(64) + b"PK\x05\x06" + bytes(range(200))
    assert inspect_upload(saved(tmp_path, photo + video), MAX_PIXELS).size_bytes == len(photo)

    stereo = mpo(60, 40)
    path = saved(tmp_path, stereo)
    judged = inspect_upload(path, MAX_PIXELS)
    assert (judged.width, judged.height) == (60, 40)
    # What is kept ends with the first frame; the second one (a JPEG of its own) is gone.
    assert stereo[judged.size_bytes :].startswith(b"\xff\xd8\xff")
    assert Path(path).read_bytes() == stereo[: judged.size_bytes]
    variant = process_photo(path, [320], MAX_PIXELS).variants[320]
    assert near(decoded(variant.data).getpixel((5, 5)), LEFT_COLOUR)


@pytest.mark.parametrize(
    "whole",
    [
        jpeg_with_gps(120, 80, textured=True),
        png_bytes(120, 80),
        animated("WEBP", frames=1),
        heic_with_gps(120, 80),
    ],
    ids=["jpeg", "png", "webp", "heic"],
)
def test_a_cut_or_flipped_upload_is_accepted_whole_or_refused_never_an_error(tmp_path, whole):
    damaged = [whole[:cut] for cut in range(1, len(whole), max(1, len(whole) // 40))]
    damaged += [
        whole[:at] + bytes([whole[at] ^ 0xFF]) + whole[at + 1 :]
        for at in range(12, len(whole), max(1, len(whole) // 40))
    ]
    for data in damaged:
        try:
            judged = inspect_upload(saved(tmp_path, data), MAX_PIXELS)
        except ImageRejected:
            continue
        assert judged.size_bytes <= len(data)
