"""POST /api/c2c/contacts/assets end to end, against a real `crmgate serve`."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import grpc
import peewee
import pytest
import requests
from c2c.v1 import contact_assets_pb2 as pb
from c2c.v1 import contact_assets_pb2_grpc
from grpc_status import rpc_status
from PIL import Image

from gateway.contract import error_info, field_violations
from server.database.connection import open_database
from server.database.models import Contact, Media, utcnow
from tests.support import samples
from tests.support.processes import CrmgateProcess

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def c2c(crmgate: CrmgateProcess) -> dict[str, str]:
    crmgate.admin("tenant", "create", "acme")
    crmgate.admin("tenant", "create", "hola", "--locale", "es")
    contact = crmgate.admin("contact", "create", "--tenant", "acme", "--email", "User@Example.com")
    crmgate.admin("contact", "create", "--tenant", "hola", "--email", "ana@hola.example")
    crmgate.admin("contact", "create", "--tenant", "acme", "--email", "gone@example.com")
    return {
        "key": crmgate.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c"),
        "es_key": crmgate.admin("apikey", "create", "--tenant", "hola", "--kind", "c2c"),
        "contact": contact,
    }


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def attach(
    crmgate: CrmgateProcess,
    key: str,
    body: Any,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    answer = requests.post(
        crmgate.http_url + "/api/c2c/contacts/assets",
        data=raw if raw is not None else json.dumps(body),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "X-Api-Version": "v1",
            **(headers or {}),
        },
        timeout=120,
    )
    assert answer.headers["Content-Type"].startswith("application/json"), answer.text
    return answer.status_code, answer.json()


def one(filename: str, mime_type: str, content: bytes, **extra: str) -> dict[str, Any]:
    return {
        "email": "user@example.com",
        "files": [{"filename": filename, "mime_type": mime_type, "content": b64(content), **extra}],
    }


def stored_bytes(crmgate: CrmgateProcess, asset_uuid: str) -> bytes:
    (path,) = (crmgate.data_dir / "objects" / "media").rglob(f"{asset_uuid}/*")
    return path.read_bytes()


def test_documented_example(
    crmgate: CrmgateProcess, c2c: dict[str, str], server_db: peewee.Database
) -> None:
    pdf = samples.pdf()
    status, body = attach(
        crmgate,
        c2c["key"],
        {
            "email": "user@example.com",
            "files": [
                {"filename": "document.pdf", "mime_type": "application/pdf", "content": b64(pdf)}
            ],
        },
    )
    assert status == 201, body
    (asset,) = body["data"]["assets"]
    assert body == {
        "data": {
            "contact": {"uuid": c2c["contact"], "email": "User@Example.com"},
            "assets": [
                {
                    "uuid": asset["uuid"],
                    "name": "document.pdf",
                    "mime_type": "application/pdf",
                    "type": "file",
                    "size": len(pdf),
                    "created_at": asset["created_at"],
                }
            ],
        }
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", asset["created_at"])
    assert stored_bytes(crmgate, asset["uuid"]) == pdf
    row = Media.get(Media.uuid == asset["uuid"])
    assert (row.collection, row.disk, row.size, row.mime_type) == (
        "default",
        "public",
        len(pdf),
        "application/pdf",
    )
    assert row.contact.email == "User@Example.com"


KEPT_AS_SENT = [
    ("a.gif", "image/gif", samples.animated_gif()),
    ("a.pdf", "application/pdf", samples.pdf()),
    ("a.csv", "text/csv", samples.CSV),
    ("a.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", samples.xlsx()),
    ("a.xls", "application/vnd.ms-excel", samples.xls()),
    ("a.txt", "text/plain", samples.TEXT),
    # The aliases, each with a file libmagic reports under the other name.
    ("semi.csv", "text/csv", b"a;b;c\n1;2;3\n"),
    ("tab.csv", "text/csv", b"a\tb\n1\t2\n"),
    ("col.csv", "text/csv", b"email\nada@example.com\n"),
    ("line.csv", "text/csv", b"a,b,c\n"),
    ("prose.txt", "text/plain", b"name,email,company\nAda,ada@example.com,Acme\n"),
]


@pytest.mark.parametrize(
    ("filename", "mime_type", "content"), KEPT_AS_SENT, ids=[k[0] for k in KEPT_AS_SENT]
)
def test_files_kept_byte_for_byte(
    crmgate: CrmgateProcess, c2c: dict[str, str], filename: str, mime_type: str, content: bytes
) -> None:
    status, body = attach(crmgate, c2c["key"], one(filename, mime_type, content))
    assert status == 201, body
    (asset,) = body["data"]["assets"]
    expected_type = "image" if mime_type.startswith("image/") else "file"
    assert (asset["name"], asset["mime_type"], asset["type"], asset["size"]) == (
        filename,
        mime_type,
        expected_type,
        len(content),
    )
    assert stored_bytes(crmgate, asset["uuid"]) == content


@pytest.mark.parametrize(
    ("filename", "mime_type", "content", "mode"),
    [
        ("photo.jpeg", "image/jpeg", samples.image("JPEG"), "RGB"),
        ("logo.png", "image/png", samples.image("PNG", mode="RGBA"), "RGBA"),
        ("x.webp", "image/webp", samples.image("WEBP"), "RGB"),
        ("noext", "image/png", samples.image("PNG"), "RGB"),
    ],
)
def test_raster_images_become_webp(
    crmgate: CrmgateProcess,
    c2c: dict[str, str],
    filename: str,
    mime_type: str,
    content: bytes,
    mode: str,
) -> None:
    status, body = attach(crmgate, c2c["key"], one(filename, mime_type, content))
    assert status == 201, body
    (asset,) = body["data"]["assets"]
    assert asset["name"] == filename.rsplit(".", 1)[0] + ".webp"
    assert (asset["mime_type"], asset["type"]) == ("image/webp", "image")
    data = stored_bytes(crmgate, asset["uuid"])
    assert asset["size"] == len(data)
    stored = Image.open(io.BytesIO(data))
    assert (stored.format, stored.size, stored.mode) == ("WEBP", (32, 24), mode)


@pytest.mark.parametrize(
    "svg",
    [
        samples.SVG,
        b"\xef\xbb\xbf" + samples.SVG,
        b"\n   " + samples.SVG,
        b"<!-- drawn by hand -->\n" + samples.SVG,
    ],
)
def test_svg_variants_are_accepted(
    crmgate: CrmgateProcess, c2c: dict[str, str], svg: bytes
) -> None:
    status, body = attach(crmgate, c2c["key"], one("a.svg", "image/svg+xml", svg))
    assert status == 201, body
    (asset,) = body["data"]["assets"]
    stored = stored_bytes(crmgate, asset["uuid"])
    assert b"<rect" in stored and asset["size"] == len(stored) and asset["type"] == "image"


def test_svgs_are_stored_as_sent_and_served_sandboxed(
    crmgate: CrmgateProcess, c2c: dict[str, str]
) -> None:
    """The document says SVG is not converted: the bytes are kept exactly, and the media
    URL makes them inert (a denylist rewrite would miss `<animate>` and `<set>` tricks)."""
    hostile = samples.SVG.replace(
        b"<rect",
        b"<style>rect{fill:red}</style><script>alert(1)</script>"
        b'<a><animate attributeName="href" values="java&#9;script:alert(1)"/><text>t</text></a>'
        b'<set attributeName="onclick" to="alert(2)"/><image href="data:image/png;base64,AAAA"/>'
        b"<rect",
    )
    for document in (hostile, samples.ILLUSTRATOR_SVG, samples.LATIN1_SVG):
        status, body = attach(crmgate, c2c["key"], one("a.svg", "image/svg+xml", document))
        assert status == 201, body
        (asset,) = body["data"]["assets"]
        assert (asset["name"], asset["mime_type"], asset["size"]) == (
            "a.svg", "image/svg+xml", len(document),
        )  # fmt: skip
        assert stored_bytes(crmgate, asset["uuid"]) == document
        served = requests.get(f"{crmgate.http_url}/media/{asset['uuid']}/a.svg", timeout=10)
        assert served.content == document
        assert served.headers["Content-Type"] == "image/svg+xml"
        assert served.headers["X-Content-Type-Options"] == "nosniff"
        assert served.headers["Content-Disposition"] == "attachment"
        policy = [part.strip() for part in served.headers["Content-Security-Policy"].split(";")]
        assert "sandbox" in policy and "default-src 'none'" in policy


def test_svgs_declaring_entities_are_refused(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>'
    )
    status, body = attach(crmgate, c2c["key"], one("a.svg", "image/svg+xml", bomb))
    assert status == 422 and list(violations(body)) == ["files.0.content"], body


def violations(body: dict[str, Any]) -> dict[str, list[str]]:
    assert body["error"] == "validation_failed" and body["message"], body
    return body["errors"]


@pytest.mark.parametrize(
    ("filename", "declared", "content"),
    [
        ("a.pdf", "application/pdf", samples.image("PNG")),
        ("a.txt", "text/plain", b"<html><body><script>alert(1)</script></body></html>"),
        ("a.png", "image/png", Path("/bin/ls").read_bytes()[:200_000]),
        ("a.pdf", "application/pdf", Path("/bin/ls").read_bytes()[:200_000]),
        ("a.png", "image/png", samples.image("PNG", size=(300, 300))[:-200]),
        ("a.gif", "image/gif", b"GIF89a<script>alert(1)</script>"),
        ("a.svg", "image/svg+xml", b"<html><body>not svg</body></html>"),
        ("a.svg", "image/svg+xml", b"<svg xmlns='http://www.w3.org/2000/svg'><unclosed></svg>"),
        (
            "a.xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            b"PK\x03\x04" + b"\0" * 100,
        ),
    ],
)
def test_content_must_be_what_it_claims(
    crmgate: CrmgateProcess, c2c: dict[str, str], filename: str, declared: str, content: bytes
) -> None:
    body = {
        "email": "user@example.com",
        "files": [
            {"filename": "ok.txt", "mime_type": "text/plain", "content": b64(samples.TEXT)},
            {"filename": filename, "mime_type": declared, "content": b64(content)},
        ],
    }
    status, answer = attach(crmgate, c2c["key"], body)
    assert status == 422
    assert list(violations(answer)) == ["files.1.content"]


def test_validation_rules(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    good = {"filename": "a.txt", "mime_type": "text/plain", "content": b64(samples.TEXT)}
    cases: list[tuple[Any, list[str]]] = [
        ({"files": [good]}, ["email"]),
        ({"email": "nope", "files": [good]}, ["email"]),
        ({"email": "user@example.com"}, ["files"]),
        ({"email": "user@example.com", "files": []}, ["files"]),
        ({"email": "user@example.com", "files": [good] * 11}, ["files"]),
        ({"email": "user@example.com", "files": {"0": good}}, ["files"]),
        ({"email": "user@example.com", "files": ["x"]}, ["files.0"]),
        ({"email": "user@example.com", "files": [{**good, "filename": ""}]}, ["files.0.filename"]),
        (
            {"email": "user@example.com", "files": [{**good, "filename": "x" * 256}]},
            ["files.0.filename"],
        ),
        (
            {"email": "user@example.com", "files": [{**good, "filename": "../.."}]},
            ["files.0.filename"],
        ),
        (
            {"email": "user@example.com", "files": [{**good, "mime_type": ""}]},
            ["files.0.mime_type"],
        ),
        (
            {"email": "user@example.com", "files": [{**good, "mime_type": "text/html"}]},
            ["files.0.mime_type"],
        ),
        ({"email": "user@example.com", "files": [{**good, "content": ""}]}, ["files.0.content"]),
        (
            {"email": "user@example.com", "files": [{**good, "content": "@@@not base64"}]},
            ["files.0.content"],
        ),
        ({"email": "user@example.com", "files": [{**good, "alt": "a" * 256}]}, ["files.0.alt"]),
        (
            {"email": "user@example.com", "files": [{**good, "description": "d" * 1001}]},
            ["files.0.description"],
        ),
        ({"email": 5, "files": [good]}, ["email"]),
        (
            {"email": "user@example.com", "files": [{**good, "filename": ["a"]}]},
            ["files.0.filename"],
        ),
        ([good], [""]),
    ]
    for body, fields in cases:
        status, answer = attach(crmgate, c2c["key"], body)
        assert status == 422, (body, answer)
        assert list(violations(answer)) == fields, (body, answer)
    status, answer = attach(crmgate, c2c["key"], None, raw=b'{"email": ')
    assert status == 422 and list(violations(answer)) == []
    assert answer["message"].startswith("The body is not valid JSON")


def test_type_errors_are_worded_like_the_rest(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    status, answer = attach(crmgate, c2c["key"], {"email": 5, "files": [{"content": "%%"}]})
    assert (status, answer) == (
        422,
        {
            "error": "validation_failed",
            "message": "The email field must be a string. (and 1 more error)",
            "errors": {
                "email": ["The email field must be a string."],
                "files.0.content": ["The files.0.content field must be valid base64."],
            },
        },
    )
    status, answer = attach(crmgate, c2c["key"], [], headers={"Accept-Language": "es"})
    assert answer["errors"] == {"": ["El cuerpo debe ser un objeto."]}


def test_messages_count_every_error(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    status, answer = attach(
        crmgate,
        c2c["key"],
        {"email": "", "files": [{"filename": "", "mime_type": "text/html", "content": ""}]},
    )
    assert status == 422
    assert answer == {
        "error": "validation_failed",
        "message": "The email field is required. (and 3 more errors)",
        "errors": {
            "email": ["The email field is required."],
            "files.0.filename": ["The files.0.filename field is required."],
            "files.0.mime_type": ["The selected files.0.mime_type is invalid."],
            "files.0.content": ["The files.0.content field is required."],
        },
    }


def test_spanish_messages_same_codes(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    body = {
        "email": "",
        "files": [{"filename": "a.txt", "mime_type": "text/plain", "content": b64(samples.TEXT)}],
    }
    status, answer = attach(crmgate, c2c["es_key"], body)
    assert (status, answer["error"], answer["message"]) == (
        422,
        "validation_failed",
        "El campo email es obligatorio.",
    )
    status, answer = attach(
        crmgate, c2c["key"], body, headers={"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}
    )
    assert answer["errors"] == {"email": ["El campo email es obligatorio."]}
    status, answer = attach(
        crmgate,
        c2c["es_key"],
        one("a.txt", "text/plain", samples.TEXT) | {"email": "nadie@hola.example"},
    )
    assert (status, answer) == (
        422,
        {
            "error": "contact_not_found",
            "message": "No existe ningún contacto con ese correo electrónico.",
        },
    )


def test_tenants_may_ignore_accept_language(crmgate: CrmgateProcess) -> None:
    crmgate.admin("tenant", "create", "strict", "--ignore-accept-language")
    key = crmgate.admin("apikey", "create", "--tenant", "strict", "--kind", "c2c")
    body = {
        "email": "",
        "files": [{"filename": "a.txt", "mime_type": "text/plain", "content": b64(samples.TEXT)}],
    }
    status, answer = attach(crmgate, key, body, headers={"Accept-Language": "es"})
    assert (status, answer["message"]) == (422, "The email field is required.")


def test_filenames_are_reduced_to_base_names(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    for given, kept in (("../../etc/passwd", "passwd"), ("C:\\x\\y.pdf", "y.pdf")):
        status, body = attach(crmgate, c2c["key"], one(given, "text/plain", samples.TEXT))
        assert status == 201 and body["data"]["assets"][0]["name"] == kept
    assert not (crmgate.data_dir / "etc").exists()


def test_data_uri_prefix(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    body = one("a.txt", "text/plain", samples.TEXT)
    body["files"][0]["content"] = "data:text/plain;base64," + body["files"][0]["content"]
    status, answer = attach(crmgate, c2c["key"], body)
    assert status == 201 and answer["data"]["assets"][0]["size"] == len(samples.TEXT)


def test_contact_lookup(
    crmgate: CrmgateProcess, c2c: dict[str, str], server_db: peewee.Database
) -> None:
    status, body = attach(
        crmgate,
        c2c["key"],
        one("a.txt", "text/plain", samples.TEXT) | {"email": "  USER@example.COM "},
    )
    assert status == 201 and body["data"]["contact"]["uuid"] == c2c["contact"]
    Contact.update(deleted_at=utcnow()).where(
        Contact.email_normalized == "gone@example.com"
    ).execute()
    for email in ("gone@example.com", "ana@hola.example", "nobody@example.com"):
        status, body = attach(
            crmgate, c2c["key"], one("a.txt", "text/plain", samples.TEXT) | {"email": email}
        )
        assert (status, body) == (
            422,
            {"error": "contact_not_found", "message": "No contact with that email exists."},
        )


def test_content_type_must_be_json(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    status, body = attach(
        crmgate,
        c2c["key"],
        None,
        raw=b"email=a",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (status, body) == (
        415,
        {
            "error": "unsupported_media_type",
            "message": "The Content-Type header must be application/json.",
        },
    )


def test_size_limits(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    def text(size: int) -> dict[str, str]:
        return {"filename": "big.txt", "mime_type": "text/plain", "content": b64(b"a" * size)}

    under = 50 * MiB // 10 - 1
    status, body = attach(
        crmgate, c2c["key"], {"email": "user@example.com", "files": [text(under)] * 10}
    )
    assert status == 201 and [a["size"] for a in body["data"]["assets"]] == [under] * 10
    files = [text(under)] * 9 + [text(under + 11)]
    status, body = attach(crmgate, c2c["key"], {"email": "user@example.com", "files": files})
    assert status == 422 and list(violations(body)) == ["files"]
    status, body = attach(
        crmgate, c2c["key"], {"email": "user@example.com", "files": [text(25 * MiB)]}
    )
    assert status == 201
    status, body = attach(
        crmgate, c2c["key"], {"email": "user@example.com", "files": [text(25 * MiB + 1)]}
    )
    assert status == 422 and list(violations(body)) == ["files.0.content"]


def test_public_urls_and_internal_grpc(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    metadata = [("authorization", f"Bearer {c2c['key']}")]
    with grpc.insecure_channel(crmgate.grpc_target) as channel:
        stub = contact_assets_pb2_grpc.ContactAssetsStub(channel)
        hostile = samples.SVG.replace(b"<rect", b'<rect onload="alert(1)"')
        reply = stub.AttachAssets(
            pb.AttachAssetsRequest(
                email="user@example.com",
                files=[
                    pb.AssetUpload(
                        filename="s.svg", mime_type="image/svg+xml", content=hostile, alt="A square"
                    ),
                ],
            ),
            metadata=metadata,
            timeout=30,
        )
        asset = reply.data.assets[0]
        got = stub.GetAsset(
            pb.GetAssetRequest(uuid=asset.uuid, include_content=True), metadata=metadata
        )
        assert got.asset.alt == "A square" and got.content == hostile  # SVG is kept as sent
        listed = stub.ListContactAssets(
            pb.ListContactAssetsRequest(contact_uuid=c2c["contact"]), metadata=metadata
        )
        assert listed.assets[0].asset.uuid == asset.uuid
        served = requests.get(got.asset.url, timeout=10)
        assert served.content == got.content
        assert served.headers["Content-Type"] == "image/svg+xml"
        assert served.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in served.headers["Content-Security-Policy"]
        stub.DeleteAsset(pb.DeleteAssetRequest(uuid=asset.uuid), metadata=metadata)
        assert requests.get(got.asset.url, timeout=10).status_code == 404
        assert not list((crmgate.data_dir / "objects" / "media").rglob(f"{asset.uuid}/*"))

        with pytest.raises(grpc.RpcError) as caught:
            stub.AttachAssets(
                pb.AttachAssetsRequest(
                    email="user@example.com",
                    files=[
                        pb.AssetUpload(
                            filename="a.pdf",
                            mime_type="application/pdf",
                            content=samples.image("PNG"),
                        ),
                    ],
                ),
                metadata=metadata,
                timeout=30,
            )
        status = rpc_status.from_call(caught.value)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(status).reason == "validation_failed"
        assert [v.field for v in field_violations(status)] == ["files.0.content"]


def test_health_answers_while_images_convert(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    big = samples.image("PNG", size=(3000, 3000), compress_level=1)
    body = {
        "email": "user@example.com",
        "files": [
            {"filename": f"{i}.png", "mime_type": "image/png", "content": b64(big)}
            for i in range(6)
        ],
    }
    done = threading.Event()
    outcome: list[int] = []

    def upload() -> None:
        outcome.append(attach(crmgate, c2c["key"], body)[0])
        done.set()

    worker = threading.Thread(target=upload)
    worker.start()
    answered_during = 0
    while not done.is_set():
        answer = requests.get(
            crmgate.http_url + "/api/c2c/health",
            timeout=10,
            headers={"X-Api-Version": "v1", "X-Api-Key": c2c["key"]},
        )
        assert answer.status_code == 200
        answered_during += not done.is_set()
    worker.join()
    assert outcome == [201]
    assert answered_during >= 3


def test_a_fault_mid_request_leaves_nothing(tmp_path: Path) -> None:
    """The third of three files hits a real write error (EFBIG): no rows, no files."""
    with CrmgateProcess.start(tmp_path, max_file_bytes=2 * MiB) as server:
        server.admin("tenant", "create", "acme")
        server.admin("contact", "create", "--tenant", "acme", "--email", "user@example.com")
        key = server.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c")
        files = [
            {"filename": f"{i}.txt", "mime_type": "text/plain", "content": b64(b"line\n" * size)}
            for i, size in enumerate((20_000, 20_000, 600_000))
        ]
        status, body = attach(server, key, {"email": "user@example.com", "files": files})
        assert (status, body) == (
            500,
            {
                "error": "store_failed",
                "message": "The files could not be stored. Nothing was saved; please try again.",
            },
        )
        connection = open_database(f"sqlite:///{tmp_path}/crmgate.sqlite3")
        with connection.bind_ctx([Media]):
            assert Media.select().count() == 0
        connection.close()
        media_dir = tmp_path / "objects" / "media"
        assert [p for p in media_dir.rglob("*") if p.is_file()] == []
        records = server.wait_for_logs(lambda record: record.get("logger") == "crmgate.c2c")
        assert "File too large" in records[0]["exc"]
        # The server is still fine: a small request goes through.
        status, _ = attach(server, key, {"email": "user@example.com", "files": files[:1]})
        assert status == 201


def test_logs_hold_no_keys_or_contents(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    content = b"Quarterly numbers, not for the logs.\n" * 20
    status, _ = attach(
        crmgate,
        c2c["key"],
        one("numbers.txt", "text/plain", content),
        headers={"X-Request-Id": "c2c-log-check"},
    )
    assert status == 201
    record = crmgate.log_record("c2c-log-check")
    # The REST route's uploads reach the server as the streaming UploadAssets.
    assert (record["method"], record["status"], record["tenant"]) == (
        "/c2c.v1.ContactAssets/UploadAssets",
        "OK",
        "acme",
    )
    logged = "".join(crmgate.output)
    for secret in (c2c["key"], b64(content)[:40], "Quarterly numbers"):
        assert secret not in logged


def test_gateway_refusals_follow_the_tenants_language(
    crmgate: CrmgateProcess, c2c: dict[str, str]
) -> None:
    """Refusals the gateway makes before a call (malformed JSON, wrong types, headers) are
    worded by the same rule as the service's: the tenant's locale, then Accept-Language
    by q-value when the tenant allows it."""
    status, answer = attach(crmgate, c2c["es_key"], None, raw=b'{"email": ')
    assert (status, answer) == (
        422,
        {
            "error": "validation_failed",
            "message": "El cuerpo no es JSON válido (línea 1, columna 11).",
            "errors": {},
        },
    )
    status, answer = attach(
        crmgate, c2c["key"], {"email": 5}, headers={"Accept-Language": "en;q=0.1, es;q=0.9"}
    )
    assert answer["errors"] == {"email": ["El campo email debe ser una cadena de texto."]}
    status, answer = attach(
        crmgate, c2c["key"], {"email": 5}, headers={"Accept-Language": "fr, es"}
    )
    assert answer["message"] == "El campo email debe ser una cadena de texto."
    status, answer = attach(
        crmgate, c2c["es_key"], {"email": 5}, headers={"Accept-Language": "en, es;q=0"}
    )
    assert answer["message"] == "The email field must be a string."
    status, answer = attach(
        crmgate,
        c2c["es_key"],
        None,
        raw=b"email=a",
        headers={"Content-Type": "text/plain"},
    )
    assert (status, answer) == (
        415,
        {
            "error": "unsupported_media_type",
            "message": "La cabecera Content-Type debe ser application/json.",
        },
    )


def test_gateway_refusals_ignore_accept_language_when_the_tenant_does(
    crmgate: CrmgateProcess,
) -> None:
    crmgate.admin("tenant", "create", "pinned", "--locale", "es", "--ignore-accept-language")
    key = crmgate.admin("apikey", "create", "--tenant", "pinned", "--kind", "c2c")
    status, answer = attach(crmgate, key, {"email": []}, headers={"Accept-Language": "en"})
    assert (status, answer["errors"]) == (
        422,
        {"email": ["El campo email debe ser una cadena de texto."]},
    )
    answer = requests.get(
        crmgate.http_url + "/api/c2c/nowhere",
        headers={"Authorization": f"Bearer {key}", "Accept-Language": "en"},
        timeout=10,
    )
    assert (answer.status_code, answer.json()) == (
        404,
        {"error": "not_found", "message": "No existe la ruta /api/c2c/nowhere"},
    )


def test_without_a_valid_key_the_body_is_not_judged(
    crmgate: CrmgateProcess, c2c: dict[str, str]
) -> None:
    invalid_key = {
        "error": "invalid_api_key",
        "message": "Invalid or missing credentials.",
    }
    assert attach(crmgate, "c2c_not-a-key", None, raw=b'{"email": ') == (401, invalid_key)
    assert attach(crmgate, "c2c_not-a-key", {"email": 5}) == (401, invalid_key)
    status, answer = attach(
        crmgate, "", None, raw=b"email=a", headers={"Content-Type": "text/plain"}
    )
    assert (status, answer) == (401, invalid_key)


def test_message_locale_over_grpc(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    with grpc.insecure_channel(crmgate.grpc_target) as channel:
        stub = contact_assets_pb2_grpc.ContactAssetsStub(channel)
        for key, language, expected in (
            (c2c["key"], "es-MX,en;q=0.5", "es"),
            (c2c["key"], "de", "en"),
            (c2c["es_key"], "", "es"),
        ):
            metadata = [("authorization", f"Bearer {key}")]
            if language:
                metadata.append(("accept-language", language))
            reply = stub.GetMessageLocale(pb.GetMessageLocaleRequest(), metadata=metadata)
            assert reply.locale == expected, (key, language)


def test_split_mode_stores_every_file_as_sent(tmp_path: Path) -> None:
    """`crmgate gateway` + `crmgate server`: several files, large ones streamed from the body
    (plain base64, with spaces, as a data URI) and small ones in the manifest's wake, are
    stored exactly as sent (images as WebP), and the refusals stay the same."""
    big = samples.pdf() + os.urandom(300_000)  # still a PDF to libmagic
    odd = b"%PDF-1.4\n" + os.urandom(256 * 1024 * 3 + 5)  # not a multiple of a chunk
    spaced = " ".join(b64(big)[i : i + 76] for i in range(0, len(b64(big)), 76))
    files = [
        {"filename": "big.pdf", "mime_type": "application/pdf", "content": b64(big)},
        {"filename": "small.txt", "mime_type": "text/plain", "content": b64(samples.TEXT)},
        {"filename": "odd.pdf", "mime_type": "application/pdf", "content": b64(odd)},
        {"filename": "spaced.pdf", "mime_type": "application/pdf", "content": spaced},
        {
            "filename": "uri.pdf",
            "mime_type": "application/pdf",
            "content": "data:application/pdf;base64," + b64(odd),
        },
        {"filename": "photo.png", "mime_type": "image/png", "content": b64(samples.image("PNG"))},
    ]
    sent = [big, samples.TEXT, odd, big, odd]
    with CrmgateProcess.start_split(tmp_path) as crmgate:
        crmgate.admin("tenant", "create", "acme")
        crmgate.admin("contact", "create", "--tenant", "acme", "--email", "user@example.com")
        key = crmgate.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c")
        status, body = attach(crmgate, key, {"email": "user@example.com", "files": files})
        assert status == 201, body
        assets = body["data"]["assets"]
        assert [a["name"] for a in assets] == [
            "big.pdf",
            "small.txt",
            "odd.pdf",
            "spaced.pdf",
            "uri.pdf",
            "photo.webp",
        ]
        for asset, content in zip(assets, sent, strict=False):
            assert (asset["size"], stored_bytes(crmgate, asset["uuid"])) == (len(content), content)
        webp = stored_bytes(crmgate, assets[-1]["uuid"])
        assert Image.open(io.BytesIO(webp)).format == "WEBP" and assets[-1]["size"] == len(webp)
        # JSON's escaped slashes take the copying path: the same bytes arrive.
        escaped = json.dumps(one("esc.pdf", "application/pdf", big)).replace("/", "\\/")
        status, body = attach(crmgate, key, None, raw=escaped.encode())
        assert status == 201, body
        assert stored_bytes(crmgate, body["data"]["assets"][0]["uuid"]) == big
        # A refusal found only in the bytes (the third file is no PDF) stores nothing.
        before = sorted(p for p in (tmp_path / "objects").rglob("*") if p.is_file())
        files[2] = {
            "filename": "odd.pdf",
            "mime_type": "application/pdf",
            "content": b64(b"x" * 90_000),
        }
        status, body = attach(crmgate, key, {"email": "user@example.com", "files": files})
        assert (status, list(violations(body))) == (422, ["files.2.content"])
        files[2]["content"] = b64(odd)[:-2] + "!!"
        status, body = attach(crmgate, key, {"email": "user@example.com", "files": files})
        assert (status, list(violations(body))) == (422, ["files.2.content"])
        assert sorted(p for p in (tmp_path / "objects").rglob("*") if p.is_file()) == before


def test_upload_assets_over_grpc(crmgate: CrmgateProcess, c2c: dict[str, str]) -> None:
    """UploadAssets for internal callers: chunks may span files; a stream that does not
    match its manifest is refused and leaves no file behind."""
    metadata = [("authorization", f"Bearer {c2c['key']}")]
    first, second = samples.pdf(), samples.TEXT

    def manifest(*sizes: int) -> pb.UploadAssetsRequest:
        files = [
            pb.AssetDescription(filename="a.pdf", mime_type="application/pdf", size=sizes[0]),
            pb.AssetDescription(filename="b.txt", mime_type="text/plain", size=sizes[1]),
        ]
        return pb.UploadAssetsRequest(
            manifest=pb.AssetsManifest(email="user@example.com", files=files)
        )

    both = first + second
    with grpc.insecure_channel(crmgate.grpc_target) as channel:
        stub = contact_assets_pb2_grpc.ContactAssetsStub(channel)
        halves = [both[: len(first) + 3], both[len(first) + 3 :]]  # the first chunk spans both
        reply = stub.UploadAssets(
            iter(
                [manifest(len(first), len(second))]
                + [pb.UploadAssetsRequest(chunk=c) for c in halves]
            ),
            metadata=metadata,
            timeout=30,
        )
        assert [a.size for a in reply.data.assets] == [len(first), len(second)]
        assert [stored_bytes(crmgate, a.uuid) for a in reply.data.assets] == [first, second]
        before = sorted(p for p in (crmgate.data_dir / "objects").rglob("*") if p.is_file())
        for messages, reason in [
            (
                [manifest(len(first), len(second)), pb.UploadAssetsRequest(chunk=first)],
                "malformed_stream",
            ),
            ([manifest(len(first), 1), pb.UploadAssetsRequest(chunk=both)], "malformed_stream"),
            ([pb.UploadAssetsRequest(chunk=both)], "malformed_stream"),
            ([manifest(len(first), 0), pb.UploadAssetsRequest(chunk=first)], "validation_failed"),
        ]:
            with pytest.raises(grpc.RpcError) as caught:
                stub.UploadAssets(iter(messages), metadata=metadata, timeout=30)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_info(rpc_status.from_call(caught.value)).reason == reason
        assert sorted(p for p in (crmgate.data_dir / "objects").rglob("*") if p.is_file()) == before


def test_a_png_longer_than_webp_allows_is_a_documented_422(
    crmgate: CrmgateProcess, c2c: dict[str, str]
) -> None:
    wide = samples.image("PNG", size=(16_384, 1))
    status, body = attach(crmgate, c2c["key"], one("wide.png", "image/png", wide))
    message = (
        "The files.0.content image is more than 16383 pixels wide or high, "
        "the most a stored (WebP) image can be."
    )
    assert (status, body) == (
        422,
        {
            "error": "validation_failed",
            "message": message,
            "errors": {"files.0.content": [message]},
        },
    )
    at_the_limit = samples.image("PNG", size=(16_383, 1))
    status, body = attach(crmgate, c2c["key"], one("ok.png", "image/png", at_the_limit))
    assert status == 201 and body["data"]["assets"][0]["name"] == "ok.webp", body


def test_the_c2c_root_answers_in_the_c2c_envelope(crmgate: CrmgateProcess) -> None:
    answer = requests.get(crmgate.http_url + "/api/c2c", timeout=10)
    assert (answer.status_code, answer.json()) == (
        404,
        {"error": "not_found", "message": "No route for /api/c2c"},
    )


def test_every_c2c_request_is_logged_exactly_once(
    crmgate: CrmgateProcess, c2c: dict[str, str]
) -> None:
    """The document says all requests are logged: those the gateway refuses before any
    service sees them as well (one line from the gateway), and never twice."""
    url = crmgate.http_url + "/api/c2c/contacts/assets"
    key = {"Authorization": f"Bearer {c2c['key']}", "X-Api-Version": "v1"}
    as_json = {**key, "Content-Type": "application/json"}
    sent = {
        "no-version": ("POST", url, {"Authorization": key["Authorization"]}, b"{}"),
        "malformed": ("POST", url, as_json, b'{"email": '),
        "wrong-type": ("POST", url, as_json, b'{"email": 3, "files": "x"}'),
        "bad-base64": ("POST", url, as_json, json.dumps(one("a.txt", "text/plain", b"x")).replace('"eA=="', '"%%%"').encode()),
        "not-json": ("POST", url, {**key, "Content-Type": "text/plain"}, b"{}"),
        "unknown-path": ("GET", crmgate.http_url + "/api/c2c/nowhere", key, None),
        "wrong-verb": ("GET", url, key, None),
        "bad-key": ("GET", crmgate.http_url + "/api/c2c/health", {**key, "Authorization": "Bearer c2c_nope"}, None),
        "fine": ("GET", crmgate.http_url + "/api/c2c/health", key, None),
    }  # fmt: skip
    statuses = {}
    for name, (method, target, headers, body) in sent.items():
        answer = requests.request(
            method,
            target,
            data=body,
            headers={**headers, "X-Request-Id": f"once-{name}"},
            timeout=10,
        )
        statuses[name] = answer.status_code
    assert statuses == {
        "no-version": 400, "malformed": 422, "wrong-type": 422, "bad-base64": 422,
        "not-json": 415, "unknown-path": 404, "wrong-verb": 405, "bad-key": 401, "fine": 200,
    }  # fmt: skip
    requests.get(
        crmgate.http_url + "/api/c2c/health",
        headers={**key, "X-Request-Id": "once-last"},
        timeout=10,
    )
    crmgate.log_record("once-last")  # lines are written in order: every earlier one is in
    lines = [r for r in crmgate.log_records() if str(r.get("request_id", "")).startswith("once-")]
    counted = {name: sum(r["request_id"] == f"once-{name}" for r in lines) for name in sent}
    assert counted == dict.fromkeys(sent, 1)
    refused = next(r for r in lines if r["request_id"] == "once-unknown-path")
    assert (refused["surface"], refused["status"], refused["reason"]) == (
        "c2c", "NOT_FOUND", "route_not_found",
    )  # fmt: skip
    assert "nowhere" not in json.dumps(refused)  # the route template, never the raw path
