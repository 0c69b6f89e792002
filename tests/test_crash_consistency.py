"""Crash consistency: `kill -9` in the middle of an upload, restart, and the store and
object storage agree again (no row without its object, no debris once the sweep ran);
`crmgate admin fsck` on stores with planted mismatches."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import peewee
import pytest
import requests

from server import consistency
from server.c2c.media import MEDIA_BUCKET
from server.consistency import Kind
from server.database.models import Contact, FileUpload, Media, Spreadsheet, Tenant, User
from server.files.s3post.policy import PolicyError
from server.files.s3post.target import PostTarget
from server.files.uploads import UPLOAD_BUCKET, create_upload, mark_uploaded
from server.objects import ObjectStorage
from server.objects.local import LocalObjects
from tests.support import samples
from tests.support.multipart import CONTENT_TYPE as FORM_CONTENT_TYPE
from tests.support.multipart import streamed_form
from tests.support.processes import CrmgateProcess, crmgate_command, run_admin
from tests.support.s3 import rclone_s3

DEADLINE = 60.0
#: Debris of any age counts, so the sweep at restart removes all of it.
NO_GRACE = {"CRMGATE_ORPHAN_GRACE_SECONDS": "0"}


# ------------------------------------------------------------------ killed processes


def temp_files(data_dir: Path) -> list[Path]:
    return list((data_dir / "objects").rglob(".upload-*"))


def object_keys(data_dir: Path, bucket: str) -> set[str]:
    root = data_dir / "objects" / bucket
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and not path.name.startswith(".upload-")
    }


def row_keys(data_dir: Path) -> dict[str, set[str]]:
    """What the rows point at, read with sqlite3 rather than the code under test."""
    with sqlite3.connect(data_dir / "crmgate.sqlite3") as db:
        return {
            MEDIA_BUCKET: {key for (key,) in db.execute("SELECT storage_key FROM media")},
            UPLOAD_BUCKET: {
                key
                for (key,) in db.execute(
                    "SELECT key FROM file_upload WHERE uploaded_at IS NOT NULL"
                )
            },
            "spreadsheets": {key for (key,) in db.execute("SELECT storage_key FROM spreadsheet")},
        }


def assert_consistent(server: CrmgateProcess) -> None:
    """Every row has its object, every object its row, and no temp file is left."""
    rows = row_keys(server.data_dir)
    for bucket, keys in rows.items():
        assert keys == object_keys(server.data_dir, bucket), bucket
    assert temp_files(server.data_dir) == []
    assert server.admin("fsck") == "fsck: no mismatches"


def wait_for_sweep(server: CrmgateProcess) -> dict[str, object]:
    deadline = time.monotonic() + DEADLINE
    while True:
        done = [
            record
            for record in server.log_records()
            if str(record.get("msg", "")).startswith("orphan sweep done")
        ]
        if done:
            return done[0]
        assert time.monotonic() < deadline, "".join(server.output[-20:])
        time.sleep(0.02)


def in_background(send: Callable[[], object]) -> threading.Thread:
    """Run a request on a thread; a killed server makes it fail, which is expected."""

    def run() -> None:
        with contextlib.suppress(requests.RequestException):
            send()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_kill_during_a_c2c_attach(data_dir: Path) -> None:
    """Eight 2 MiB PDFs in one ~22 MB request: the server is killed while it writes
    them (a temp file is there), so some files may be in place, none has a row."""
    with CrmgateProcess.start(data_dir, env=NO_GRACE) as server:
        server.admin("tenant", "create", "acme")
        server.admin("contact", "create", "--tenant", "acme", "--email", "ada@acme.example")
        key = server.admin("apikey", "create", "--tenant", "acme", "--kind", "c2c")
        pdf = samples.pdf()
        files = [
            {
                "filename": f"doc-{index}.pdf",
                "mime_type": "application/pdf",
                "content": base64.b64encode(pdf + os.urandom(2 * 1024 * 1024)).decode(),
            }
            for index in range(8)
        ]
        body = json.dumps({"email": "ada@acme.example", "files": files})

        def attach() -> requests.Response:
            return requests.post(
                server.http_url + "/api/c2c/contacts/assets",
                data=body,
                timeout=DEADLINE,
                headers={
                    "X-Api-Version": "v1",
                    "X-Api-Key": key,
                    "Content-Type": "application/json",
                },
            )

        # The files are written in well under a second: send again until the kill lands
        # while one is being written. Earlier requests simply complete.
        for _ in range(20):
            request = in_background(attach)
            while request.is_alive() and not temp_files(data_dir):
                time.sleep(0.001)
            if temp_files(data_dir):
                server.kill()
                request.join(DEADLINE)
                break
            request.join()
        else:
            pytest.fail("no attach was caught writing its files")
    assert temp_files(data_dir), "the kill left no debris: the test proves nothing"

    with CrmgateProcess.start(data_dir, env=NO_GRACE) as server:
        wait_for_sweep(server)
        assert_consistent(server)


def test_kill_during_a_close_upload(data_dir: Path) -> None:
    """A 50 MB S3 POST killed with its temp file half written: the upload stays pending
    and can be made again."""
    with CrmgateProcess.start(data_dir, env=NO_GRACE) as server:
        server.admin("tenant", "create", "acme")
        key = server.admin("apikey", "create", "--tenant", "acme", "--kind", "close")
        form = kill_mid_upload(server, key, lambda: temp_files(data_dir))
    assert temp_files(data_dir), "the kill left no debris: the test proves nothing"

    with CrmgateProcess.start(data_dir, env=NO_GRACE) as server:
        wait_for_sweep(server)
        assert_consistent(server)
        # The URL names the first server's port; only its path matters.
        answer = requests.get(server.http_url + urlsplit(form["download"]["url"]).path, timeout=10)
        assert (answer.status_code, answer.json()["error"]) == (404, "not_found")
        upload_again(server, key)
        assert_consistent(server)


def kill_mid_upload(server: CrmgateProcess, key: str, temps: Callable[[], list[Path]]) -> dict:
    """Stream a 50 MB upload from a generator that pauses halfway; SIGKILL the server once
    the temp file holds part of it. Returns the upload form."""
    form = new_upload(server, key)
    halfway, resume = threading.Event(), threading.Event()

    def pause_halfway(index: int) -> None:
        if index == 25:
            halfway.set()
            resume.wait(DEADLINE)

    request = in_background(
        lambda: requests.post(
            form["upload"]["url"],
            data=streamed_form(
                form["upload"]["fields"], 50, os.urandom(1024 * 1024), pause_halfway
            ),
            headers={"Content-Type": FORM_CONTENT_TYPE},
            timeout=DEADLINE,
        )
    )
    assert halfway.wait(DEADLINE)
    wait_until(lambda: any(path.stat().st_size > 0 for path in temps()))
    server.kill()
    resume.set()
    request.join(DEADLINE)
    return form


def upload_again(server: CrmgateProcess, key: str) -> str:
    """A new upload after the crash completes and downloads; returns its key."""
    form = new_upload(server, key)
    posted = requests.post(
        form["upload"]["url"],
        data=form["upload"]["fields"],
        files={"file": ("big.bin", b"after the crash", "application/octet-stream")},
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    assert requests.get(form["download"]["url"], timeout=10).content == b"after the crash"
    return form["upload"]["fields"]["key"]


def test_kill_during_a_close_upload_on_s3(tmp_path: Path, s3_env: dict[str, str]) -> None:
    """The same on S3 storage, where temp files live in the temp dir (TMPDIR, here one of
    the test's own: with no grace period the sweep would take anyone's)."""
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    env = {**s3_env, **NO_GRACE, "TMPDIR": str(temp_dir)}
    data_dir = tmp_path / "data"

    def temps() -> list[Path]:
        return list(temp_dir.glob("crmgate-upload-*"))

    with CrmgateProcess.start(data_dir, env=env) as server:
        server.admin("tenant", "create", "acme")
        key = server.admin("apikey", "create", "--tenant", "acme", "--kind", "close")
        kill_mid_upload(server, key, temps)
    assert temps(), "the kill left no debris: the test proves nothing"

    with CrmgateProcess.start(data_dir, env=env) as server:
        wait_for_sweep(server)
        assert temps() == []
        assert row_keys(data_dir)[UPLOAD_BUCKET] == set() == bucket_keys(s3_env)
        stored = upload_again(server, key)
        assert row_keys(data_dir)[UPLOAD_BUCKET] == {stored} == bucket_keys(s3_env)
        assert run_admin(data_dir, "fsck", env=env) == "fsck: no mismatches"


def bucket_keys(env: dict[str, str]) -> set[str]:
    """Keys of Close uploads in the bucket, read with boto3 rather than the code under test."""
    bucket, prefix = env["CRMGATE_STORAGE_URL"].removeprefix("s3://").split("/", 1)
    start = f"{prefix}/{UPLOAD_BUCKET}/"
    listing = s3_client(env).list_objects_v2(Bucket=bucket, Prefix=start)
    return {item["Key"].removeprefix(start) for item in listing.get("Contents", [])}


def new_upload(server: CrmgateProcess, key: str) -> dict:
    answer = requests.post(
        server.http_url + "/api/v1/files/upload/",
        auth=(key, ""),
        json={"filename": "big.bin", "content_type": "application/octet-stream"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# ------------------------------------------------------------------ fsck, planted


@pytest.fixture
def planted(store: peewee.Database, tmp_path: Path) -> dict[str, object]:
    """A tenant with one of each row, each with its object, in local storage."""
    buckets = LocalObjects(tmp_path / "objects")
    tenant = Tenant.create(name="acme")
    contact = Contact.create(
        tenant=tenant, email="a@acme.example", email_normalized="a@acme.example"
    )
    user = User.create(tenant=tenant, email="u@acme.example", password_hash="x")
    media = Media.create(
        tenant=tenant,
        contact=contact,
        name="a.pdf",
        file_name="a.pdf",
        storage_key=f"tenants/{tenant.id}/media/{uuid.uuid4()}/a.pdf",
        mime_type="application/pdf",
        size=1,
        sha256="0" * 64,
    )
    buckets.write(MEDIA_BUCKET, media.storage_key, b"m")
    sheet = Spreadsheet.create(
        tenant=tenant,
        owner=user,
        name="s.csv",
        format="csv",
        kind="export",
        size=1,
        storage_key=f"tenants/{tenant.id}/spreadsheets/{uuid.uuid4()}/s.csv",
    )
    buckets.write("spreadsheets", sheet.storage_key, b"s")
    upload = create_upload(tenant.id, "u.txt", "text/plain")
    buckets.write(UPLOAD_BUCKET, upload.key, b"u")
    assert mark_uploaded(UPLOAD_BUCKET, upload.key, 1, '"etag"')
    return {"buckets": buckets, "media": media, "sheet": sheet, "upload": upload, "tenant": tenant}


def kinds(found: list[consistency.Mismatch]) -> list[tuple[Kind, str]]:
    return sorted((mismatch.kind, mismatch.key) for mismatch in found)


def test_fsck_finds_nothing_on_a_consistent_store(planted: dict[str, object]) -> None:
    assert consistency.check(planted["buckets"], timedelta(0)) == []  # type: ignore[arg-type]


def test_fsck_finds_and_repairs_planted_mismatches(planted: dict[str, object]) -> None:
    buckets: LocalObjects = planted["buckets"]  # type: ignore[assignment]
    media: Media = planted["media"]  # type: ignore[assignment]
    sheet: Spreadsheet = planted["sheet"]  # type: ignore[assignment]
    upload: FileUpload = planted["upload"]  # type: ignore[assignment]
    tenant: Tenant = planted["tenant"]  # type: ignore[assignment]
    # Rows whose object is gone, an object no row points at (a pending upload's counts
    # too), and a temp file a crash left.
    for bucket, key in (
        (MEDIA_BUCKET, media.storage_key),
        ("spreadsheets", sheet.storage_key),
        (UPLOAD_BUCKET, upload.key),
    ):
        buckets.delete(bucket, key)
    buckets.write(MEDIA_BUCKET, "tenants/1/media/stray/x.webp", b"x")
    pending = create_upload(tenant.id, "p.txt", "text/plain")
    buckets.write(UPLOAD_BUCKET, pending.key, b"p")
    temp, descriptor = buckets.open_temp(UPLOAD_BUCKET, "tenants/1/files/f/x")
    os.close(descriptor)

    found = consistency.check(buckets, timedelta(0))
    assert kinds(found) == sorted(
        [
            (Kind.MISSING_MEDIA, media.storage_key),
            (Kind.MISSING_SPREADSHEET, sheet.storage_key),
            (Kind.MISSING_UPLOAD, upload.key),
            (Kind.ORPHAN_OBJECT, "tenants/1/media/stray/x.webp"),
            (Kind.ORPHAN_OBJECT, pending.key),
            (Kind.TEMP_FILE, str(temp)),
        ]
    )
    assert consistency.summary(found) == (
        "1 media-without-object, 2 orphan-object, 1 spreadsheet-without-object, "
        "1 temp-file, 1 upload-without-object"
    )
    # Young debris may be an upload in flight: the grace period leaves it alone.
    young = consistency.check(buckets, timedelta(hours=1))
    assert {mismatch.kind for mismatch in young} == {
        Kind.MISSING_MEDIA,
        Kind.MISSING_SPREADSHEET,
        Kind.MISSING_UPLOAD,
    }

    consistency.repair(buckets, found)
    assert consistency.check(buckets, timedelta(0)) == []
    assert not Media.select().exists() and not Spreadsheet.select().exists()
    reset = FileUpload.get_by_id(upload.id)
    assert (reset.uploaded_at, reset.size, reset.etag) == (None, None, None)
    assert not temp.exists()
    assert set(buckets.list(UPLOAD_BUCKET)) == set()


def test_the_sweep_removes_only_debris(planted: dict[str, object]) -> None:
    buckets: LocalObjects = planted["buckets"]  # type: ignore[assignment]
    media: Media = planted["media"]  # type: ignore[assignment]
    buckets.delete(MEDIA_BUCKET, media.storage_key)
    buckets.write("spreadsheets", "tenants/1/spreadsheets/stray/s.csv", b"s")
    removed = consistency.sweep(buckets, timedelta(0))
    assert kinds(removed) == [(Kind.ORPHAN_OBJECT, "tenants/1/spreadsheets/stray/s.csv")]
    # The row without its object is fsck's to repair, not the sweep's.
    assert kinds(consistency.check(buckets, timedelta(0))) == [
        (Kind.MISSING_MEDIA, media.storage_key)
    ]


def test_an_object_committed_after_the_check_is_not_removed(planted: dict[str, object]) -> None:
    buckets: LocalObjects = planted["buckets"]  # type: ignore[assignment]
    tenant: Tenant = planted["tenant"]  # type: ignore[assignment]
    upload = create_upload(tenant.id, "late.txt", "text/plain")
    buckets.write(UPLOAD_BUCKET, upload.key, b"late")
    found = consistency.check(buckets, timedelta(0))
    assert kinds(found) == [(Kind.ORPHAN_OBJECT, upload.key)]
    assert mark_uploaded(UPLOAD_BUCKET, upload.key, 4, '"e"')  # completes meanwhile
    consistency.repair(buckets, found)
    assert buckets.read(UPLOAD_BUCKET, upload.key) == b"late"


def test_the_sweeper_sweeps_again_and_again(planted: dict[str, object]) -> None:
    buckets: LocalObjects = planted["buckets"]  # type: ignore[assignment]
    stray = "tenants/1/media/stray/x.webp"

    async def run() -> None:
        sweeping = asyncio.create_task(
            consistency.OrphanSweeper(buckets, timedelta(0), interval=0.01).run()
        )
        for _ in range(2):  # debris planted after a sweep goes at a later one
            buckets.write(MEDIA_BUCKET, stray, b"x")
            deadline = time.monotonic() + DEADLINE
            while any(key == stray for key, _ in buckets.list(MEDIA_BUCKET)):
                assert time.monotonic() < deadline, "the sweeper did not remove the orphan"
                await asyncio.sleep(0.01)
        sweeping.cancel()

    asyncio.run(run())


def test_the_fsck_command(tmp_path: Path) -> None:
    """Exit status 1 and one line per mismatch; --repair; then status 0."""
    data_dir = tmp_path / "data"
    stray = data_dir / "objects" / "media" / "tenants" / "1" / "media" / "x" / "a.webp"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"a")
    (stray.parent / ".upload-abc").write_bytes(b"partial")
    env = {**os.environ, **NO_GRACE}

    def fsck(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            crmgate_command("admin", "--data-dir", str(data_dir), "fsck", *flags),
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    found = fsck()
    assert found.returncode == 1
    assert found.stdout.splitlines() == [
        "orphan-object media/tenants/1/media/x/a.webp",
        f"temp-file {stray.parent / '.upload-abc'}",
    ]
    assert "1 orphan-object, 1 temp-file" in found.stderr
    assert fsck("--repair").returncode == 1
    clean = fsck()
    assert (clean.returncode, clean.stdout) == (0, "fsck: no mismatches\n")
    assert not stray.exists()
    # The default grace period would have left fresh debris alone.
    stray.write_bytes(b"a")
    env.pop("CRMGATE_ORPHAN_GRACE_SECONDS")
    assert fsck().returncode == 0


# ------------------------------------------------------------------ S3 (rclone)


@pytest.fixture
def s3_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real S3-compatible server (rclone) with a bucket, as crmgate's environment."""
    bucket = "crmgate-objects"
    with rclone_s3(tmp_path_factory.mktemp("s3") / "data", bucket) as server:
        yield {**server.env, "CRMGATE_STORAGE_URL": f"s3://{bucket}/objects"}


