"""Uploads, downloads and media through a stateless gateway: `crmgate server` and
`crmgate gateway` as two processes, the bytes streamed through the contract in chunks
(Files.UploadObject, Files.DownloadFile, ContactAssets.GetMedia)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import pytest
import requests
from c2c.v1 import contact_assets_pb2, contact_assets_pb2_grpc
from closeio_api import Client
from files.v1 import files_pb2, files_pb2_grpc

from tests.support.multipart import CONTENT_TYPE as FORM_CONTENT_TYPE
from tests.support.multipart import streamed_form
from tests.support.processes import CrmgateProcess

MiB = 1024 * 1024
#: How much either process's peak RSS may grow while 100 MiB pass through it.
RSS_BUDGET = 32 * MiB


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrmgateProcess]:
    with CrmgateProcess.start_split(tmp_path_factory.mktemp("split")) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def tenant(split: CrmgateProcess) -> dict[str, str]:
    split.admin("tenant", "create", "acme")
    contact = split.admin("contact", "create", "--tenant", "acme", "--email", "ada@acme.example")
    return {
        "close": split.admin("apikey", "create", "--tenant", "acme", "--kind", "close"),
        "c2c": split.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c"),
        "contact": contact,
    }


def upload_form(split: CrmgateProcess, key: str, filename: str, content_type: str) -> dict:
    api = Client(key, max_retries=1)
    api.base_url = split.http_url + "/api/v1/"
    return api.post("files/upload", {"filename": filename, "content_type": content_type})


def test_a_split_gateway_serves_uploads_downloads_and_media(
    split: CrmgateProcess, tenant: dict[str, str]
) -> None:
    form = upload_form(split, tenant["close"], "Résumé.txt", "text/plain")
    assert form["upload"]["url"] == split.http_url + "/storage/crmgate-files"
    posted = requests.post(
        form["upload"]["url"],
        data=form["upload"]["fields"],
        files={"file": ("Résumé.txt", b"Hello through the gateway", "text/plain")},
        timeout=30,
    )
    assert posted.status_code == 201, posted.text
    assert "<PostResponse>" in posted.text

    fetched = requests.get(form["download"]["url"], timeout=30)
    assert fetched.status_code == 200 and fetched.content == b"Hello through the gateway"
    assert fetched.headers["Content-Type"] == "text/plain"
    assert fetched.headers["Content-Length"] == "25"
    assert fetched.headers["Content-Disposition"] == (
        "attachment; filename=\"R_sum_.txt\"; filename*=UTF-8''R%C3%A9sum%C3%A9.txt"
    )
    assert fetched.headers["X-Content-Type-Options"] == "nosniff"

    again = requests.post(
        form["upload"]["url"],
        data=form["upload"]["fields"],
        files={"file": ("x.txt", b"other", "text/plain")},
        timeout=30,
    )
    assert again.status_code == 403 and "<Code>AccessDenied</Code>" in again.text
    unknown = requests.get(split.http_url + "/files/download/file_nope.x/a.txt", timeout=30)
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"error": "not_found", "message": "No such file."},
    )

    attached = requests.post(
        split.http_url + "/api/c2c/contacts/assets",
        json={
            "email": "ada@acme.example",
            "files": [
                {
                    "filename": "notes.txt",
                    "mime_type": "text/plain",
                    "content": base64.b64encode(b"Hello, media!\n").decode(),
                }
            ],
        },
        headers={"Authorization": f"Bearer {tenant['c2c']}", "X-Api-Version": "v1"},
        timeout=30,
    )
    assert attached.status_code == 201, attached.text
    (asset,) = attached.json()["data"]["assets"]
    with grpc.insecure_channel(split.grpc_target) as channel:
        listed = contact_assets_pb2_grpc.ContactAssetsStub(channel).ListContactAssets(
            contact_assets_pb2.ListContactAssetsRequest(contact_uuid=tenant["contact"]),
            metadata=[("authorization", f"Bearer {tenant['c2c']}")],
        )
    (details,) = [d for d in listed.assets if d.asset.uuid == asset["uuid"]]
    # `crmgate server` has no HTTP address of its own: without CRMGATE_PUBLIC_URL a
    # gRPC caller's link is a path, which any gateway serves.
    media = requests.get(split.http_url + urlsplit(details.url).path, timeout=30)
    assert media.status_code == 200 and media.content == b"Hello, media!\n"
    assert media.headers["Content-Type"] == "text/plain"
    assert media.headers["X-Content-Type-Options"] == "nosniff"
    assert media.headers["Content-Security-Policy"] == (
        "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    )
    assert media.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    missing = requests.get(split.http_url + f"/media/{asset['uuid']}/other.txt", timeout=30)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")


def test_internal_callers_stream_downloads_and_media(
    split: CrmgateProcess, tenant: dict[str, str]
) -> None:
    """The streaming RPCs need no key (the token is the capability): metadata first,
    then chunks of at most 256 KiB that add up to the length."""
    form = upload_form(split, tenant["close"], "big.bin", "application/octet-stream")
    data = os.urandom(MiB + 123)
    posted = requests.post(
        form["upload"]["url"],
        data=form["upload"]["fields"],
        files={"file": ("big.bin", data, "application/octet-stream")},
        timeout=30,
    )
    assert posted.status_code == 201, posted.text
    token, name = urlsplit(form["download"]["url"]).path.split("/")[-2:]
    with grpc.insecure_channel(split.grpc_target) as channel:
        first, *rest = files_pb2_grpc.FilesStub(channel).DownloadFile(
            files_pb2.DownloadFileRequest(token=token, name=name)
        )
        with pytest.raises(grpc.RpcError) as refused:
            list(
                files_pb2_grpc.FilesStub(channel).DownloadFile(
                    files_pb2.DownloadFileRequest(token=token + "x", name=name)
                )
            )
    assert first.metadata.content_type == "application/octet-stream"
    assert first.metadata.content_length == len(data)
    assert all(0 < len(part.chunk) <= 256 * 1024 for part in rest)
    assert b"".join(part.chunk for part in rest) == data
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def reset_peak_rss(pid: int) -> int:
    """Reset VmHWM to the current RSS (proc(5), clear_refs); returns it."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss(pid)


