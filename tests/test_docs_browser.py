"""/docs in a real browser: headless Chromium (the Debian package, driven by Playwright)
loads the page, finds every described operation of each surface, and sends a request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from gateway.openapi import describe_all
from gateway.surfaces import default_surfaces
from tests.support.browser import headless_chromium
from tests.support.processes import CrmgateProcess


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrmgateProcess]:
    with CrmgateProcess.start(tmp_path_factory.mktemp("crmgate")) as process:
        yield process


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with headless_chromium() as browser:
        yield browser


def test_docs_lists_every_operation_and_tries_one(server: CrmgateProcess, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(server.http_url + "/docs")
    for name, document in describe_all(default_surfaces()).items():
        if name == "all":
            continue
        operations = sum(len(item) for item in document["paths"].values())
        section = page.locator(f"#surface-{name}")
        expect(section.locator(".opblock")).to_have_count(operations, timeout=20_000)
    expect(page.locator("#operations-ContactAssets-AttachAssets")).to_be_visible()
    expect(page.locator("#operations-Files-CreateUpload")).to_be_visible()

    # Try it: voyzu's ES module of the contacts resource needs no session.
    operation = page.locator("#operations-Crm-GetResourceClass")
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    operation.locator('input[placeholder="resource"]').fill("contacts")
    operation.locator(".execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    expect(status).to_have_text("200", timeout=20_000)
    expect(operation.locator(".request-url")).to_contain_text(
        server.http_url + "/api/contacts/class"
    )
    page.close()
