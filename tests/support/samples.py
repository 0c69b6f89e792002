"""Real files of every type C2C accepts, made here with the libraries that write them."""

from __future__ import annotations

import io

import openpyxl
import xlwt
from PIL import Image


def image(
    fmt: str, size: tuple[int, int] = (32, 24), mode: str = "RGB", **options: object
) -> bytes:
    color = (200, 30, 30, 128) if mode == "RGBA" else (200, 30, 30)
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, fmt, **options)
    return out.getvalue()


def animated_gif() -> bytes:
    colors = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    frames = [Image.new("RGB", (16, 16), color).convert("P") for color in colors]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return out.getvalue()


def pdf() -> bytes:
    return image("PDF")


def xlsx() -> bytes:
    book = openpyxl.Workbook()
    book.active.append(["Name", "Email"])
    book.active.append(["Ada", "ada@example.com"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def xls() -> bytes:
    book = xlwt.Workbook()
    sheet = book.add_sheet("Contacts")
    sheet.write(0, 0, "Name")
    sheet.write(1, 0, "Ada")
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
#: As Adobe Illustrator writes it: the standard SVG 1.1 public DOCTYPE.
ILLUSTRATOR_SVG = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
    b'"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n' + SVG
)
#: A declared encoding other than UTF-8.
LATIN1_SVG = (
    b'<?xml version="1.0" encoding="ISO-8859-1"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg"><title>Caf\xe9</title></svg>'
)
CSV = b"name,email,company\nAda,ada@example.com,Acme\nBob,bob@example.com,Globex\n"
TEXT = b"Meeting notes\nNothing to see here.\n"
