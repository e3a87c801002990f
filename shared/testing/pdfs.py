"""PDFs for tests, made here: a plain newsletter, and the kinds an attachment upload must refuse (scripts,
launch actions, embedded files, password protection, damage, polyglots)."""

import io
import zipfile

from pypdf import PdfReader, PdfWriter
from pypdf.actions import JavaScript


def build_pdf(objects: list[bytes], root: int = 1, version: bytes = b"1.7") -> bytes:
    """A PDF of ``objects`` (object n is objects[n - 1], without its ``n 0 obj`` frame), with a correct
    cross-reference table and trailer."""
    out = io.BytesIO()
    out.write(b"%PDF-" + version + b"\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(
        b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref)
    )
    return out.getvalue()


def _page_objects(text: bytes, catalog_extra: bytes = b"", page_extra: bytes = b"") -> list[bytes]:
    content = b"BT /F1 18 Tf 72 720 Td (" + text + b") Tj ET"
    return [
        b"<< /Type /Catalog /Pages 2 0 R " + catalog_extra + b" >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> " + page_extra + b" >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]


def newsletter(text: bytes = b"Nieuwsbrief december: de kerstviering is op 18 december.") -> bytes:
    """A plain one-page PDF with a line of text and a link, as a school's newsletter is."""
    objects = _page_objects(text, page_extra=b"/Annots [6 0 R]")
    objects.append(
        b"<< /Type /Annot /Subtype /Link /Rect [72 700 300 720]"
        b" /A << /S /URI /URI (https://school.example/agenda) >> >>"
    )
    return build_pdf(objects)


def with_many_pages(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(595, 842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def with_javascript() -> bytes:
    """Runs a script when opened (an /OpenAction), written by pypdf as a real tool would."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(newsletter())))
    writer.add_open_action(JavaScript("app.alert('hallo');"))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def with_hidden_javascript() -> bytes:
    """A script behind an obfuscated name (``#61`` is ``a``) in a page's additional actions."""
    return build_pdf(
        _page_objects(b"Nieuws", page_extra=b"/AA << /O << /S /J#61vaScript /J#53 (app.alert(1)) >> >>")
    )


def with_script_link() -> bytes:
    """A link whose target is a script rather than a web page."""
    return build_pdf(
        _page_objects(
            b"Nieuws",
            page_extra=b"/Annots [<< /Type /Annot /Subtype /Link /Rect [0 0 100 100]"
            b" /A << /S /URI /URI (javascript:alert(document.domain)) >> >>]",
        )
    )


def with_launch_action() -> bytes:
    return build_pdf(
        _page_objects(b"Nieuws", catalog_extra=b"/OpenAction << /S /Launch /F (cmd.exe) /NewWindow true >>")
    )


def with_embedded_file() -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(newsletter())))
    writer.add_attachment("leerlingen.csv", b"naam,adres\nSem,Dorpsstraat 1\n")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def encrypted() -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(newsletter())))
    writer.encrypt(user_password="", owner_password="geheim", algorithm="AES-128")  # noqa: S106 - a test file
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def html_named_pdf() -> bytes:
    return b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>\n"


def html_then_pdf() -> bytes:
    """A web page whose first kilobyte also holds a PDF header: readers would open it as a PDF."""
    return b"<html><script>alert(1)</script><!--\n" + newsletter() + b"-->"


def pdf_with_zip() -> bytes:
    """A PDF with a ZIP archive after its end: a ZIP reader opens it as an archive."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("index.html", "<script>alert(1)</script>")
    return newsletter() + archive.getvalue()


def pdf_with_zip_inside() -> bytes:
    """A ZIP archive inside a PDF's stream, its end record near the file's end, the PDF itself intact."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("index.html", "<script>alert(1)</script>")
    data = archive.getvalue()
    objects = _page_objects(b"Nieuws")
    objects.append(b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
    return build_pdf(objects)
