"""Properties of spreadsheet reading and writing (server/crm/spreadsheets.py), the contract
imports and exports rely on whatever drives them: what `write` writes, `read` reads back
cell for cell (CSV cells a spreadsheet would evaluate neutralized with a leading `'`;
XLSX cells the exact text, never formulas; blank rows dropped,
headers stripped), and no file, however hostile, raises anything but SpreadsheetError."""

from __future__ import annotations

import csv
import io
import zipfile

import openpyxl
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from server.crm.spreadsheets import (
    _PLAIN,
    STANDARD_FIELDS,
    RowReader,
    SpreadsheetError,
    column_targets,
    read,
    write,
)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
#: OWASP's CSV injection starts, which the writer prefixes with `'`.
FORMULA_START = ("=", "@", "\t", "\r")

#: Cell text: any text (no surrogates, which a contact field cannot hold), and the
#: characters that matter to CSV and to spreadsheet programs.
_CELL = st.text(st.characters(codec="utf-8"), max_size=8) | st.text(
    st.sampled_from(",;\t\"'\r\n =+-@|0a\x00\x01\x0b"), max_size=6
)
_HEADER = st.text(st.characters(codec="utf-8"), max_size=8).filter(lambda h: h.strip())


def written(format_: str, headers: list[str], rows: list[list[str]]) -> tuple[bytes, int]:
    """The file `write` makes of one chunk of rows, and the rows it counted."""
    sink = io.BytesIO()
    count = write(format_, sink, headers, [rows])
    return sink.getvalue(), count


@st.composite
def _tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    width = draw(st.integers(1, 4))
    headers = draw(st.lists(_HEADER, min_size=width, max_size=width))
    rows = draw(st.lists(st.lists(_CELL, min_size=width, max_size=width), max_size=5))
    return headers, rows


def _neutralized(rows: list[list[str]]) -> list[list[str]]:
    """CSV cells as a spreadsheet must not evaluate them: `'` before a formula start, and
    before `+`/`-` text other than a plain number or phone number."""
    return [
        ["'" + c if c.startswith(FORMULA_START) or _signed_text(c) else c for c in row]
        for row in rows
    ]


def _signed_text(cell: str) -> bool:
    """`+`/`-` text the writer must neutralize; its examples are pinned in
    test_csv_neutralizes_only_what_a_spreadsheet_evaluates."""
    return cell.startswith(("+", "-")) and _PLAIN.fullmatch(cell) is None


@pytest.mark.parametrize(
    ("cell", "written_as"),
    [
        ("+1 555 0100", "+1 555 0100"),
        ("+1 (555) 0100", "+1 (555) 0100"),
        ("-5", "-5"),
        ("+2.5e3", "+2.5e3"),
        ("=SUM(A1)", "'=SUM(A1)"),
        ("@cmd", "'@cmd"),
        ("+plus", "'+plus"),
        ("-2+3", "'-2+3"),
        ("+1 555-0100", "'+1 555-0100"),
        ("\t=1", "'\t=1"),
    ],
)
def test_csv_neutralizes_only_what_a_spreadsheet_evaluates(cell: str, written_as: str) -> None:
    data, _ = written("csv", ["Phone"], [[cell]])
    assert data.decode().splitlines()[1] == '"' + written_as + '"'


def _read_back(headers: list[str], *rows: list[str]) -> tuple[list[str], list[list[str]]]:
    """What `read` gives for a file holding exactly these cells: blank rows dropped, the
    first row left is the header row, stripped."""
    table = [row for row in [headers, *rows] if any(cell.strip() for cell in row)]
    return [cell.strip() for cell in table[0]], table[1:]


# Catches: the delimiter sniffer guessing `;` or a tab for a file the writer wrote with
# commas (a cell text changes which), quoting or embedded newlines lost, a BOM or CR
# mangling the first or last cell, a formula cell or header left live.
@SETTINGS
@given(_tables())
@example((["Email;Phone"], [["a;b"]]))
@example((["a"], [["b\tc"]]))
def test_csv_reads_back_what_it_writes(table: tuple[list[str], list[list[str]]]) -> None:
    headers, rows = table
    data, count = written("csv", headers, rows)
    assert count == len(rows)
    sheet = read("export.csv", data)
    assert (sheet.headers, sheet.rows) == _read_back(*_neutralized([headers, *rows]))


# Catches: a header (a custom field's name) or cell starting with `=` written as a live
# formula (or one whose control character, dropped, uncovers a `=`), cell text XLSX cannot hold (control characters: openpyxl raises
# IllegalCharacterError) failing a whole export, numbers-looking text coming back as
# numbers, a formula cell left live.
@SETTINGS
@given(_tables())
@example((["=0", "\x08=SUM(A1)"], [["\x01@x", "+1"]]))
def test_xlsx_reads_back_what_it_writes(table: tuple[list[str], list[list[str]]]) -> None:
    headers, rows = table
    data, count = written("xlsx", headers, rows)
    assert count == len(rows)
    legal = [[ILLEGAL_CHARACTERS_RE.sub("", cell) for cell in row] for row in [headers, *rows]]
    kept = [[_xml_line_ends(cell) for cell in row] for row in legal]  # the text, never a formula
    if not any(cell.strip() for row in kept for cell in row):
        return  # nothing left to read: "no header row" (see the upload property)
    sheet = read("export.xlsx", data)
    assert (sheet.headers, sheet.rows) == _read_back(*kept)


