"""Secrets never reach a log, at any level: a whole scenario at DEBUG, on S3 storage, then
the log is searched for every secret the scenario issued or sent and every secret the
store holds."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import peewee
import pytest
import requests

from server.database.connection import open_database
from server.database.models import ApiKey, ServiceSecret, Session, User
from tests.support.processes import CrmgateProcess
from tests.support.s3 import rclone_s3

PASSWORD = "a password never logged"
HOST = "acme.test"


@pytest.fixture
def debug_crmgate(
    database_url: str, tmp_path: Path
) -> Iterator[tuple[CrmgateProcess, dict[str, str]]]:
    with rclone_s3(tmp_path / "s3" / "data", "objects") as s3:
        env = {
            **s3.env,
            "CRMGATE_STORAGE_URL": "s3://objects/crmgate",
            "CRMGATE_DATABASE_URL": database_url,
            "CRMGATE_LOG_LEVEL": "DEBUG",
        }
        with CrmgateProcess.start(tmp_path / "data", env=env) as crmgate:
            yield crmgate, env


def call(crmgate: CrmgateProcess, method: str, path: str, **options: object) -> requests.Response:
    headers = {"Host": HOST, **options.pop("headers", {})}  # type: ignore[dict-item]
    return requests.request(method, crmgate.http_url + path, headers=headers, timeout=30, **options)  # type: ignore[arg-type]


def test_a_debug_log_holds_no_secret(
    debug_crmgate: tuple[CrmgateProcess, dict[str, str]], database_url: str
) -> None:
    crmgate, env = debug_crmgate
    crmgate.admin("tenant", "create", "acme", "--host", HOST)
    crmgate.admin("contact", "create", "--tenant", "acme", "--email", "ada@acme.test")
    crmgate.admin(
        "user", "create", "--tenant", "acme", "--email", "u@acme.test",
        "--password", PASSWORD, "--plan", "paid",
    )  # fmt: skip
    c2c_key = crmgate.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c")
    close_key = crmgate.admin("apikey", "create", "--tenant", "acme", "--kind", "close")
    contents = {
        name: f"{name}-{secrets.token_hex(16)}".encode() for name in ("c2c", "close", "import")
    }
    sent = [c2c_key, close_key, PASSWORD, "a wrong password", "c2c_" + secrets.token_urlsafe(32)]
    sent.append(env["AWS_SECRET_ACCESS_KEY"])

    c2c = {"Authorization": f"Bearer {c2c_key}", "X-Api-Version": "v1"}
    attached = call(crmgate, "POST", "/api/c2c/contacts/assets", headers=c2c, json={
        "email": "ada@acme.test",
        "files": [{"filename": "notes.csv", "mime_type": "text/csv",
                   "content": base64.b64encode(contents["c2c"]).decode()}],
    })  # fmt: skip
    assert attached.status_code == 201, attached.text
    wrong = {"Authorization": f"Bearer {sent[-1]}", "X-Api-Version": "v1"}
    assert call(crmgate, "GET", "/api/c2c/health", headers=wrong).status_code == 401

    basic = "Basic " + base64.b64encode(f"{close_key}:".encode()).decode()
    sent.append(basic)
    form = call(
        crmgate, "POST", "/api/v1/files/upload/", headers={"Authorization": basic},
        json={"filename": "notes.txt", "content_type": "text/plain"},
    ).json()  # fmt: skip
    uploaded = call(
        crmgate, "POST", urlsplit(form["upload"]["url"]).path, data=form["upload"]["fields"],
        files={"file": ("notes.txt", contents["close"], "text/plain")},
    )  # fmt: skip
    assert uploaded.status_code == 201, uploaded.text
    download = urlsplit(form["download"]["url"]).path
    assert call(crmgate, "GET", download).content == contents["close"]
    sent += [form["upload"]["fields"]["x-amz-signature"], download.split("/")[3]]

    wrong_password = {"Email": "u@acme.test", "Password": "a wrong password"}
    assert call(crmgate, "POST", "/api/auth", json=wrong_password).status_code == 401
    signed_in = call(
        crmgate, "POST", "/api/auth", json={"Email": "u@acme.test", "Password": PASSWORD}
    )
    assert signed_in.status_code == 200, signed_in.text
    session = signed_in.cookies["voyzu_session_id"]
    sent.append(session)
    voyzu = {"Cookie": f"voyzu_session_id={session}", "X-Request-Id": "the-last-call"}
    csv = b"Email,FirstName\nimported@acme.test," + contents["import"] + b"\n"
    imported = call(crmgate, "POST", "/api/imports/create", headers=voyzu, json={
        "FileName": "people.csv", "Content": base64.b64encode(csv).decode(),
    })  # fmt: skip
    assert imported.status_code == 200, imported.text

    crmgate.log_record("the-last-call")  # every earlier line is written by now
    held = stored_secrets(database_url)
    log = "\n".join(crmgate.output)
    assert '"level": "debug"' in log  # the scenario did run at DEBUG
    file_bytes = [text for content in contents.values() for text in encodings(content)]
    found = [secret for secret in [*sent, *held, *file_bytes] if secret in log]
    assert found == []


def encodings(content: bytes) -> list[str]:
    """A file's content as it could be written: as text, and in base64 from every offset."""
    return [content.decode()] + [
        base64.b64encode(content[start:]).decode()[:16] for start in range(3)
    ]


def stored_secrets(database_url: str) -> list[str]:
    """Every secret the store holds: key, session and password hashes, signing keys."""
    from server.database.connection import database

    connection: peewee.Database = open_database(database_url)
    database.initialize(connection)
    try:
        return [
            *(row.secret_hash for row in ApiKey.select()),
            *(row.token_hash for row in Session.select()),
            *(row.password_hash for row in User.select()),
            *(row.value for row in ServiceSecret.select()),
        ]
    finally:
        connection.close()
