"""Where an image's own bytes end, and whether a file is an image with something else riding along.

An upload is an image only up to its format's end (JPEG's EOI after the scans, PNG's IEND, the RIFF length
of a WebP, the last whole top-level box of a HEIF); anything after it is no part of the picture. Phones
append such data themselves (Samsung and Google motion photos put an MP4 after the JPEG, MPO files a second
frame), so it is cut off, not refused. A file that also reads as an archive, a PDF or a web page is refused:
that is a polyglot, made to be something else somewhere else. Synchronous, for a worker process.
"""

import mmap
import struct

# Formats that readers find at a file's start once the image's own bytes are skipped.
_SMUGGLED = (
    b"PK\x03\x04",  # ZIP (and so JAR, DOCX, APK)
    b"PK\x05\x06",  # an empty ZIP's end record
    b"%PDF",
    b"Rar!",
    b"7z\xbc\xaf",
    b"\x1f\x8b",  # gzip
    b"MZ",  # Windows executable
    b"\x7fELF",
    b"#!",
)
_MARKUP = (b"<html", b"<!doctype", b"<script", b"<svg", b"<?php", b"<?xml", b"<body", b"<iframe")
# A progressive JPEG is decoded scan by scan, each a pass over the whole picture: phones and cameras write
# about 10 (libjpeg's default progression for colour), a few encoders up to ~20; hundreds or thousands of
# (tiny) scans keep a decoder busy for a minute on one upload (the "scan bomb", CVE-2018-11813 and kin).
MAX_JPEG_SCANS = 100
# ZIP readers look for the end record in the last 64 kB (+22) of a file, wherever the archive starts.
_ZIP_END = b"PK\x05\x06"
_ZIP_TAIL = 65_536 + 22


class NotAnImage(Exception):
    """The bytes break the format's structure, or carry another format; `reason` is fit to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def image_end(path: str, content_type: str) -> int:
    """The number of bytes that make the image in the file at `path` (`content_type` as sniffed: image/jpeg,
    image/png, image/webp or image/heic). Raises NotAnImage when the structure is broken before its end, or
    when the file reads as an archive, document or page as well (a polyglot)."""
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            end = _ENDS[content_type](data)
        except (struct.error, IndexError) as exc:  # a length pointing past the end, read anyway
            raise NotAnImage("the image is damaged or incomplete") from exc
        if _is_polyglot(data, end):
            raise NotAnImage("the file holds more than an image (another kind of file is hidden in it)")
        return end


def _is_polyglot(data: mmap.mmap, end: int) -> bool:
    rest = bytes(data[end : end + 64]).lstrip(b"\x00\r\n\t ")
    if rest.startswith(_SMUGGLED) or rest.lower().startswith(_MARKUP):
        return True
    return _ends_as_zip(data)


def _ends_as_zip(data: mmap.mmap) -> bool:
    """Whether a ZIP reader would find an archive: an end record in the last 64 kB that points back to a
    central directory. Its four bytes alone would turn up by chance in about one photo in 65,000; with the
    directory's own signature where the record says, they do not. Whatever follows the record (readers
    ignore it) does not matter."""
    size = len(data)
    floor = max(0, size - _ZIP_TAIL)
    position = data.rfind(_ZIP_END, floor)
    while position != -1:
        if position + 22 <= size:
            directory_size: int = struct.unpack_from("<I", data, position + 12)[0]
            start = position - directory_size
            if start >= 0 and data[start : start + 4] in (b"PK\x01\x02", _ZIP_END):
                return True
        position = data.rfind(_ZIP_END, floor, position)
    return False


def _jpeg_end(data: mmap.mmap) -> int:
    """After the EOI that follows the first image's scans; only its first frame counts in an MPO. More than
    MAX_JPEG_SCANS scans (SOS markers) are refused before a pixel is decoded."""
    position, size, scans = 2, len(data), 0
    while position + 2 <= size:
        if data[position] != 0xFF:
            raise NotAnImage("the JPEG's structure is broken")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == 0xD9:
            return position + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            position += 2
            continue
        if position + 4 > size:
            break
        (length,) = struct.unpack_from(">H", data, position + 2)
        if length < 2:
            raise NotAnImage("the JPEG's structure is broken")
        position += 2 + length
        if marker == 0xDA:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise NotAnImage(
                    f"the JPEG is made of too many scans (more than {MAX_JPEG_SCANS}; a camera writes about 10)"
                )
            position = _after_scan(data, position)
    raise NotAnImage("the image is damaged or incomplete")


def _after_scan(data: mmap.mmap, position: int) -> int:
    # Entropy-coded data: a 0xFF is either stuffed (FF 00), a restart marker or the next marker.
    while (position := data.find(b"\xff", position)) != -1 and position + 1 < len(data):
        following = data[position + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            position += 1 if following == 0xFF else 2
            continue
        return position
    raise NotAnImage("the image is damaged or incomplete")


def _png_end(data: mmap.mmap) -> int:
    position, size = 8, len(data)
    while position + 12 <= size:
        length: int = struct.unpack_from(">I", data, position)[0]
        kind = data[position + 4 : position + 8]
        position += 12 + length  # length, type, data, CRC
        if kind == b"IEND":
            if position > size:
                break
            return position
    raise NotAnImage("the image is damaged or incomplete")


def _webp_end(data: mmap.mmap) -> int:
    length: int = struct.unpack_from("<I", data, 4)[0]
    end = 8 + length + (length & 1)
    if end > len(data):
        raise NotAnImage("the image is damaged or incomplete")
    return end


def _heif_end(data: mmap.mmap) -> int:
    """After the last whole top-level box (ISO BMFF); a file without a meta box holds no HEIF image."""
    position, size, seen = 0, len(data), set()
    while position + 8 <= size:
        length: int = struct.unpack_from(">I", data, position)[0]
        kind = data[position + 4 : position + 8]
        if length == 1 and position + 16 <= size:
            length = struct.unpack_from(">Q", data, position + 8)[0]
        elif length == 0:
            length = size - position
        if length < 8 or position + length > size:
            break
        seen.add(kind)
        position += length
    if not {b"ftyp", b"meta"} <= seen:
        raise NotAnImage("the image is damaged or incomplete")
    return position


_ENDS = {"image/jpeg": _jpeg_end, "image/png": _png_end, "image/webp": _webp_end, "image/heic": _heif_end}