def _xml_line_ends(text: str) -> str:
    """Cell text as XML gives it back: every CR, alone or before LF, an LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _xlsx_of(cells: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    for row in cells:
        book.active.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


_FILES = st.one_of(
    st.binary(max_size=200),
    st.text(st.sampled_from('a,;\t"\r\n\x00é'), max_size=200).map(str.encode),
    st.just(b"\xef\xbb\xbf") | st.builds(lambda: b'"' + b"x" * 200_000 + b'"'),
    st.builds(lambda names: _zip(names), st.lists(st.sampled_from(["[Content_Types].xml", "x"]))),
    st.lists(
        st.lists(
            st.none()
            | st.integers()
            | st.floats()
            | st.booleans()
            | st.text(max_size=5).map(lambda text: ILLEGAL_CHARACTERS_RE.sub("", text)),
            max_size=3,
        ),
        max_size=3,
    ).map(_xlsx_of),
)


def _zip(names: list[str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in dict.fromkeys(names):
            archive.writestr(name, "<x/>")
    return out.getvalue()


# Catches: any exception but the documented refusal (a 500 for the import) on a hostile
# upload: bytes that are not UTF-8, a field beyond csv's size limit, a NUL, a zip that is
# not a workbook, cells of every type.
@SETTINGS
@given(st.sampled_from(["a.csv", "a.xlsx", "A.CSV", "a.xls", "csv"]), _FILES)
def test_any_upload_is_a_sheet_or_a_spreadsheet_error(name: str, content: bytes) -> None:
    try:
        sheet = read(name, content)
    except SpreadsheetError as error:
        assert str(error)
        return
    assert all(isinstance(cell, str) for row in [sheet.headers, *sheet.rows] for cell in row)


_TARGETS = st.sampled_from(["FirstName", "LastName", "Email", "Phone", "Company", "custom:Tier"])


# Catches: two columns feeding one field without a refusal (one would silently overwrite
# the other), a mapping that does not win over the forgiving header match, and any
# exception but SpreadsheetError on hostile headers.
@SETTINGS
@given(
    st.lists(_HEADER | st.sampled_from(["Email", "e-mail", "E Mail", "first", "Tier", ""])),
    st.dictionaries(_HEADER | st.sampled_from(["email", "Tier"]), _TARGETS, max_size=3),
    st.lists(_CELL, max_size=6),
)
def test_columns_map_to_each_target_once(
    headers: list[str], mapping: dict[str, str], row: list[str]
) -> None:
    try:
        targets, ignored = column_targets(headers, mapping, ["Tier"])
    except SpreadsheetError:
        return
    chosen = [target for target in targets if target is not None]
    assert len(chosen) == len(set(chosen))
    assert len(targets) == len(headers)
    explicit = {header.strip().lower(): target for header, target in mapping.items()}
    for header, target in zip(headers, targets, strict=True):
        if header.lower() in explicit:
            assert target == explicit[header.lower()]
    assert ignored == [h for h, t in zip(headers, targets, strict=True) if t is None and h]
    # Each field reads its column's cell, stripped; blank without a column or a cell
    # (rows may be shorter or longer than the headers).
    cells = {target: cell.strip() for target, cell in zip(targets, row, strict=False) if target}
    fields, custom = RowReader(targets)(row)
    assert fields == tuple(cells.get(name, "") for name in STANDARD_FIELDS)
    assert custom == {
        target.removeprefix("custom:"): cells.get(target, "")
        for target in chosen
        if target.startswith("custom:")
    }


def test_cells_holding_semicolons_stay_one_column() -> None:
    """Found by the CSV property: written unquoted, `Notes` / `a;b;c` read back as three
    columns (the sniffer took `;` for the delimiter). Every cell is quoted now."""
    data, _ = written("csv", ["Notes"], [["a;b;c"], ["x;y;z"]])
    assert read("n.csv", data).rows == [["a;b;c"], ["x;y;z"]]
    assert list(csv.reader(io.StringIO(data.decode()))) == [["Notes"], ["a;b;c"], ["x;y;z"]]


def test_typed_xlsx_cells_read_as_their_fields_take_them() -> None:
    """Real dates, booleans and numbers in a workbook arrive as a date, boolean or number
    custom field takes them (they came as "2024-01-02 00:00:00" and "True", refused)."""
    from datetime import date, datetime

    data = _xlsx_of(
        [
            ["Email", "Joined", "Met", "Active", "Score", "Ratio"],
            ["a@x.example", datetime(2024, 1, 2), datetime(2024, 1, 2, 9, 30), True, 12.0, 2.5],
            ["b@x.example", date(2024, 2, 29), None, False, 7, -0.25],
        ]
    )
    sheet = read("typed.xlsx", data)
    assert sheet.rows == [
        ["a@x.example", "2024-01-02", "2024-01-02T09:30:00", "true", "12", "2.5"],
        ["b@x.example", "2024-02-29", "", "false", "7", "-0.25"],
    ]
