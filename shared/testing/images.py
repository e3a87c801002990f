"""Test images built with Pillow, and a JPEG inspector that proves what metadata a file still carries.

Metadata is real: EXIF with GPS, XMP, IPTC, an ICC profile and a comment are all in the bytes, so a test
that finds none of them in an output proves the output was stripped.
"""

import io
import struct
import zlib
from collections.abc import Iterator
from typing import TypedDict

import pillow_heif
from PIL import ExifTags, Image, ImageCms

CAMERA_MAKE = "KlaspostTestCam"
LEFT_COLOUR = (255, 0, 0)
RIGHT_COLOUR = (0, 0, 255)

_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="Juf Test"/>'
    b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)
_PHOTOSHOP_ID = b"Photoshop 3.0\x00"


class MetadataReport(TypedDict):
    exif: bool
    gps: bool
    xmp: bool
    iptc: bool
    icc: bool
    comment: bool
    segments: list[str]  # every APPn and COM segment, e.g. "APP0:JFIF", in file order


def jpeg_with_gps(width: int, height: int, orientation: int = 6, *, textured: bool = False) -> bytes:
    """Left half red, right half blue, so the displayed orientation can be checked; carries EXIF (camera,
    date, orientation, GPS), XMP, IPTC, an ICC profile and a comment. `textured` adds noise so the file
    decodes and compresses like a real photo (for benchmarks)."""
    image = _halves(width, height)
    if textured:
        noise = Image.effect_noise((width, height), 48).convert("RGB")
        image = Image.blend(image, noise, 0.5)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buffer = io.BytesIO()
    image.save(
        buffer,
        "JPEG",
        quality=90,
        exif=_exif(orientation),
        xmp=_XMP,
        icc_profile=srgb,
        comment=b"class trip, Juf Test",
    )
    # Pillow cannot write IPTC, so its APP13 segment is spliced in after the other APPn segments.
    return _insert_segment(buffer.getvalue(), 0xED, _iptc_block())


def heic_with_gps(width: int, height: int, orientation: int = 6, *, textured: bool = False) -> bytes:
    """An HEVC-coded HEIC laid out as an iPhone writes one: the pixels as the sensor saw them (left half red,
    right half blue), an `irot` rotation that readers must apply, and EXIF with the same orientation, camera
    and GPS, plus XMP and an ICC profile. `textured` adds noise, as in `jpeg_with_gps`."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = _halves(width, height)
    if textured:
        image = Image.blend(image, Image.effect_noise((width, height), 48).convert("RGB"), 0.5)
    buffer = io.BytesIO()
    # pillow-heif turns the EXIF orientation into the container's irot/imir and keeps the tag in the EXIF.
    pillow_heif.from_pillow(image).save(
        buffer, format="HEIF", quality=85, exif=_exif(orientation).tobytes(), xmp=_XMP, icc_profile=srgb
    )
    return buffer.getvalue()


def heic_exif(data: bytes) -> Image.Exif:
    """The EXIF an HEIC carries, read by libheif (through pillow-heif), not by our own code."""
    exif = Image.Exif()
    raw = pillow_heif.open_heif(io.BytesIO(data)).info.get("exif")
    if raw:
        exif.load(raw)
    return exif


def mpo(width: int = 60, height: int = 40) -> bytes:
    """A two-frame MPO (a stereo camera's JPEG): red first frame, blue second, as Pillow writes it."""
    frames = [Image.new("RGB", (width, height), colour) for colour in (LEFT_COLOUR, RIGHT_COLOUR)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "MPO", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def png_bytes(width: int, height: int, colour: tuple[int, ...] = LEFT_COLOUR, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), colour).save(buffer, "PNG")
    return buffer.getvalue()


def png_bomb(width: int = 20_000, height: int = 20_000) -> bytes:
    """A few kB that declare `width` x `height` pixels of one colour; built by hand because Pillow would
    need all the pixels in memory first."""
    rows = zlib.compressobj(9)
    row = b"\x00" + bytes((width + 7) // 8)  # filter byte, then one bit per pixel
    compressed = b"".join(rows.compress(row) for _ in range(height)) + rows.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", compressed)
        + _png_chunk(b"IEND", b"")
    )


def animated(kind: str, frames: int = 2) -> bytes:
    """An animated "PNG" (APNG) or "WEBP"."""
    images = [Image.new("RGB", (40, 30), colour) for colour in (LEFT_COLOUR, RIGHT_COLOUR) * frames][:frames]
    buffer = io.BytesIO()
    images[0].save(buffer, kind, save_all=True, append_images=images[1:], duration=100, loop=0)
    return buffer.getvalue()


def metadata_report(data: bytes) -> MetadataReport:
    """What a JPEG carries, found by walking all its marker segments (also those between and after scans)."""
    report = MetadataReport(
        exif=False, gps=False, xmp=False, iptc=False, icc=False, comment=False, segments=[]
    )
    for marker, payload in _segments(data):
        if marker == 0xFE:
            report["comment"] = True
            report["segments"].append("COM")
        elif 0xE0 <= marker <= 0xEF:
            identifier = payload.split(b"\x00", 1)[0].decode("latin-1")
            report["segments"].append(f"APP{marker - 0xE0}:{identifier}")
            if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
                report["exif"] = True
                report["gps"] = report["gps"] or _has_gps_ifd(payload[6:])
            report["xmp"] = report["xmp"] or (marker == 0xE1 and payload.startswith(_XMP_ID))
            report["iptc"] = report["iptc"] or (marker == 0xED and payload.startswith(_PHOTOSHOP_ID))
            report["icc"] = report["icc"] or (marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"))
    return report


def _halves(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height), RIGHT_COLOUR)
    image.paste(LEFT_COLOUR, (0, 0, width // 2, height))
    return image


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = CAMERA_MAKE
    exif[ExifTags.Base.Model] = "Model 7"
    exif[ExifTags.Base.DateTime] = "2024:05:17 10:30:00"
    exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 5.0, 31.25)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (4.0, 18.0, 7.5)
    return exif


def _iptc_block() -> bytes:
    caption = b"Schoolreisje groep 5"
    iptc = b"\x1c\x02\x78" + struct.pack(">H", len(caption)) + caption  # record 2, dataset 120: caption
    iptc += b"\x00" * (len(iptc) % 2)
    # One Photoshop image resource: 8BIM, id 0x0404 (IPTC), empty padded name, size, data.
    return _PHOTOSHOP_ID + b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iptc)) + iptc


def _insert_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    position = 2
    while jpeg[position] == 0xFF and 0xE0 <= jpeg[position + 1] <= 0xEF:
        position += 2 + int.from_bytes(jpeg[position + 2 : position + 4], "big")
    segment = bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:position] + segment + jpeg[position:]


def _segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    position = 2
    while (position := data.find(b"\xff", position)) != -1 and position + 1 < len(data):
        marker = data[position + 1]
        if marker == 0xD9:
            return
        # Fill bytes, stuffed zeros, restart markers and TEM stand alone: inside scans, keep looking.
        if marker in (0xFF, 0x00, 0x01) or 0xD0 <= marker <= 0xD7:
            position += 1
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        yield marker, data[position + 4 : position + 2 + length]
        position += 2 + length


def _has_gps_ifd(tiff: bytes) -> bool:
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    tags = (struct.unpack_from(order + "H", tiff, ifd + 2 + 12 * i)[0] for i in range(count))
    return 0x8825 in tags


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
