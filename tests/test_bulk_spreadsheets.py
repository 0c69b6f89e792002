"""Imports applied in batches and exports streamed, end to end through the voyzu API on
SQLite and PostgreSQL: row errors name the sheet's own rows, duplicates are decided per
row whichever batch they fall in, and exports hold exactly the tenant's contacts."""

from __future__ import annotations

import base64
import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

import openpyxl
import pytest

from server.crm.exports import CHUNK_ROWS
from server.crm.imports import BATCH_ROWS
from tests.support.processes import CrmgateProcess
from tests.support.voyzu import VoyzuClient

PASSWORD = "correct horse battery"
DUPLICATE = "A contact with this email already exists for this customer."


@pytest.fixture
def owner(crmgate: CrmgateProcess) -> Iterator[VoyzuClient]:
    """A paid user of a tenant of their own, with a text custom field `Tier`."""
    tenant = f"bulk-{uuid.uuid4().hex[:8]}"
    crmgate.admin("tenant", "create", tenant)
    email = f"owner@{tenant}.example"
    crmgate.admin(
        *("user", "create", "--tenant", tenant, "--email", email),
        *("--password", PASSWORD, "--plan", "paid"),
    )
    client = VoyzuClient(crmgate.http_url)
    client.sign_in(email, PASSWORD)
    fields = {"Fields": [{"Name": "Tier", "Type": "text"}]}
    assert client.post("/api/custom-fields/update", fields)[0] == 200
    yield client
    client.close()


def imported(client: VoyzuClient, name: str, content: bytes, **extra: Any) -> dict[str, Any]:
    body = {"FileName": name, "Content": base64.b64encode(content).decode(), **extra}
    status, result = client.post("/api/imports/create", body)
    assert status == 200, result
    return result


def everyone(client: VoyzuClient) -> list[dict[str, Any]]:
    """Every contact the client sees, oldest first."""
    status, page = client.post("/api/contacts/search", {"PageSize": 500})
    assert status == 200 and page["TotalCount"] == len(page["Rows"]), page
    return page["Rows"]


def exported(client: VoyzuClient, format_: str) -> tuple[dict[str, Any], bytes]:
    status, body = client.post("/api/exports/create", {"Format": format_})
    assert status == 200, body
    status, content = client.post(f"/api/spreadsheets/get/{body['Spreadsheet']['Id']}")
    assert status == 200
    return body["Spreadsheet"], content


def test_row_errors_name_the_sheets_own_rows(owner: VoyzuClient) -> None:
    # Blank lines count as rows (a spreadsheet shows them); a quoted line break does not.
    sheet = (
        "Email,Company\n"  # row 1
        "\n"  # row 2, blank
        "one@rows.example,Acme\n"  # row 3
        'bad-email,"two\nlines"\n'  # row 4
        ",,\n"  # row 5, blank
        "\n"  # row 6, blank
        "two@rows.example,Acme\n"  # row 7
        ",Acme\n"  # row 8
    )
    result = imported(owner, "rows.csv", sheet.encode())
    assert (result["ImportedCount"], result["Errors"]) == (
        2,
        [
            {"Row": 4, "Message": "Email is not a valid email address."},
            {"Row": 8, "Message": "Email is required."},
        ],
    )
    book = openpyxl.Workbook()
    book.active["A1"] = "Email"
    book.active["A2"] = "three@rows.example"
    book.active["A5"] = "not-an-email"  # rows 3 and 4 are blank
    book.active["A6"] = "six@rows.example"
    out = io.BytesIO()
    book.save(out)
    result = imported(owner, "rows.xlsx", out.getvalue())
    assert (result["ImportedCount"], result["Errors"]) == (
        2,
        [{"Row": 5, "Message": "Email is not a valid email address."}],
    )
    nul = b"Email,Company\nfour@rows.example,Ac\x00me\n"
    assert imported(owner, "nul.csv", nul)["Errors"] == [
        {"Row": 2, "Message": "Values must not contain NUL characters."}
    ]


