"""crmgate on S3-compatible object storage (CRMGATE_STORAGE_URL=s3://…), against a real
S3-compatible server the suite starts (`rclone serve s3`): C2C media, Close uploads and
downloads, voyzu spreadsheets."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.support import samples
from tests.support.processes import CrmgateProcess
from tests.support.s3 import S3Server, rclone_s3
from tests.support.voyzu import VoyzuClient

BUCKET = "crmgate-objects"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[S3Server, object]]:
    """A real S3-compatible server (rclone) with crmgate's bucket."""
    with rclone_s3(tmp_path_factory.mktemp("s3") / "data", BUCKET) as server:
        yield server, server.client()


@pytest.fixture(scope="module")
def crmgate_s3(
    s3: tuple[S3Server, object], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrmgateProcess]:
    server, _ = s3
    env = {**server.env, "CRMGATE_STORAGE_URL": f"s3://{BUCKET}/objects"}
    with CrmgateProcess.start(tmp_path_factory.mktemp("s3"), env=env) as process:
        process.admin("tenant", "create", "acme")
        process.admin("contact", "create", "--tenant", "acme", "--email", "user@example.com")
        yield process


def keys(client: object, prefix: str) -> list[str]:
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)  # type: ignore[attr-defined]
    return [item["Key"] for item in listing.get("Contents", [])]


def test_c2c_media_live_in_the_bucket(
    crmgate_s3: CrmgateProcess, s3: tuple[S3Server, object]
) -> None:
    _, client = s3
    key = crmgate_s3.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c")
    body = {
        "email": "user@example.com",
        "files": [
            {
                "filename": "p.png",
                "mime_type": "image/png",
                "content": base64.b64encode(samples.image("PNG")).decode(),
            }
        ],
    }
    answer = requests.post(
        crmgate_s3.http_url + "/api/c2c/contacts/assets",
        data=json.dumps(body),
        timeout=30,
        headers={"X-Api-Version": "v1", "X-Api-Key": key, "Content-Type": "application/json"},
    )
    assert answer.status_code == 201, answer.text
    asset = answer.json()["data"]["assets"][0]
    (stored,) = [k for k in keys(client, "objects/media/") if asset["uuid"] in k]
    assert stored.endswith("/p.webp")
    data = client.get_object(Bucket=BUCKET, Key=stored)["Body"].read()  # type: ignore[attr-defined]
    assert Image.open(io.BytesIO(data)).format == "WEBP" and len(data) == asset["size"]
    served = requests.get(f"{crmgate_s3.http_url}/media/{asset['uuid']}/p.webp", timeout=10)
    assert served.content == data and served.headers["Content-Type"] == "image/webp"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert (
        not list((crmgate_s3.data_dir / "objects").rglob("*"))
        if (crmgate_s3.data_dir / "objects").exists()
        else True
    )


def test_close_uploads_and_downloads_through_the_bucket(
    crmgate_s3: CrmgateProcess, s3: tuple[S3Server, object]
) -> None:
    _, client = s3
    key = crmgate_s3.admin("apikey", "create", "--tenant", "acme", "--kind", "close")
    form = requests.post(
        crmgate_s3.http_url + "/api/v1/files/upload/",
        auth=(key, ""),
        timeout=10,
        json={"filename": "notes.txt", "content_type": "text/plain"},
    ).json()
    posted = requests.post(
        form["upload"]["url"],
        data=form["upload"]["fields"],
        files={"file": ("notes.txt", b"kept in S3", "text/plain")},
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    assert keys(client, "objects/crmgate-files/") == [
        "objects/crmgate-files/" + form["upload"]["fields"]["key"]
    ]
    fetched = requests.get(form["download"]["url"], timeout=10)
    assert fetched.content == b"kept in S3"
    assert (fetched.headers["Content-Type"], fetched.headers["Content-Length"]) == (
        "text/plain",
        "10",
    )


def test_voyzu_spreadsheets_in_the_bucket(
    crmgate_s3: CrmgateProcess, s3: tuple[S3Server, object]
) -> None:
    _, client = s3
    crmgate_s3.admin(
        "user",
        "create",
        "--tenant",
        "acme",
        "--email",
        "ada@acme.example",
        "--password",
        "a long password",
        "--plan",
        "paid",
    )
    voyzu = VoyzuClient(crmgate_s3.http_url)
    try:
        voyzu.sign_in("ada@acme.example", "a long password")
        status, body = voyzu.post("/api/exports/create", {"Format": "csv"})
        assert status == 200
        spreadsheet = body["Spreadsheet"]
        assert any(spreadsheet["Id"] in k for k in keys(client, "objects/spreadsheets/"))
        status, content = voyzu.post(f"/api/spreadsheets/get/{spreadsheet['Id']}")
        rows = list(csv.reader(io.StringIO(content.decode())))
        assert status == 200 and rows[1][2] == "user@example.com"
    finally:
        voyzu.close()


def test_unsafe_keys_are_refused_by_every_store(tmp_path: Path) -> None:
    from server.objects.local import LocalObjects
    from server.objects.s3 import S3Objects

    for store in (LocalObjects(tmp_path), S3Objects(f"s3://{BUCKET}/objects")):
        for bad in ("", "/abs", "a/../b", "a\\b", "a//b"):
            with pytest.raises(ValueError):
                store.check_key("media", bad)
