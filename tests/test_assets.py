"""The C2C media rules on real files: sniffing and aliases, decoding, conversion, SVG."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from gateway.localisation import choose_locale, translate
from server.c2c import images, sniff, svg
from server.c2c.rules import FileInput, PreparedFile, Violation, base_name, check_request, prepare
from tests.support import samples

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
XLS = "application/vnd.ms-excel"


@pytest.mark.parametrize(
    ("content", "declared"),
    [
        (samples.image("JPEG"), "image/jpeg"),
        (samples.image("PNG"), "image/png"),
        (samples.image("WEBP"), "image/webp"),
        (samples.animated_gif(), "image/gif"),
        (samples.pdf(), "application/pdf"),
        (samples.xls(), XLS),
        (samples.xlsx(), XLSX),
        (samples.SVG, "image/svg+xml"),
        (samples.CSV, "text/csv"),
        (samples.TEXT, "text/plain"),
    ],
)
def test_real_files_sniff_exactly_as_declared(content: bytes, declared: str) -> None:
    assert sniff.detect(content) == declared


def test_spreadsheets_need_the_whole_buffer() -> None:
    # What a 2 KiB prefix says, and why the whole buffer is read.
    assert sniff.detect(samples.xls()[:2048]) == "application/x-ole-storage"
    assert sniff.detect(samples.xlsx()[:2048]) == "application/zip"


@pytest.mark.parametrize(
    ("declared", "content", "detected"),
    [
        ("image/svg+xml", b"\xef\xbb\xbf" + samples.SVG, "text/plain"),
        ("image/svg+xml", b"  \n" + samples.SVG, "text/plain"),
        ("image/svg+xml", b"<!-- c -->\n" + samples.SVG, "text/plain"),
        ("text/csv", b"a;b\n1;2\n", "text/plain"),
        ("text/csv", b"a\tb\n1\t2\n", "text/plain"),
        ("text/csv", b"email\nada@example.com\n", "text/plain"),
        ("text/csv", b"a,b,c\n", "text/plain"),
        ("text/plain", samples.CSV, "text/csv"),
    ],
)
def test_each_alias_from_a_real_file(declared: str, content: bytes, detected: str) -> None:
    assert sniff.detect(content) == detected
    assert detected in sniff.ALIASES[declared]
    assert isinstance(prepare(0, FileInput("f", declared, content)), PreparedFile)


def test_no_alias_admits_any_binary_or_zip() -> None:
    every_alias = set().union(*sniff.ALIASES.values())
    assert not every_alias & {"application/octet-stream", "application/zip"}
    assert sniff.detect(b"") == "application/x-empty"
    for declared in sniff.ALLOWED_MIME_TYPES:
        assert not sniff.matches(declared, "application/octet-stream")
        assert not sniff.matches(declared, "application/zip")


def test_an_svg_accepted_through_an_alias_must_be_svg() -> None:
    violation = prepare(0, FileInput("f.svg", "image/svg+xml", b"just some text\n"))
    assert violation == Violation("files.0.content", "undecodable", {"declared": "image/svg+xml"})


def test_decompression_bombs_are_refused() -> None:
    bomb = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(bomb, "PNG")
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(images.ImageRejected) as caught:
        images.open_verified(bomb.getvalue(), "image/png")
    assert caught.value.reason == "too_many_pixels"


def test_every_gif_frame_is_decoded() -> None:
    gif = samples.animated_gif()
    images.open_verified(gif, "image/gif")
    for cut in (10, 40, 60):  # truncations that fail in different Pillow code paths
        with pytest.raises(images.ImageRejected):
            images.open_verified(gif[:-cut], "image/gif")


def test_webp_conversion_keeps_alpha_and_frames() -> None:
    rgba = Image.open(
        io.BytesIO(
            images.to_webp(images.open_verified(samples.image("PNG", mode="RGBA"), "image/png"))
        )
    )
    assert (rgba.format, rgba.mode) == ("WEBP", "RGBA")
    animated = Image.open(
        io.BytesIO(images.to_webp(images.open_verified(samples.animated_gif(), "image/gif")))
    )
    assert animated.n_frames == 3


@pytest.mark.parametrize("document", [samples.SVG, samples.ILLUSTRATOR_SVG, samples.LATIN1_SVG])
def test_standard_svgs_pass_the_check(document: bytes) -> None:
    svg.check(document)


@pytest.mark.parametrize(
    "document",
    [
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg">&a;</svg>',
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg">&x;</svg>',
        b"<html/>",
        b"<svg xmlns='http://www.w3.org/2000/svg'><unclosed></svg>",
    ],
)
def test_entities_external_references_and_other_roots_are_refused(document: bytes) -> None:
    with pytest.raises(svg.SvgRejected):
        svg.check(document)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y.pdf", "y.pdf"),
        (" report.pdf ", "report.pdf"),
        ("dir/", ""),
    ],
)
def test_base_names(given: str, kept: str) -> None:
    assert base_name(given) == kept


def test_request_rules_report_every_violation() -> None:
    violations = check_request("", [FileInput("", "text/html", b"", "a" * 256, "d" * 1001)] * 11)
    assert [(p.field, p.key) for p in violations[:2]] == [
        ("email", "required"),
        ("files", "max_items"),
    ]
    assert (violations[-1].field, violations[-1].key) == ("files.10.description", "max_chars")


def test_locales() -> None:
    assert choose_locale("en", True, "es-MX,es;q=0.9") == "es"
    assert choose_locale("en", True, "fr;q=1, es;q=0.5") == "es"
    assert choose_locale("es", True, "fr") == "es"
    assert choose_locale("es", False, "en") == "es"
    assert translate("required", "es", field="email") == "El campo email es obligatorio."


def test_text_must_be_text_all_the_way_through() -> None:
    """libmagic judges encoding on the first 64 KiB; the rest is checked too."""
    tail_binary = b"plain words\n" * 6000 + b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 64
    assert len(tail_binary) > 64 * 1024
    assert sniff.detect(tail_binary) == "application/octet-stream"
    assert isinstance(prepare(0, FileInput("a.txt", "text/plain", tail_binary)), Violation)
    assert sniff.detect("héllo wörld\n".encode("utf-16")) == "text/plain"


def test_control_characters_in_file_names() -> None:
    violations = check_request("a@example.com", [FileInput("a\nb.txt", "text/plain", b"x")])
    assert [(p.field, p.key) for p in violations] == [("files.0.filename", "filename")]
