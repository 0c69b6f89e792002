"""The console at `/` in a real browser: headless Chromium (the Debian package, driven by
Playwright) against a live `crmgate serve --demo`, signed in with the credentials it
prints, through every flow: sign in and out, contacts (search as you type, paging,
sorting, create, edit, delete, custom fields by type), imports with live progress and
row errors (CSV and XLSX), exports with download, a contact's C2C assets; at phone and
desktop widths. Screenshots go to .build/screenshots/."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support import samples
from tests.support.browser import headless_chromium
from tests.support.processes import CrmgateProcess

SCREENSHOTS = Path(__file__).parents[1] / ".build" / "screenshots"
#: How long the page may take to reach a state (a loaded 2-core machine is slow).
DEADLINE_MS = 60_000
#: Enough rows that the import outlasts several progress reports (at most five a second,
#: server.crm.background): at ~20,000 rows a second, 20,000 rows gave the page one.
IMPORT_ROWS = 60_000
expect.set_options(timeout=DEADLINE_MS)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrmgateProcess]:
    with CrmgateProcess.start(tmp_path_factory.mktemp("crmgate"), extra=("--demo",)) as process:
        yield process


@pytest.fixture(scope="module")
def demo(server: CrmgateProcess) -> dict[str, str]:
    """The demo tenant's credentials, as `serve --demo` prints them."""
    printed = "".join(server.output)
    user = re.search(r"voyzu user: (\S+) / (\S+)", printed)
    key = re.search(r"C2C key: +(\S+)", printed)
    assert user and key, printed
    return {"email": user.group(1), "password": user.group(2), "c2c": key.group(1)}


