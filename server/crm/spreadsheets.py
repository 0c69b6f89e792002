"""Reading contacts from CSV and XLSX, and writing them back out.

Reading maps column headers to contact fields (explicitly, or by a forgiving match of the
header's name) and reports per row what is wrong; writing neutralizes cells a spreadsheet
program would run as formulas (OWASP's CSV injection advice).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import BinaryIO

import openpyxl
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, WriteOnlyCell
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

MAX_ROWS = 100_000
STANDARD_FIELDS = ("FirstName", "LastName", "Email", "Phone", "Company")
_ALIASES = {
    "firstname": "FirstName",
    "first": "FirstName",
    "givenname": "FirstName",
    "lastname": "LastName",
    "last": "LastName",
    "surname": "LastName",
    "familyname": "LastName",
    "email": "Email",
    "emailaddress": "Email",
    "mail": "Email",
    "phone": "Phone",
    "phonenumber": "Phone",
    "telephone": "Phone",
    "mobile": "Phone",
    "company": "Company",
    "organization": "Company",
    "organisation": "Company",
}
#: Every first character `_csv_safe` may act on: columns whose cells start otherwise
#: (most) are kept without a look at each cell.
_RISKY_FIRST = frozenset("=@\t\r+-")
#: A plain number or a phone number (`-5`, `+1 555 0100`, `+1 (555) 0100`): shown as
#: typed, so left as is; other text starting with `+` or `-` would be evaluated.
_PLAIN = re.compile(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?|\+?\d[\d ().]*\d")
#: A cell a spreadsheet program would evaluate: one starting with `=`, `@`, a tab or a
#: carriage return, whatever follows; or with `+`/`-`, unless plain (one match per cell,
#: no call: exports check millions).
_UNSAFE = re.compile(rf"[=@\t\r]|(?=[+-])(?!(?:{_PLAIN.pattern})\Z)")


class SpreadsheetError(Exception):
    """The file as a whole cannot be read (format, encoding, size)."""


@dataclass(frozen=True)
class Sheet:
    headers: list[str]
    rows: list[list[str]]
    #: Each row's number as a spreadsheet program shows it (blank rows count; the header
    #: is usually 1), for row errors the user can find.
    numbers: list[int]


def spreadsheet_format(file_name: str) -> str:
    extension = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    if extension not in ("csv", "xlsx"):
        raise SpreadsheetError("FileName must end in .csv or .xlsx.")
    return extension


def read(file_name: str, content: bytes) -> Sheet:
    if not content:
        raise SpreadsheetError("The spreadsheet is empty.")
    rows = _read_csv(content) if spreadsheet_format(file_name) == "csv" else _read_xlsx(content)
    table = [
        (number, row) for number, row in enumerate(rows, 1) if any(cell.strip() for cell in row)
    ]
    if not table:
        raise SpreadsheetError("The spreadsheet has no header row.")
    if len(table) - 1 > MAX_ROWS:
        raise SpreadsheetError(f"The spreadsheet has more than {MAX_ROWS} rows.")
    headers = [cell.strip() for cell in table[0][1]]
    return Sheet(headers, [row for _, row in table[1:]], [number for number, _ in table[1:]])


def _read_csv(content: bytes) -> list[list[str]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SpreadsheetError("A CSV file must be UTF-8 encoded.") from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        delimiter = dialect.delimiter
    except csv.Error:
        delimiter = ","
    try:
        return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as error:
        raise SpreadsheetError(f"The CSV file is malformed: {error}.") from None


def _read_xlsx(content: bytes) -> list[list[str]]:
    try:
        book = openpyxl.load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception:  # openpyxl raises many types on a broken file; all mean "unreadable"
        raise SpreadsheetError("The file is not a readable XLSX workbook.") from None
    try:
        return [
            [_cell(value) for value in row]
            for row in book.worksheets[0].iter_rows(values_only=True)
        ]
    finally:
        book.close()


def _cell(value: object) -> str:
    """A typed XLSX cell as the text a field of that type takes: dates as YYYY-MM-DD (a
    date-time with its time), booleans as true/false, whole numbers without `.0`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def column_targets(
    headers: Sequence[str], mapping: Mapping[str, str], custom_names: Iterable[str]
) -> tuple[list[str | None], list[str]]:
    """Each column's target (a standard field, or `custom:<name>`) and the headers that
    map to nothing. `mapping` wins; otherwise headers match field names forgivingly.
    Two columns feeding one field is refused: one would silently overwrite the other."""
    customs = {_key(name): name for name in custom_names}
    explicit = {header.strip().lower(): target for header, target in mapping.items()}
    targets: list[str | None] = []
    ignored: list[str] = []
    for header in headers:
        target = explicit.get(header.lower()) or _ALIASES.get(_key(header))
        if target is None and _key(header) in customs:
            target = "custom:" + customs[_key(header)]
        if target is not None and target in targets:
            first = headers[targets.index(target)]
            raise SpreadsheetError(f"Columns {first!r} and {header!r} both map to {target}.")
        targets.append(target)
        if target is None and header:
            ignored.append(header)
    return targets, ignored


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