def test_duplicates_in_the_file_and_against_live_contacts(owner: VoyzuClient) -> None:
    assert owner.post("/api/contacts/create", {"Email": "taken@dup.example"})[0] == 200
    gone = owner.post("/api/contacts/create", {"Email": "freed@dup.example"})[1]
    assert owner.post(f"/api/contacts/delete/{gone['Id']}")[0] == 200
    sheet = (
        "Email,FirstName\n"
        "new@dup.example,First\n"  # 2: imported
        " TAKEN@dup.example,Again\n"  # 3: a live contact has it
        "NEW@dup.example,Second\n"  # 4: row 2 took it
        "freed@dup.example,Back\n"  # 5: its contact was deleted: free
        "not-valid,x\n"  # 6
        "not-valid@dup.example,Bad\n"  # 7: first valid use of the address
        f"again@dup.example,{'x' * 101}\n"  # 8: refused, so it takes no address
        "again@dup.example,Fine\n"  # 9: imported
    )
    result = imported(owner, "dups.csv", sheet.encode())
    assert (result["ImportedCount"], result["Errors"]) == (
        4,
        [
            {"Row": 3, "Message": DUPLICATE},
            {"Row": 4, "Message": DUPLICATE},
            {"Row": 6, "Message": "Email is not a valid email address."},
            {"Row": 8, "Message": "FirstName must be at most 100 characters."},
        ],
    )
    names = sorted((row["Email"], row["FirstName"]) for row in everyone(owner))
    assert names == [
        ("again@dup.example", "Fine"),
        ("freed@dup.example", "Back"),
        ("new@dup.example", "First"),
        ("not-valid@dup.example", "Bad"),
        ("taken@dup.example", ""),
    ]


def test_batch_boundaries(owner: VoyzuClient) -> None:
    """Rows on both sides of every batch boundary: a duplicate whose first use is the last
    row of one batch, a bad row closing a batch, custom values throughout."""
    rows = [[f"p{i}@batch.example", f"tier-{i % 3}"] for i in range(2 * BATCH_ROWS + 500)]
    rows[BATCH_ROWS] = [rows[BATCH_ROWS - 1][0].upper(), "dup"]  # first row of batch 2
    rows[2 * BATCH_ROWS - 1] = ["nobody", "bad"]  # last row of batch 2
    content = "Email,Tier\n" + "".join(f"{email},{tier}\n" for email, tier in rows)
    result = imported(owner, "batches.csv", content.encode())
    assert (result["ImportedCount"], result["Errors"]) == (
        len(rows) - 2,
        [
            {"Row": BATCH_ROWS + 2, "Message": DUPLICATE},
            {"Row": 2 * BATCH_ROWS + 1, "Message": "Email is not a valid email address."},
        ],
    )
    listing = owner.post("/api/spreadsheets/list")[1]
    (sheet,) = listing["Spreadsheets"]
    assert (sheet["ImportStatus"], sheet["ImportedCount"], sheet["RowCount"]) == (
        "DONE",
        len(rows) - 2,
        len(rows),
    )
    # The export reads them back in chunks of CHUNK_ROWS: each row keeps its own value.
    assert len(rows) > CHUNK_ROWS
    about, content_out = exported(owner, "csv")
    table = list(csv.reader(io.StringIO(content_out.decode())))
    assert about["RowCount"] == len(table) - 1 == len(rows) - 2
    kept = [row for index, row in enumerate(rows) if index not in (BATCH_ROWS, 2 * BATCH_ROWS - 1)]
    assert [(line[2], line[7]) for line in table[1:]] == [(e, t) for e, t in kept]


TRICKY = [
    # FirstName, LastName, Email, Phone, Company, Tier
    ["Ada", "Lovelace", "ada@exact.example", "+44 20 1234", "Analytical, Ltd", "gold"],
    ["=HYPERLINK(1)", 'Quote "Q"', "eq@exact.example", "-5", "@corp", ""],
    ["Émile", "Ça Va", "emile@exact.example", "", "Multi\nLine", "+plus"],
]


