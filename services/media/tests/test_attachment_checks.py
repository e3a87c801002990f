"""The attachment door's judgement on its own: which files pass as a PDF to hand to parents, and the names
they are kept and downloaded under."""

import time
import uuid
from pathlib import Path

import pytest

from media.attachments.domain import (
    DEFAULT_FILENAME,
    MAX_FILENAME_LENGTH,
    download_disposition,
    new_attachment_id,
    safe_filename,
)
from media.attachments.pdf import NotAcceptedPdf, judge_pdf
from shared.testing import pdfs


def saved(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "upload"
    path.write_bytes(data)
    return str(path)


def test_a_plain_newsletter_passes(tmp_path: Path) -> None:
    report = judge_pdf(saved(tmp_path, pdfs.newsletter()), 500, 1000)
    assert report.pages == 1


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (pdfs.html_named_pdf(), "not a PDF"),
        (pdfs.html_then_pdf(), "not a PDF"),
        (pdfs.pdf_with_zip(), "does not end as a PDF ends"),
        (pdfs.pdf_with_zip_inside(), "an archive is hidden in it"),
        (pdfs.with_javascript(), "JavaScript"),
        (pdfs.with_hidden_javascript(), "JS"),
        (pdfs.with_launch_action(), "Launch"),
        (pdfs.with_script_link(), "URI"),
        (pdfs.with_embedded_file(), "EmbeddedFiles"),
        (pdfs.encrypted(), "protected with a password"),
        (pdfs.newsletter()[:-40], "damaged or incomplete"),
        (pdfs.newsletter()[:200] + pdfs.newsletter()[-30:], "damaged or incomplete"),
        (pdfs.with_many_pages(12), "at most 10"),
    ],
    ids=[
        "html named .pdf",
        "html with a pdf header in its first kilobyte",
        "pdf+zip",
        "zip inside a pdf stream",
        "javascript open action",
        "obfuscated javascript name",
        "launch action",
        "javascript: link",
        "embedded file",
        "encrypted",
        "truncated",
        "cut out of the middle",
        "too many pages",
    ],
)
def test_what_is_not_a_plain_pdf_is_refused_with_a_reason(tmp_path: Path, data: bytes, says: str) -> None:
    with pytest.raises(NotAcceptedPdf) as refused:
        judge_pdf(saved(tmp_path, data), 10, 1000)
    assert says in refused.value.reason


def test_a_pdf_too_slow_to_walk_is_refused(tmp_path: Path) -> None:
    objects = pdfs._page_objects(b"Nieuws", catalog_extra=b"/Extra 6 0 R")
    objects.append(b"[" + b" ".join(b"%d 0 R" % (7 + i) for i in range(3000)) + b"]")
    objects += [b"<< /N %d >>" % i for i in range(3000)]
    with pytest.raises(NotAcceptedPdf, match="too complex"):
        judge_pdf(saved(tmp_path, pdfs.build_pdf(objects)), 10, 10_000, max_seconds=0)


def test_too_many_objects_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotAcceptedPdf, match="more than 3 objects"):
        judge_pdf(saved(tmp_path, pdfs.newsletter()), 10, 3)


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("Nieuwsbrief december.pdf", "Nieuwsbrief december.pdf"),
        ("C:\\Users\\juf\\Documents\\nieuwsbrief.PDF", "nieuwsbrief.pdf"),
        ("../../etc/passwd", "passwd.pdf"),
        ("brief\u202egpj.pdf", "briefgpj.pdf"),
        ("a\x00b\x1fc\r\nd.pdf", "ab c d.pdf"),
        ('ouder"s <info>: wat?.pdf', "ouder_s _info__ wat_.pdf"),
        ("...", DEFAULT_FILENAME),
        ("", DEFAULT_FILENAME),
        (None, DEFAULT_FILENAME),
        ("Schoolreis naar Ede \u00e9\u00e9n dag", "Schoolreis naar Ede \u00e9\u00e9n dag.pdf"),
    ],
)
def test_a_filename_is_kept_safe(raw: str | None, kept: str) -> None:
    assert safe_filename(raw) == kept


def test_a_long_filename_is_cut_and_still_ends_in_pdf() -> None:
    name = safe_filename("x" * 300 + ".pdf")
    assert len(name) == MAX_FILENAME_LENGTH
    assert name.endswith("x.pdf")


def test_the_download_disposition_follows_rfc_6266_and_5987() -> None:
    assert download_disposition("Nieuwsbrief \u00e9\u00e9n.pdf") == (
        "attachment; filename=\"Nieuwsbrief __n.pdf\"; filename*=UTF-8''Nieuwsbrief%20%C3%A9%C3%A9n.pdf"
    )


def test_attachment_ids_are_time_ordered_uuid7() -> None:
    first, second = new_attachment_id(), new_attachment_id()
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert first.int >> 80 <= second.int >> 80
    assert abs((first.int >> 80) - time.time() * 1000) < 5000