def s3_client(env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )


@pytest.fixture
def s3_objects(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> ObjectStorage:
    from server.objects.s3 import S3Objects

    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    return S3Objects(s3_env["CRMGATE_STORAGE_URL"], temp_dir=tmp_path)


def test_fsck_on_s3(store: peewee.Database, s3_objects: ObjectStorage, tmp_path: Path) -> None:
    tenant = Tenant.create(name="acme")
    done = create_upload(tenant.id, "d.txt", "text/plain")
    s3_objects.write(UPLOAD_BUCKET, done.key, b"d")
    assert mark_uploaded(UPLOAD_BUCKET, done.key, 1, '"e"')
    lost = create_upload(tenant.id, "l.txt", "text/plain")
    assert mark_uploaded(UPLOAD_BUCKET, lost.key, 1, '"e"')  # its object never arrived
    s3_objects.write(MEDIA_BUCKET, "tenants/1/media/stray/x.webp", b"x")
    temp, descriptor = s3_objects.open_temp(UPLOAD_BUCKET, "tenants/1/files/f/x")
    os.close(descriptor)
    assert [key for key, _ in s3_objects.list(UPLOAD_BUCKET)] == [done.key]
    (_, modified), *_ = s3_objects.list(UPLOAD_BUCKET)
    assert abs(modified - datetime.now(UTC)) < timedelta(minutes=5)

    found = consistency.check(s3_objects, timedelta(0))
    assert kinds(found) == sorted(
        [
            (Kind.MISSING_UPLOAD, lost.key),
            (Kind.ORPHAN_OBJECT, "tenants/1/media/stray/x.webp"),
            (Kind.TEMP_FILE, str(temp)),
        ]
    )
    consistency.repair(s3_objects, found)
    assert consistency.check(s3_objects, timedelta(0)) == []
    assert FileUpload.get_by_id(lost.id).uploaded_at is None
    assert s3_objects.read(UPLOAD_BUCKET, done.key) == b"d"


# ------------------------------------------------------------------ the S3 POST order


@pytest.fixture(params=["local", "s3"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStorage:
    if request.param == "s3":
        return request.getfixturevalue("s3_objects")
    return LocalObjects(tmp_path / "objects")


def endpoint(buckets: ObjectStorage, claim: Callable[..., object]) -> PostTarget:
    async def authorize(bucket: str, key: str, host: str | None) -> None:
        return None

    async def claiming(bucket: str, key: str, size: int, etag: str) -> bool:
        return bool(claim(bucket, key))

    return PostTarget(buckets, dict, authorize, claiming)


def streamed(buckets: ObjectStorage, key: str, data: bytes) -> Path:
    temp, descriptor = buckets.open_temp(UPLOAD_BUCKET, key)
    with os.fdopen(descriptor, "wb") as sink:
        sink.write(data)
    return temp


def test_an_upload_is_recorded_only_once_its_object_is_in_place(objects: ObjectStorage) -> None:
    """A kill between the two steps then leaves an orphan object, never a record of an
    upload whose object is missing."""
    key = "tenants/1/files/f/a.txt"
    seen: list[bytes] = []
    post = endpoint(objects, lambda bucket, key: seen.append(objects.read(bucket, key)) or True)
    asyncio.run(post._complete(streamed(objects, key, b"data"), UPLOAD_BUCKET, key, 4, '"e"', None))
    assert seen == [b"data"]
    assert not list(objects.temp_files())


def test_a_refused_claim_removes_the_published_object(objects: ObjectStorage) -> None:
    key = "tenants/1/files/f/a.txt"
    post = endpoint(objects, lambda bucket, key: False)
    with pytest.raises(PolicyError) as refused:
        asyncio.run(
            post._complete(streamed(objects, key, b"data"), UPLOAD_BUCKET, key, 4, '"e"', None)
        )
    assert (refused.value.code, refused.value.status) == ("AccessDenied", 403)
    assert list(objects.list(UPLOAD_BUCKET)) == []