def test_export_content_is_exact(owner: VoyzuClient) -> None:
    content = io.StringIO(newline="")
    csv.writer(content).writerows(
        [["FirstName", "LastName", "Email", "Phone", "Company", "Tier"], *TRICKY]
    )
    assert imported(owner, "exact.csv", content.getvalue().encode())["Errors"] == []
    dates = {row["Email"]: (row["CreatedDate"], row["UpdatedDate"]) for row in everyone(owner)}
    (a_created, a_updated), (e_created, e_updated), (m_created, m_updated) = (
        dates[row[2]] for row in TRICKY
    )
    about, data = exported(owner, "csv")
    assert about["RowCount"] == 3 and about["Size"] == len(data)
    assert data.decode() == (  # every cell quoted, so no reader mistakes its delimiter
        '"FirstName","LastName","Email","Phone","Company","CreatedDate","UpdatedDate","Tier"\r\n'
        f'"Ada","Lovelace","ada@exact.example","+44 20 1234","Analytical, Ltd",'
        f'"{a_created}","{a_updated}","gold"\r\n'
        f'"\'=HYPERLINK(1)","Quote ""Q""","eq@exact.example","-5","\'@corp",'
        f'"{e_created}","{e_updated}",""\r\n'
        f'"Émile","Ça Va","emile@exact.example","","Multi\nLine",'
        f'"{m_created}","{m_updated}","\'+plus"\r\n'
    )
    about, data = exported(owner, "xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    # XLSX string cells are never formulas: the exact text, typed as a string.
    assert {cell.data_type for row in sheet.iter_rows() for cell in row if cell.value} == {"s"}
    assert [list(row) for row in sheet.iter_rows(values_only=True)] == [
        [
            "FirstName",
            "LastName",
            "Email",
            "Phone",
            "Company",
            "CreatedDate",
            "UpdatedDate",
            "Tier",
        ],
        [
            "Ada",
            "Lovelace",
            "ada@exact.example",
            "+44 20 1234",
            "Analytical, Ltd",
            a_created,
            a_updated,
            "gold",
        ],
        [
            "=HYPERLINK(1)",
            'Quote "Q"',
            "eq@exact.example",
            "-5",
            "@corp",
            e_created,
            e_updated,
            None,
        ],
        [
            "Émile",
            "Ça Va",
            "emile@exact.example",
            None,
            "Multi\nLine",
            m_created,
            m_updated,
            "+plus",
        ],
    ]


def test_downloads_stream_with_the_same_http_answers(owner: VoyzuClient) -> None:
    """POST /api/spreadsheets/get/{id} streams the file (DownloadSpreadsheet) with the
    headers the one-message answer had; ?async=true still answers through the poll."""
    rows = "".join(f"p{i}@download.example,{'x' * 200}\n" for i in range(3000))
    imported(owner, "big.csv", ("Email,Company\n" + rows).encode())
    about, data = exported(owner, "csv")
    assert len(data) == about["Size"] > 600_000  # several chunks of 256 KiB
    status, body, response = owner.request("POST", f"/api/spreadsheets/get/{about['Id']}")
    assert (status, body) == (200, data)
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Length"] == str(len(data))
    missing = str(uuid.uuid4())
    assert owner.post(f"/api/spreadsheets/get/{missing}") == (
        400,
        {"ErrorMessage": f"No spreadsheet {missing}."},
    )
    assert owner.post("/api/spreadsheets/get/nope") == (
        400,
        {"ErrorMessage": "'nope' is not a spreadsheet id."},
    )
    status, started = owner.post(f"/api/spreadsheets/get/{about['Id']}?async=true")
    assert status == 200, started
    done = owner.wait_for(started["RequestId"])
    assert done["ProcessStatus"] == "PROCESSED"
    assert done["Result"] == data.decode()  # as the synchronous answer: the CSV's text
