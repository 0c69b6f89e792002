"""Direct uploads (CRMGATE_DIRECT_UPLOADS=1): the Close upload form is botocore's presigned
POST for the real bucket, so the file goes straight to S3, and crmgate confirms it with a
HEAD at first use. Run with the official `closeio` client against `crmgate serve` on
moto's S3 server (a real process; `rclone serve s3` takes no browser POST uploads).

moto accepts presigned POSTs without checking their conditions, so what real S3 refuses
by itself (a body over the range, another content type) moto stores: the tests check that
the form carries those conditions, and that crmgate's HEAD still refuses an oversized
object at first use.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from closeio_api import Client, ValidationError

from server.files.uploads import MAX_UPLOAD_BYTES
from server.objects.s3 import PART_BYTES, S3Objects
from tests.conftest import database_env
from tests.support.close import FORM_FIELDS, client, two_tenants, upload_form
from tests.support.processes import CrmgateProcess, crmgate_command, run_admin
from tests.support.s3 import S3Server, moto_s3

BUCKET = "crmgate-direct"
JPEG = b"\xff\xd8\xff\xe0" + b"pretend-jpeg-bytes" * 100
REFUSED = {"attachments.0.url": "Not a download URL of a completed, unexpired upload of yours."}


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with moto_s3(BUCKET) as server:
        yield server


@pytest.fixture(scope="module", params=["serve-sqlite", "split-postgresql"])
def prefix(request: pytest.FixtureRequest) -> str:
    """How crmgate runs, and its key prefix in the shared bucket."""
    return request.param


@pytest.fixture(scope="module")
def crmgate(
    s3: S3Server,
    prefix: str,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CrmgateProcess]:
    """`crmgate serve` on SQLite, or `crmgate server` + `crmgate gateway` on PostgreSQL,
    with direct uploads to the moto bucket."""
    data_dir = tmp_path_factory.mktemp("direct")
    serve_sqlite = prefix == "serve-sqlite"
    start = CrmgateProcess.start if serve_sqlite else CrmgateProcess.start_split
    backend = "sqlite" if serve_sqlite else "postgresql"
    with (
        database_env(request, backend, direct_env(s3, prefix)) as env,
        start(data_dir, env=env) as process,
    ):
        yield process


def direct_env(s3: S3Server, prefix: str) -> dict[str, str]:
    return {
        **s3.env,
        "CRMGATE_STORAGE_URL": f"s3://{BUCKET}/{prefix}",
        "CRMGATE_DIRECT_UPLOADS": "1",
    }


@pytest.fixture(scope="module")
def close(crmgate: CrmgateProcess) -> dict[str, str]:
    return two_tenants(crmgate)


def post_to_bucket(form: dict, body: bytes) -> requests.Response:
    return requests.post(
        form["upload"]["url"],
        data=form["upload"]["fields"],
        files={"file": ("image.jpg", body, "image/jpeg")},
        timeout=60,
    )


def bucket_keys(s3: S3Server, prefix: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")  # type: ignore[attr-defined]
    return [item["Key"] for item in listing.get("Contents", [])]


def attach(api: Client, contact_id: str, url: str) -> dict:
    return api.post("activity/email", {"contact_id": contact_id, "attachments": [{"url": url}]})


def test_the_documented_flow_posts_straight_to_the_bucket(
    crmgate: CrmgateProcess, close: dict[str, str], s3: S3Server, prefix: str
) -> None:
    api = client(crmgate, close["key"])
    form = upload_form(api)
    fields = form["upload"]["fields"]
    assert form["upload"]["url"] == f"{s3.endpoint}/{BUCKET}"
    assert set(fields) == FORM_FIELDS
    assert fields["key"].startswith(f"{prefix}/crmgate-files/tenants/")
    assert fields["key"].endswith("/image.jpg")
    policy = json.loads(base64.b64decode(fields["policy"]))
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert timedelta(seconds=50) < expires - datetime.now(UTC) <= timedelta(seconds=61)
    conditions = policy["conditions"]
    for condition in (
        {"bucket": BUCKET},
        {"key": fields["key"]},
        {"Content-Type": "image/jpeg"},
        {"success_action_status": "201"},
        ["content-length-range", 0, MAX_UPLOAD_BYTES],
    ):
        assert condition in conditions
    download = form["download"]["url"]
    assert download.startswith(crmgate.http_url + "/files/download/")
    assert requests.get(download, timeout=10).status_code == 404  # nothing posted yet

    posted = post_to_bucket(form, JPEG)
    assert posted.status_code == 201, posted.text
    stored = s3.client().get_object(Bucket=BUCKET, Key=fields["key"])  # type: ignore[attr-defined]
    assert stored["Body"].read() == JPEG
    # The bytes went to the bucket only: crmgate's own storage target saw nothing.
    assert not [line for line in crmgate.output if "Files/UploadObject" in line]

    fetched = requests.get(download, timeout=10)
    assert fetched.status_code == 200 and fetched.content == JPEG
    assert fetched.headers["Content-Type"] == "image/jpeg"
    assert fetched.headers["Content-Length"] == str(len(JPEG))
    assert fetched.headers["Content-Disposition"] == 'attachment; filename="image.jpg"'

    activity = attach(api, close["contact_id"], download)
    assert activity["attachments"] == [
        {"url": download, "filename": "image.jpg", "size": len(JPEG), "content_type": "image/jpeg"}
    ]
    assert api.get(f"activity/email/{activity['id']}") == activity


def test_an_attachment_can_be_the_first_use(crmgate: CrmgateProcess, close: dict[str, str]) -> None:
    api = client(crmgate, close["key"])
    form = upload_form(api, "report.jpg")
    assert post_to_bucket(form, JPEG * 2).status_code == 201
    activity = attach(api, close["contact_id"], form["download"]["url"])
    # The size comes from the HEAD that confirmed the upload.
    assert activity["attachments"][0]["size"] == 2 * len(JPEG)
    assert requests.get(form["download"]["url"], timeout=10).content == JPEG * 2


def test_a_form_never_posted_is_refused_until_it_is(
    crmgate: CrmgateProcess, close: dict[str, str]
) -> None:
    api = client(crmgate, close["key"])
    form = upload_form(api)
    download = form["download"]["url"]
    answer = requests.get(download, timeout=10)
    assert answer.status_code == 404
    assert answer.json() == {"error": "not_found", "message": "No such file."}
    with pytest.raises(ValidationError) as caught:
        attach(api, close["contact_id"], download)
    assert caught.value.field_errors == REFUSED
    # Still pending, not failed: once the file is posted the same URL works.
    assert post_to_bucket(form, JPEG).status_code == 201
    assert requests.get(download, timeout=10).content == JPEG


def test_an_oversized_object_is_refused_at_first_use(
    crmgate: CrmgateProcess, close: dict[str, str], s3: S3Server, prefix: str
) -> None:
    api = client(crmgate, close["key"])
    form = upload_form(api)
    key = form["upload"]["fields"]["key"]
    # Real S3 refuses this body itself (the form's content-length-range); moto stores it.
    assert post_to_bucket(form, bytes(MAX_UPLOAD_BYTES + 1)).status_code == 201
    assert key in bucket_keys(s3, prefix)
    assert requests.get(form["download"]["url"], timeout=10).status_code == 404
    assert key not in bucket_keys(s3, prefix)  # removed, not kept
    with pytest.raises(ValidationError) as caught:
        attach(api, close["contact_id"], form["download"]["url"])
    assert caught.value.field_errors == REFUSED


def test_another_tenant_cannot_attach_it(crmgate: CrmgateProcess, close: dict[str, str]) -> None:
    api = client(crmgate, close["key"])
    form = upload_form(api)
    assert post_to_bucket(form, JPEG).status_code == 201
    other = client(crmgate, close["other_key"])
    # Globex's attempt is the first use: the HEAD confirms the file, but it stays acme's.
    with pytest.raises(ValidationError) as caught:
        attach(other, close["other_contact_id"], form["download"]["url"])
    assert caught.value.field_errors == REFUSED
    assert attach(api, close["contact_id"], form["download"]["url"])["attachments"][0]["size"] == (
        len(JPEG)
    )


def test_fsck_keeps_objects_of_pending_direct_uploads(
    crmgate: CrmgateProcess, close: dict[str, str], s3: S3Server, prefix: str
) -> None:
    api = client(crmgate, close["key"])
    form = upload_form(api)
    assert post_to_bucket(form, JPEG).status_code == 201  # posted, not used yet
    env = {**direct_env(s3, prefix), "CRMGATE_ORPHAN_GRACE_SECONDS": "0"}
    if crmgate.database_url:
        env["CRMGATE_DATABASE_URL"] = crmgate.database_url
    assert run_admin(crmgate.data_dir, "fsck", env=env) == "fsck: no mismatches"
    # Without direct uploads such an object is crash debris of crmgate's own target.
    env["CRMGATE_DIRECT_UPLOADS"] = "0"
    with pytest.raises(AssertionError, match="orphan-object"):
        run_admin(crmgate.data_dir, "fsck", env=env)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"CRMGATE_DIRECT_UPLOADS": "1"},
            "CRMGATE_DIRECT_UPLOADS=1 needs S3 storage (CRMGATE_STORAGE_URL=s3://bucket/prefix)",
        ),
        (
            {"CRMGATE_DIRECT_UPLOADS": "1", "CRMGATE_STORAGE_URL": "/srv/objects"},
            "CRMGATE_DIRECT_UPLOADS=1 needs S3 storage (CRMGATE_STORAGE_URL=s3://bucket/prefix)",
        ),
        ({"CRMGATE_DIRECT_UPLOADS": "yes"}, "CRMGATE_DIRECT_UPLOADS must be 1 or 0, not 'yes'"),
    ],
)
def test_direct_uploads_need_s3_storage(tmp_path: Path, env: dict[str, str], message: str) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRMGATE_")}
    refused = subprocess.run(
        crmgate_command("serve", "--data-dir", str(tmp_path), "--http-port", "0"),
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert message in refused.stderr
    assert "Traceback" not in refused.stderr


def test_large_objects_go_up_in_parts_and_stream_back(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    store = S3Objects(f"s3://{BUCKET}/store", tmp_path)
    body = os.urandom(1024) * (PART_BYTES // 1024 * 2 + 3)  # two full parts and a bit
    temp, descriptor = store.open_temp("media", "tenants/1/big.bin")
    with os.fdopen(descriptor, "wb") as sink:
        sink.write(body)
    store.publish(temp, "media", "tenants/1/big.bin")
    assert not temp.exists()
    found = store.head("media", "tenants/1/big.bin")
    assert found.size == len(body)
    assert found.etag.endswith('-3"')  # S3's ETag of a three-part multipart upload
    size, reader = store.open("media", "tenants/1/big.bin")
    pieces = []
    try:
        while piece := reader.read(1024 * 1024):
            pieces.append(len(piece))
            assert piece == body[sum(pieces[:-1]) : sum(pieces)]
    finally:
        reader.close()
    assert size == len(body) and sum(pieces) == len(body) and len(pieces) > 1
    with pytest.raises(FileNotFoundError):
        store.head("media", "tenants/1/none.bin")