class Api:
    """The demo user through the API itself, to arrange data and check what the console
    did (requests: Playwright's sync API holds this thread's event loop)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def post(self, path: str, body: Any = None) -> tuple[int, Any]:
        answer = self.session.post(self.base_url + path, json=body, timeout=60)
        json_answer = answer.headers.get("Content-Type", "").startswith("application/json")
        return answer.status_code, answer.json() if json_answer else answer.content


@pytest.fixture(scope="module")
def api(server: CrmgateProcess, demo: dict[str, str]) -> Iterator[Api]:
    client = Api(server.http_url)
    status, body = client.post("/api/auth", {"Email": demo["email"], "Password": demo["password"]})
    assert status == 200, body
    yield client
    client.session.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with headless_chromium() as browser:
        yield browser


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    context.set_default_timeout(DEADLINE_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext, server: CrmgateProcess) -> Iterator[Page]:
    """A fresh page on the console; fails the test on any script error in it."""
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.http_url + "/")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    yield page
    assert errors == []


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"console-{name}.png"))


def sign_in(page: Page, demo: dict[str, str]) -> None:
    form = page.locator("#view-sign-in")
    form.get_by_label("Email").fill(demo["email"])
    form.get_by_label("Password").fill(demo["password"])
    form.get_by_label("Password").press("Enter")
    expect(page.get_by_role("heading", name="Contacts")).to_be_visible()


def test_page_and_assets_are_served_with_security_and_cache_headers(
    server: CrmgateProcess,
) -> None:
    page = requests.get(server.http_url + "/", timeout=30)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-cache"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe" not in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    # No inline code: every script is a file, no style attributes or elements.
    assert not re.search(r"<script(?![^>]*\bsrc=)|<style|\sstyle=|\son\w+=", page.text)
    again = requests.get(
        server.http_url + "/", headers={"If-None-Match": page.headers["ETag"]}, timeout=30
    )
    assert again.status_code == 304 and again.content == b""
    for path in re.findall(r'(?:src|href)="(/console/[^"]+)"', page.text):
        asset = requests.get(server.http_url + path, timeout=30)
        assert asset.status_code == 200, path
        assert asset.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert asset.headers["Content-Security-Policy"] == csp
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
        stale = requests.get(
            server.http_url + re.sub(r"/console/\w+/", "/console/0/", path), timeout=30
        )
        assert stale.status_code == 404 and stale.json() == {"error": "not_found"}
    script = re.search(r'src="(/console/\w+/console\.js)"', page.text)
    assert script, page.text
    # The console speaks to the API only through the served class modules.
    source = requests.get(server.http_url + script.group(1), timeout=30).text
    assert set(re.findall(r'from "([^"]+)"', source)) == {
        "/api/auth/class",
        "/api/contacts/class",
        "/api/custom-fields/class",
        "/api/exports/class",
        "/api/imports/class",
        "/api/request/class",
    }
    assert "http://" not in source and "https://" not in source


def test_the_static_files_are_package_data() -> None:
    """Installed from a wheel, the console has its files: pyproject ships their types."""
    root = Path(__file__).parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["*"]
    static = sorted((root / "gateway" / "console" / "static").iterdir())
    assert {path.name for path in static} == {"index.html", "console.js", "console.css"}
    for path in static:
        assert any(fnmatch(path.name, pattern) for pattern in patterns), path.name


def test_sign_in_errors_keyboard_and_sign_out(page: Page, demo: dict[str, str]) -> None:
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    # Keyboard only: the first Tab reaches the skip link, then the form, in order.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#sign-in-email")).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # visible focus
    page.keyboard.type(demo["email"])
    page.keyboard.press("Tab")
    page.keyboard.type("not the password")
    page.keyboard.press("Enter")
    alert = page.locator("#sign-in-error")
    expect(alert).to_have_text("Invalid email or password.")  # the API's ErrorMessage
    expect(alert).to_have_attribute("role", "alert")
    shot(page, "sign-in-error")
    page.locator("#sign-in-password").fill(demo["password"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Contacts")).to_be_focused()
    expect(page.get_by_role("navigation", name="Sections")).to_be_visible()
    expect(page.get_by_role("link", name="Contacts")).to_have_attribute("aria-current", "page")
    # The session is a cookie: a reload stays signed in.
    page.reload()
    expect(page.get_by_role("heading", name="Contacts")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("Signed out.")
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.context.cookies() == []


@pytest.fixture(scope="module")
def zephyr(api: Api) -> None:
    """23 contacts of one company: three pages of ten."""
    for index in range(23):
        status, body = api.post(
            "/api/contacts/create",
            {"FirstName": f"Zed{index:02}", "Email": f"zed{index:02}@zephyr.example"},
        )
        assert status == 200, body


@pytest.mark.usefixtures("zephyr")
def test_contacts_search_page_sort_create_edit_delete(
    page: Page, demo: dict[str, str], api: Api
) -> None:
    sign_in(page, demo)
    searches: list[dict[str, object]] = []
    page.on(
        "request",
        lambda request: (
            request.url.endswith("/api/contacts/search")
            and searches.append(json.loads(request.post_data or "{}"))
        ),
    )
    page.get_by_label("Per page").select_option("10")
    search = page.get_by_label("Search contacts")
    search.press_sequentially("zephyr")
    caption = page.locator("#search-summary")
    expect(caption).to_have_text("23 contacts matching “zephyr”")
    typed = [body for body in searches if body.get("SearchText")]
    assert len(typed) < len("zephyr") and typed[-1]["SearchText"] == "zephyr"  # debounced
    rows = page.locator("#contacts-rows tr")
    expect(rows).to_have_count(10)
    expect(page.locator("#page-label")).to_have_text("Page 1 of 3")
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()
    expect(page.locator("th[data-sort=LastName]")).to_have_attribute("aria-sort", "ascending")
    page.locator("th[data-sort=FirstName]").get_by_role("button").click()
    expect(page.locator("th[data-sort=FirstName]")).to_have_attribute("aria-sort", "ascending")
    expect(rows.first.locator("td").first).to_have_text("Zed00")
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("#page-label")).to_have_text("Page 2 of 3")
    expect(rows.first.locator("td").first).to_have_text("Zed10")
    header = page.locator("th[data-sort=Email]")
    header.get_by_role("button").click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    header.get_by_role("button").click()
    expect(header).to_have_attribute("aria-sort", "descending")
    expect(page.locator("#page-label")).to_have_text("Page 1 of 3")
    expect(rows.first.locator("td").nth(2)).to_have_text("zed22@zephyr.example")
    assert searches[-1] == {
        "SearchText": "zephyr",
        "Page": 1,
        "PageSize": 10,
        "SortBy": "Email",
        "SortDescending": True,
    }

    # Custom fields of every type, then a contact with a value in each.
    page.locator("#custom-fields summary").click()
    for name, kind, options in (
        ("Tier", "select", "Gold, Silver"),
        ("Score", "number", ""),
        ("Since", "date", ""),
        ("Vip", "boolean", ""),
        ("Nickname", "text", ""),
    ):
        page.get_by_label("Field name").fill(name)
        page.get_by_label("Type", exact=True).select_option(kind)
        page.get_by_label("Options (select fields; comma-separated)").fill(options)
        page.get_by_role("button", name="Save field").click()
        expect(page.locator("#custom-field-list")).to_contain_text(f"{name}: {kind}")
    shot(page, "contacts")
    page.get_by_role("button", name="New contact").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("First name")).to_be_focused()
    dialog.get_by_label("First name").fill("Ada")
    dialog.get_by_label("Last name").fill("Lovelace")
    dialog.get_by_label("Email (required)").fill("ada@zephyr.example")
    dialog.get_by_label("Company").fill("Analytical")
    dialog.get_by_label("Tier (select)").select_option("Gold")
    dialog.get_by_label("Score (number)").fill("-12.5e3")
    dialog.get_by_label("Since (date)").fill("1843-07-10")
    dialog.get_by_label("Vip (boolean)").select_option("true")
    dialog.get_by_label("Nickname (text)").fill("Enchantress")
    shot(page, "contact-dialog")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(caption).to_have_text("24 contacts matching “zephyr”")
    status, found = api.post("/api/contacts/search", {"SearchText": "ada@zephyr.example"})
    assert status == 200, found
    (ada,) = found["Rows"]
    assert (ada["FirstName"], ada["LastName"], ada["Company"]) == ("Ada", "Lovelace", "Analytical")
    assert ada["CustomFields"] == {
        "Tier": "Gold",
        "Score": "-12.5e3",
        "Since": "1843-07-10",
        "Vip": "true",
        "Nickname": "Enchantress",
    }

    # A refused save shows the API's ErrorMessage in the dialog, which stays open.
    page.get_by_role("button", name="New contact").click()
    dialog.get_by_label("Email (required)").fill("zed01@zephyr.example")
    dialog.get_by_role("button", name="Save").click()
    duplicate = api.post("/api/contacts/create", {"Email": "zed01@zephyr.example"})
    assert duplicate[0] == 540
    expect(dialog.get_by_role("alert")).to_have_text(duplicate[1]["ErrorMessage"])
    dialog.get_by_role("button", name="Cancel").click()

    # Edit: the form holds the contact's values, custom ones included.
    search.fill("lovelace")
    expect(caption).to_have_text("1 contact matching “lovelace”")
    page.get_by_role("button", name="Edit ada@zephyr.example").click()
    expect(dialog.get_by_label("Tier (select)")).to_have_value("Gold")
    expect(dialog.get_by_label("Since (date)")).to_have_value("1843-07-10")
    dialog.get_by_label("Company").fill("Difference Engines")
    dialog.get_by_label("Vip (boolean)").select_option("")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(rows.first.locator("td").nth(3)).to_have_text("Difference Engines")
    edited = api.post(f"/api/contacts/get/{ada['Id']}")[1]
    assert edited["Company"] == "Difference Engines" and "Vip" not in edited["CustomFields"]

    page.once("dialog", lambda confirm: confirm.accept())
    page.get_by_role("button", name="Delete ada@zephyr.example").click()
    expect(caption).to_have_text("0 contacts matching “lovelace”")
    assert api.post(f"/api/contacts/get/{ada['Id']}")[0] == 400


def import_csv(rows: int) -> bytes:
    """`rows` contacts under headers the console cannot guess, with two bad rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Given", "Family", "Mail", "Organisation"])
    for index in range(rows):
        writer.writerow([f"Imp{index}", "Bulk", f"imp{index}@bulk.example", "Bulk Ltd"])
    writer.writerow(["Bad", "Row", "not-an-email", "Bulk Ltd"])
    writer.writerow(["Again", "Row", "imp0@bulk.example", "Bulk Ltd"])
    return out.getvalue().encode()