def test_100_mib_through_a_split_gateway_keeps_memory_flat(
    split: CrmgateProcess, tenant: dict[str, str]
) -> None:
    """Neither process's peak RSS grows by more than 32 MiB while a 100 MiB Close upload
    (then its download) passes through: the file is never whole in memory."""
    pids = {"server": split.processes[0].process.pid, "gateway": split.processes[1].process.pid}
    form = upload_form(split, tenant["close"], "big.bin", "application/octet-stream")
    block = os.urandom(MiB)
    expected = hashlib.md5(usedforsecurity=False)
    for _ in range(100):
        expected.update(block)

    before = {name: reset_peak_rss(pid) for name, pid in pids.items()}
    posted = requests.post(
        form["upload"]["url"],
        data=streamed_form(form["upload"]["fields"], 100, block),
        headers={"Content-Type": FORM_CONTENT_TYPE},
        timeout=300,
    )
    uploaded = {name: peak_rss(pid) - before[name] for name, pid in pids.items()}
    assert posted.status_code == 201, posted.text
    assert f'<ETag>"{expected.hexdigest()}"</ETag>' in posted.text

    before = {name: reset_peak_rss(pid) for name, pid in pids.items()}
    received = hashlib.md5(usedforsecurity=False)
    with requests.get(form["download"]["url"], stream=True, timeout=300) as fetched:
        assert fetched.status_code == 200
        for chunk in fetched.iter_content(MiB):
            received.update(chunk)
    downloaded = {name: peak_rss(pid) - before[name] for name, pid in pids.items()}
    assert received.hexdigest() == expected.hexdigest()

    mib = {
        step: {name: round(v / MiB, 1) for name, v in growth.items()}
        for step, growth in (("upload", uploaded), ("download", downloaded))
    }
    print(f"\npeak RSS growth (MiB) while 100 MiB passed: {mib}")
    for growth in (uploaded, downloaded):
        assert all(value <= RSS_BUDGET for value in growth.values()), (uploaded, downloaded)