class RowReader:
    """A sheet's rows as contact fields, by the columns' targets (`column_targets`): where
    each field sits is worked out once, not per row, since an import reads up to MAX_ROWS."""

    def __init__(self, targets: Sequence[str | None]) -> None:
        # A field without a column reads from one past the row's end, where `__call__`
        # puts a blank: a row shorter than the headers is read as if padded with blanks.
        self._width = len(targets)
        self._blanks = [""] * (self._width + 1)
        self._standard = [
            targets.index(name) if name in targets else self._width for name in STANDARD_FIELDS
        ]
        self._custom = [
            (target[len("custom:") :], at)
            for at, target in enumerate(targets)
            if target is not None and target.startswith("custom:")
        ]

    def __call__(self, row: Sequence[str]) -> tuple[tuple[str, ...], dict[str, str]]:
        """(standard fields in STANDARD_FIELDS order, custom values by name), stripped;
        blank where the row has no such cell."""
        width = self._width
        cells = [*row[:width], *self._blanks[min(len(row), width) :]]
        fields = tuple([cells[at].strip() for at in self._standard])
        return fields, {name: cells[at].strip() for name, at in self._custom}


def write(
    format_: str,
    sink: BinaryIO,
    headers: Sequence[str],
    chunks: Iterable[Sequence[Sequence[str]]],
) -> int:
    """Write the spreadsheet into `sink` a chunk of rows at a time, as they come (XLSX
    through openpyxl's write-only mode, which keeps its sheet in a temp file); answers
    the data rows written."""
    if format_ == "csv":
        return _write_csv(sink, headers, chunks)
    return _write_xlsx(sink, headers, chunks)


def _csv_safe(cell: str) -> str:
    """A CSV cell a spreadsheet program will not evaluate: `'` before a formula, and
    before `+`/`-` text that is not a plain number or phone number (those stay as typed)."""
    return "'" + cell if _UNSAFE.match(cell) else cell


def _csv_rows(chunk: Sequence[Sequence[str]]) -> Iterable[Sequence[str]]:
    """The chunk's rows made safe a column at a time: a column none of whose cells starts
    with a risky character is kept whole (a look at each cell was a fifth of an export's
    CPU)."""
    columns: list[Sequence[str]] = list(zip(*chunk, strict=True))
    for at, column in enumerate(columns):
        if not _RISKY_FIRST.isdisjoint({cell[:1] for cell in column}):
            columns[at] = list(map(_csv_safe, column))
    return zip(*columns, strict=True)


def _write_csv(
    sink: BinaryIO, headers: Sequence[str], chunks: Iterable[Sequence[Sequence[str]]]
) -> int:
    text = io.TextIOWrapper(sink, encoding="utf-8", newline="")  # type: ignore[type-var]
    # Every cell quoted: a reader that guesses the delimiter (ours sniffs `,`, `;` and tab)
    # cannot take a `;` inside a cell for one; minimal quoting left `a;b` bare.
    writer = csv.writer(text, quoting=csv.QUOTE_ALL)
    writer.writerow([_csv_safe(header) for header in headers])  # custom field names too
    count = 0
    for chunk in chunks:
        writer.writerows(_csv_rows(chunk))
        count += len(chunk)
    text.flush()
    text.detach()  # the sink stays open: its owner closes it
    return count


def _write_xlsx(
    sink: BinaryIO, headers: Sequence[str], chunks: Iterable[Sequence[Sequence[str]]]
) -> int:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet("Contacts")
    sheet.append([_xlsx_cell(sheet, header) for header in headers])
    count = 0
    for chunk in chunks:
        for row in chunk:
            sheet.append([_xlsx_cell(sheet, cell) for cell in row])
        count += len(chunk)
    book.save(sink)
    return count


def _xlsx_cell(sheet: WriteOnlyWorksheet, value: str) -> str | WriteOnlyCell:
    """A string cell, exactly the text (no `'` added), never a formula: openpyxl makes
    any text starting with `=` one, so such text is typed as a string explicitly. The
    control characters XLSX cannot hold are dropped first (openpyxl refuses them, which
    failed the whole export); CSV keeps them."""
    text = ILLEGAL_CHARACTERS_RE.sub("", value)
    if not text.startswith("="):
        return text
    cell = WriteOnlyCell(sheet, value=text)
    cell.data_type = "s"
    return cell