def test_import_shows_live_progress_and_row_errors(
    page: Page, demo: dict[str, str], api: Api
) -> None:
    sign_in(page, demo)
    page.get_by_role("link", name="Imports").click()
    expect(page.get_by_role("heading", name="Import contacts")).to_be_focused()
    page.get_by_label("CSV or XLSX file").set_input_files(
        files=[{"name": "bulk.csv", "mimeType": "text/csv", "buffer": import_csv(IMPORT_ROWS)}]
    )
    mapping = page.get_by_role("group", name="Map columns to fields")
    for header, field in (
        ("Given", "FirstName"),
        ("Family", "LastName"),
        ("Mail", "Email"),
        ("Organisation", "Company"),
    ):
        expect(mapping.get_by_label(header, exact=True)).to_have_value("")  # by its name
        mapping.get_by_label(header, exact=True).select_option(field)
    # Every value the progress bar takes, as the page sets it.
    page.evaluate(
        """() => {
        const bar = document.getElementById("import-progress");
        window.seenProgress = [];
        new MutationObserver(() => window.seenProgress.push([Math.round(performance.now()), bar.value]))
            .observe(bar, {attributes: true, attributeFilter: ["value"]});
    }"""
    )
    page.get_by_role("button", name="Import", exact=True).click()
    summary = page.locator("#import-summary")
    expect(summary).to_have_text(f"{IMPORT_ROWS} contacts imported; 2 rows refused.")
    shot(page, "import")
    seen = page.evaluate("window.seenProgress")
    seen = [value for _, value in seen]
    intermediate = {value for value in seen if 0 < value < 100}
    assert len(intermediate) >= 2, seen
    assert seen[-1] == 100 and seen == sorted(seen), seen
    expect(page.locator("#import-commentary")).to_have_text("Done")
    errors = page.locator("#import-error-rows tr")
    expect(errors).to_have_count(2)
    expect(errors.nth(0).locator("td").first).to_have_text(str(IMPORT_ROWS + 2))
    expect(errors.nth(1).locator("td").first).to_have_text(str(IMPORT_ROWS + 3))
    expect(errors.nth(0).locator("td").nth(1)).to_contain_text("email")
    expect(errors.nth(1).locator("td").nth(1)).to_have_text(
        "A contact with this email already exists for this customer."
    )
    sheets = api.post("/api/spreadsheets/list")[1]["Spreadsheets"]
    (sheet,) = [sheet for sheet in sheets if sheet["Name"] == "bulk.csv"]
    assert (sheet["Kind"], sheet["RowCount"], sheet["ImportedCount"], sheet["ImportStatus"]) == (
        "import", IMPORT_ROWS + 2, IMPORT_ROWS, "DONE",
    )  # fmt: skip
    last = f"imp{IMPORT_ROWS - 1}@bulk.example"
    (row,) = api.post("/api/contacts/search", {"SearchText": last})[1]["Rows"]
    assert (row["FirstName"], row["LastName"], row["Company"]) == (
        f"Imp{IMPORT_ROWS - 1}", "Bulk", "Bulk Ltd",
    )  # fmt: skip


