"""Whether an upload is a PDF we pass on to parents: judged by its bytes, never by its name or Content-Type.

Three steps, cheapest first. The magic: ``%PDF-1.x`` or ``%PDF-2.x`` at byte 0 (readers accept the header
anywhere in the first kilobyte, which is how a web page or an archive poses as a PDF: not here). The frame:
the file ends with ``%%EOF`` after a ``startxref`` (a cut-off upload does not), and no ZIP reader would find
an archive in its tail (a PDF+ZIP polyglot). Then the structure, parsed by pypdf: not encrypted, at most
``max_pages`` pages and ``max_objects`` objects, and no active content anywhere a reader would reach from the
trailer — JavaScript, launch/import/submit actions, embedded or attached files, rich media, XFA forms.
Children's data travels in these files; a newsletter needs none of that. Names are compared as pypdf
decodes them, so ``/J#61vaScript`` is ``/JavaScript``, and objects inside object streams are seen too.

Synchronous and CPU-bound: call it in a thread (media.attachments.api does, a few at a time).
"""

import mmap
import re
import time
from dataclasses import dataclass
from typing import Any

from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, NameObject

from media.structure import _ends_as_zip

PDF = "application/pdf"
SNIFF_BYTES = 8
_MAGIC = re.compile(rb"%PDF-[12]\.[0-9]")
# The file's last bytes: "startxref <offset> %%EOF", then at most a line end (writers add one).
_TAIL = 1024
_END = re.compile(rb"startxref\s+([0-9]+)\s+%%EOF\s*\Z")
# Keys whose mere presence means active content or a file riding along.
_ACTIVE_KEYS = frozenset(
    {"/JS", "/JavaScript", "/EmbeddedFiles", "/EmbeddedFile", "/EF", "/RichMedia", "/XFA", "/Launch"}
)
# Action and annotation kinds that run code, open programs or files, send data, or carry media.
_ACTIVE_KINDS = frozenset(
    {
        "/JavaScript",
        "/Launch",
        "/ImportData",
        "/SubmitForm",
        "/GoToE",
        "/RichMediaExecute",
        "/Rendition",
        "/Movie",
        "/Sound",
        "/EmbeddedFile",
        "/FileAttachment",
        "/RichMedia",
        "/Screen",
    }
)


# Links a newsletter may carry: to the school's web site, a form, a mail address.
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:")


class NotAcceptedPdf(Exception):
    """The upload is no PDF we accept; ``reason`` is fit to show the person who uploaded it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class PdfReport:
    pages: int
    objects: int


def looks_like_pdf(head: bytes) -> bool:
    """Whether the first SNIFF_BYTES bytes start a PDF (at byte 0, nowhere else)."""
    return _MAGIC.match(head) is not None


def judge_pdf(path: str, max_pages: int, max_objects: int, max_seconds: float = 10.0) -> PdfReport:
    """The file at ``path`` as a PDF fit to pass on, or NotAcceptedPdf saying why not. A file whose
    objects take longer than ``max_seconds`` to walk is refused as too complex (the check runs in a thread,
    which cannot be stopped from outside)."""
    with open(path, "rb") as file:
        head = file.read(SNIFF_BYTES)
        if not looks_like_pdf(head):
            raise NotAcceptedPdf("the file is not a PDF")
        _check_frame(file.fileno())
        file.seek(0)
        return _check_structure(file, max_pages, max_objects, time.monotonic() + max_seconds)


def _check_frame(fileno: int) -> None:
    with mmap.mmap(fileno, 0, access=mmap.ACCESS_READ) as data:
        size = len(data)
        tail = bytes(data[max(0, size - _TAIL) :])
        found = _END.search(tail)
        if found is None:
            raise NotAcceptedPdf("the PDF is damaged or incomplete (it does not end as a PDF ends)")
        if int(found.group(1)) >= size:
            raise NotAcceptedPdf("the PDF is damaged or incomplete (its index points past its end)")
        if _ends_as_zip(data):
            raise NotAcceptedPdf("the file holds more than a PDF (an archive is hidden in it)")


def _check_structure(file: Any, max_pages: int, max_objects: int, deadline: float) -> PdfReport:
    try:
        # strict: a damaged cross-reference table is refused, not rebuilt by guessing.
        reader = PdfReader(file, strict=True)
        if reader.is_encrypted:
            raise NotAcceptedPdf("the PDF is protected with a password; upload it without protection")
        objects = _walk(reader, max_objects, deadline)
        pages = len(reader.pages)
    except NotAcceptedPdf:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise NotAcceptedPdf("the PDF is damaged or cannot be read") from exc
    except RecursionError as exc:
        raise NotAcceptedPdf("the PDF's structure is nested too deeply") from exc
    if pages == 0:
        raise NotAcceptedPdf("the PDF has no pages")
    if pages > max_pages:
        raise NotAcceptedPdf(f"the PDF has {pages} pages; at most {max_pages} are accepted")
    return PdfReport(pages=pages, objects=objects)


def _walk(reader: PdfReader, max_objects: int, deadline: float) -> int:
    """Visit every object reachable from the trailer (indirect ones once), refusing active content;
    returns how many indirect objects were seen. Iterative: a deep structure cannot exhaust the stack."""
    seen: set[tuple[int, int]] = set()
    pending: list[Any] = [reader.trailer]
    while pending:
        item = pending.pop()
        if isinstance(item, IndirectObject):
            ref = (item.idnum, item.generation)
            if ref in seen:
                continue
            seen.add(ref)
            if len(seen) > max_objects:
                raise NotAcceptedPdf(f"the PDF has more than {max_objects} objects")
            if len(seen) % 1000 == 0 and time.monotonic() > deadline:
                raise NotAcceptedPdf("the PDF is too complex to check; save it as a simpler PDF")
            pending.append(item.get_object())
        elif isinstance(item, DictionaryObject):  # streams too: their dictionary says what they are
            _refuse_active(item)
            pending.extend(item.values())
        elif isinstance(item, ArrayObject):
            pending.extend(item)
    return len(seen)


def _plain_link(uri: Any) -> bool:
    """Whether a link goes to a web page or a mail address, or is written without a scheme ("www.…", read
    as relative): a javascript:, file: or other scheme's link is not."""
    if isinstance(uri, IndirectObject):
        uri = uri.get_object()
    text = "".join((uri.decode("latin-1") if isinstance(uri, bytes) else str(uri)).split()).lower()
    scheme = _SCHEME.match(text)
    return scheme is None or text.startswith(_LINK_SCHEMES)


def _refuse_active(entry: DictionaryObject) -> None:
    active: set[str] = set(_ACTIVE_KEYS.intersection(entry.keys()))
    if not active:
        kinds = {entry.get(k) for k in ("/S", "/Type", "/Subtype")}
        active = {str(k) for k in kinds if isinstance(k, NameObject) and k in _ACTIVE_KINDS}
    if not active and entry.get("/S") == "/URI" and not _plain_link(entry.get("/URI")):
        active = {"/URI"}
    if active:
        raise NotAcceptedPdf(
            "the PDF carries active content or hidden files "
            f"({', '.join(sorted(a.lstrip('/') for a in active))}); save it as a plain PDF and upload that"
        )