def test_import_reads_xlsx_headers_for_the_mapping(
    page: Page, demo: dict[str, str], api: Api
) -> None:
    book = openpyxl.Workbook()
    book.active.append(["Correo", "Nombre", "Empresa"])
    book.active.append(["xl1@sheet.example", "Uno", "Hoja SA"])
    book.active.append(["xl2@sheet.example", "Dos", "Hoja SA"])
    out = io.BytesIO()
    book.save(out)
    sign_in(page, demo)
    page.get_by_role("link", name="Imports").click()
    page.get_by_label("CSV or XLSX file").set_input_files(
        files=[
            {"name": "hoja.xlsx", "mimeType": "application/octet-stream", "buffer": out.getvalue()}
        ]
    )
    mapping = page.get_by_role("group", name="Map columns to fields")
    expect(mapping.locator("label")).to_have_text(["Correo", "Nombre", "Empresa"])
    mapping.get_by_label("Correo").select_option("Email")
    mapping.get_by_label("Nombre").select_option("FirstName")
    mapping.get_by_label("Empresa").select_option("Company")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.locator("#import-summary")).to_have_text("2 contacts imported; 0 rows refused.")
    expect(page.locator("#import-errors")).to_be_hidden()
    found = api.post("/api/contacts/search", {"SearchText": "hoja sa", "SortBy": "Email"})[1]
    assert [(row["Email"], row["FirstName"]) for row in found["Rows"]] == [
        ("xl1@sheet.example", "Uno"),
        ("xl2@sheet.example", "Dos"),
    ]


def test_export_shows_progress_and_downloads_the_file(
    page: Page, demo: dict[str, str], api: Api, tmp_path: Path
) -> None:
    for index in range(3):
        api.post(
            "/api/contacts/create", {"Email": f"exp{index}@out.example", "Company": "Outbound"}
        )
    sign_in(page, demo)
    page.get_by_role("link", name="Exports").click()
    page.get_by_label("Contacts matching (empty: all)").fill("outbound")
    page.get_by_label("Format").select_option("csv")
    page.get_by_role("button", name="Start export").click()
    download_button = page.get_by_role("button", name=re.compile(r"^Download .*\(3 contacts\)$"))
    expect(download_button).to_be_focused()
    expect(page.locator("#export-progress")).to_have_attribute("value", "100")
    expect(page.locator("#export-commentary")).to_have_text("Done")
    shot(page, "export")
    with page.expect_download() as started:
        download_button.click()
    download = started.value
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.suffix == ".csv"
    rows = list(csv.DictReader(io.StringIO(saved.read_text("utf-8-sig"))))
    assert sorted(row["Email"] for row in rows) == [f"exp{i}@out.example" for i in range(3)]
    (sheet,) = [
        s
        for s in api.post("/api/spreadsheets/list")[1]["Spreadsheets"]
        if s["Name"] == download.suggested_filename
    ]
    assert saved.read_bytes() == api.post(f"/api/spreadsheets/get/{sheet['Id']}")[1]


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><circle r="20" cx="20" cy="20" fill="teal"/></svg>'


def test_contact_assets_show_sandboxed_thumbnails(
    page: Page, server: CrmgateProcess, demo: dict[str, str], api: Api
) -> None:
    api.post("/api/contacts/create", {"Email": "assets@media.example", "FirstName": "Media"})
    files = [
        ("photo.png", "image/png", samples.image("PNG", (60, 40)), "A red photo"),
        ("logo.svg", "image/svg+xml", SVG, "A teal circle"),
        ("terms.pdf", "application/pdf", samples.pdf(), ""),
    ]
    attached = requests.post(
        server.http_url + "/api/c2c/contacts/assets",
        headers={"Authorization": f"Bearer {demo['c2c']}", "X-Api-Version": "v1"},
        json={"email": "assets@media.example", "files": [
            {"filename": name, "mime_type": kind, "content": base64.b64encode(data).decode(), "alt": alt}
            for name, kind, data, alt in files
        ]},
        timeout=30,
    )  # fmt: skip
    assert attached.status_code == 201, attached.text
    media: dict[str, dict[str, str]] = {}
    page.on(
        "response",
        lambda response: (
            "/media/" in response.url
            and media.setdefault(response.url.rsplit("/", 1)[1], response.headers)
        ),
    )
    sign_in(page, demo)
    page.get_by_label("Search contacts").fill("media.example")
    page.get_by_role("button", name="Assets of assets@media.example").click()
    dialog = page.get_by_role("dialog", name="Assets of assets@media.example")
    expect(dialog.get_by_role("button", name="Close")).to_be_focused()
    images = dialog.get_by_role("img")
    expect(images).to_have_count(2)
    for alt in ("A red photo", "A teal circle"):
        image = dialog.get_by_role("img", name=alt)
        page.wait_for_function(
            "image => image.complete && image.naturalWidth > 0", arg=image.element_handle()
        )
    expect(dialog.get_by_role("link")).to_have_text(
        ["terms.pdf", "logo.svg", "photo.webp"]
    )  # newest first
    shot(page, "assets")
    for name in ("photo.webp", "logo.svg"):
        headers = media[name]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["content-security-policy"].endswith("; sandbox")
    assert media["logo.svg"]["content-disposition"] == "attachment"
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


@pytest.mark.usefixtures("zephyr")
@pytest.mark.parametrize("width,height", [(390, 844), (1280, 860)], ids=["phone", "desktop"])
def test_fits_phone_and_desktop_widths(
    browser: Browser, server: CrmgateProcess, demo: dict[str, str], width: int, height: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(DEADLINE_MS)
    page = context.new_page()
    page.goto(server.http_url + "/")
    sign_in(page, demo)
    expect(page.locator("#contacts-rows tr").first).to_be_visible()
    for view in ("Contacts", "Imports", "Exports"):
        page.get_by_role("link", name=view).click()
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (view, overflow)
    page.get_by_role("link", name="Contacts").click()
    expect(page.get_by_role("button", name="New contact")).to_be_in_viewport()
    page.get_by_label("Per page").select_option("10")
    page.get_by_label("Search contacts").fill("zephyr")
    expect(page.locator("#search-summary")).to_have_text("23 contacts matching “zephyr”")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, ("search results", overflow)
    page.get_by_label("Search contacts").blur()
    shot(page, "phone" if width < 600 else "desktop")
    context.close()
