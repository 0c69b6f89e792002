"""The Close-compatible Files API end to end, with the official `closeio` client, boto3's
presigned POST forms and plain requests, against a real `crmgate serve`."""

from __future__ import annotations

import base64
import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import peewee
import pytest
import requests
from botocore.config import Config
from closeio_api import APIError, ValidationError
from yarl import URL

from server.database.models import FileUpload
from server.files.s3post.policy import build_form
from server.files.storage import ACCESS_KEY_ID
from server.signing_keys import signing_key
from tests.support.close import FORM_FIELDS, client, two_tenants, upload_form
from tests.support.processes import CrmgateProcess

JPEG = b"\xff\xd8\xff\xe0" + b"pretend-jpeg-bytes" * 100


@pytest.fixture(scope="module")
def close(crmgate: CrmgateProcess) -> dict[str, str]:
    return two_tenants(crmgate)


def test_the_documented_flow(
    crmgate: CrmgateProcess, close: dict[str, str], tmp_path: Path
) -> None:
    api = client(crmgate, close["key"])
    path = tmp_path / "image.jpg"
    path.write_bytes(JPEG)
    files_upload_response = upload_form(api)
    fields = files_upload_response["upload"]["fields"]
    assert set(fields) == FORM_FIELDS
    policy = json.loads(base64.b64decode(fields["policy"]))
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert timedelta(seconds=50) < expires - datetime.now(UTC) <= timedelta(seconds=61)
    assert ["content-length-range", 0, 100 * 1024 * 1024] in policy["conditions"]

    download = files_upload_response["download"]["url"]
    assert requests.get(download, timeout=10).status_code == 404  # not uploaded yet

    with path.open("rb") as handle:
        s3_upload_response = requests.post(
            files_upload_response["upload"]["url"],
            data=files_upload_response["upload"]["fields"],
            files={"file": ("image.jpg", handle, "image/jpeg")},
            timeout=10,
        )
    assert s3_upload_response.status_code == 201
    assert re.fullmatch(
        r'<\?xml version="1.0" encoding="UTF-8"\?>\n<PostResponse><Location>.+</Location>'
        r"<Bucket>crmgate-files</Bucket><Key>"
        + re.escape(fields["key"])
        + r'</Key><ETag>"[0-9a-f]{32}"</ETag></PostResponse>',
        s3_upload_response.text,
    )

    email_create_response = api.post(
        "activity/email",
        data={
            "attachments": [
                {
                    "url": download,
                    "filename": "image.jpg",
                    "size": len(JPEG),
                    "content_type": "image/jpeg",
                }
            ],
            "contact_id": close["contact_id"],
            "lead_id": "lead_KwD00BYbXCHiPWj68LxFkxaeWuULpZ7awzm6LqeFs0h",
            "user_id": "user_scOgjLAQD6aBSJYBVhIeNr6FJDp8iDTug8Mv6VqYoFn",
            "direction": "outgoing",
            "subject": "Hello",
            "to": ["ada@acme.example"],
        },
    )
    assert email_create_response["id"].startswith("acti_")
    assert email_create_response["attachments"] == [
        {"url": download, "filename": "image.jpg", "size": len(JPEG), "content_type": "image/jpeg"}
    ]
    read_back = api.get(f"activity/email/{email_create_response['id']}")
    assert read_back == email_create_response
    assert (read_back["contact_id"], read_back["status"], read_back["to"]) == (
        close["contact_id"],
        "draft",
        ["ada@acme.example"],
    )

    fetched = requests.get(download, timeout=10)
    assert fetched.status_code == 200 and fetched.content == JPEG
    assert fetched.headers["Content-Type"] == "image/jpeg"
    assert fetched.headers["Content-Length"] == str(len(JPEG))
    assert fetched.headers["Content-Disposition"] == 'attachment; filename="image.jpg"'


@pytest.mark.parametrize("signature_version", ["s3", "s3v4"])
def test_boto3_presigned_posts(
    crmgate: CrmgateProcess,
    close: dict[str, str],
    server_db: peewee.Database,
    signature_version: str,
) -> None:
    api = client(crmgate, close["key"])
    form = upload_form(api, "notes.txt", "text/plain")
    s3 = boto3.client(
        "s3",
        endpoint_url=crmgate.http_url + "/storage",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=signing_key("storage-access-key"),
        region_name="us-east-1",
        config=Config(signature_version=signature_version, s3={"addressing_style": "path"}),
    )
    post = s3.generate_presigned_post(
        "crmgate-files",
        form["upload"]["fields"]["key"],
        Fields={"Content-Type": "text/plain"},
        Conditions=[{"Content-Type": "text/plain"}, ["content-length-range", 1, 1000]],
        ExpiresIn=60,
    )
    assert post["url"] == form["upload"]["url"]
    answer = requests.post(
        post["url"],
        data=post["fields"],
        files={"file": ("notes.txt", b"hello", "text/plain")},
        timeout=10,
    )
    assert answer.status_code == 204, answer.text
    assert requests.get(form["download"]["url"], timeout=10).content == b"hello"


def s3_error(answer: requests.Response) -> tuple[int, str]:
    match = re.search(r"<Code>(\w+)</Code>", answer.text)
    assert answer.headers["Content-Type"].startswith("application/xml"), answer.text
    return answer.status_code, match.group(1) if match else ""


def own_form(
    key: str,
    secret: str,
    *,
    now: datetime | None = None,
    max_bytes: int = 1000,
    content_type: str = "text/plain",
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    from server.files.s3post.policy import Credentials

    return build_form(
        Credentials(ACCESS_KEY_ID, secret),
        "crmgate-files",
        key,
        {"Content-Type": content_type, **(extra or {})},
        max_bytes,
        now or datetime.now(UTC),
    )


@pytest.fixture
def pending(crmgate: CrmgateProcess, close: dict[str, str], server_db: peewee.Database) -> dict:
    api = client(crmgate, close["key"])
    form = upload_form(api, "a.txt", "text/plain")
    return {
        "url": form["upload"]["url"],
        "key": form["upload"]["fields"]["key"],
        "fields": form["upload"]["fields"],
        "download": form["download"]["url"],
        "secret": signing_key("storage-access-key"),
    }


def post(url: str, fields: dict[str, str], body: bytes | None = b"hello") -> requests.Response:
    files = {"file": ("a.txt", body, "text/plain")} if body is not None else None
    if files is None:  # still multipart, with no file part
        files = {"x-ignore-none": (None, "")}
    return requests.post(url, data=fields, files=files, timeout=10)


def test_expired_policy(pending: dict) -> None:
    old = own_form(pending["key"], pending["secret"], now=datetime.now(UTC) - timedelta(seconds=61))
    assert s3_error(post(pending["url"], old)) == (403, "AccessDenied")


def test_tampered_policy_and_wrong_signature(pending: dict) -> None:
    fields = dict(pending["fields"])
    policy = json.loads(base64.b64decode(fields["policy"]))
    policy["conditions"] = [c for c in policy["conditions"] if not isinstance(c, list)]
    fields["policy"] = base64.b64encode(json.dumps(policy).encode()).decode()
    assert s3_error(post(pending["url"], fields)) == (403, "SignatureDoesNotMatch")
    wrong = {**pending["fields"], "x-amz-signature": "0" * 64}
    assert s3_error(post(pending["url"], wrong)) == (403, "SignatureDoesNotMatch")


def test_size_over_the_range_keeps_nothing(crmgate: CrmgateProcess, pending: dict) -> None:
    small = own_form(pending["key"], pending["secret"], max_bytes=4)
    assert s3_error(post(pending["url"], small, b"hello")) == (400, "EntityTooLarge")
    bucket_dir = crmgate.data_dir / "objects" / "crmgate-files"
    assert not list(bucket_dir.rglob("a.txt")) and not list(bucket_dir.rglob(".upload-*"))
    assert requests.get(pending["download"], timeout=10).status_code == 404


def test_content_type_outside_the_condition(pending: dict) -> None:
    fields = {**pending["fields"], "Content-Type": "text/html"}
    assert s3_error(post(pending["url"], fields)) == (403, "AccessDenied")


@pytest.mark.parametrize("missing", ["key", "policy", "x-amz-signature", "file"])
def test_missing_fields(pending: dict, missing: str) -> None:
    fields = {k: v for k, v in pending["fields"].items() if k != missing}
    answer = post(pending["url"], fields, None if missing == "file" else b"hello")
    expected = "IncorrectNumberOfFilesInPostRequest" if missing == "file" else "InvalidArgument"
    assert s3_error(answer) == (400, expected)


def test_unsigned_extra_field(pending: dict) -> None:
    fields = {**pending["fields"], "acl": "public-read"}
    assert s3_error(post(pending["url"], fields)) == (403, "AccessDenied")


def test_second_upload_to_the_same_key(pending: dict) -> None:
    assert post(pending["url"], pending["fields"]).status_code == 201
    assert s3_error(post(pending["url"], pending["fields"], b"other")) == (403, "AccessDenied")
    assert requests.get(pending["download"], timeout=10).content == b"hello"


def test_download_urls_last_24_hours(
    crmgate: CrmgateProcess, close: dict[str, str], pending: dict, server_db: peewee.Database
) -> None:
    assert post(pending["url"], pending["fields"]).status_code == 201
    upload = FileUpload.get(FileUpload.key == pending["key"])
    upload.uploaded_at -= timedelta(hours=24, seconds=1)  # the clock moved on a day
    upload.save()
    assert requests.get(pending["download"], timeout=10).status_code == 410
    api = client(crmgate, close["key"])
    with pytest.raises(ValidationError) as caught:
        api.post(
            "activity/email",
            {"contact_id": close["contact_id"], "attachments": [{"url": pending["download"]}]},
        )
    assert list(caught.value.field_errors) == ["attachments.0.url"]
    forged = re.sub(r"(file_\w+)\.", r"\1.x", pending["download"])
    assert requests.get(forged, timeout=10).status_code == 404


def test_attachments_must_be_the_tenants_own(
    crmgate: CrmgateProcess, close: dict[str, str], pending: dict
) -> None:
    assert post(pending["url"], pending["fields"]).status_code == 201
    other = client(crmgate, close["other_key"])
    with pytest.raises(ValidationError) as caught:
        other.post(
            "activity/email",
            {
                "contact_id": close["other_contact_id"],
                "attachments": [{"url": pending["download"]}],
            },
        )
    assert caught.value.field_errors == {
        "attachments.0.url": "Not a download URL of a completed, unexpired upload of yours."
    }
    with pytest.raises(ValidationError) as caught:
        other.post("activity/email", {"contact_id": close["contact_id"]})
    assert caught.value.field_errors == {"contact_id": "Contact not found."}


def test_upload_request_validation(crmgate: CrmgateProcess, close: dict[str, str]) -> None:
    api = client(crmgate, close["key"])
    with pytest.raises(ValidationError) as caught:
        api.post("files/upload", {"filename": "a.jpg"})
    assert (caught.value.errors, caught.value.field_errors) == (
        [],
        {"content_type": "This field is required."},
    )
    with pytest.raises(ValidationError) as caught:
        api.post("files/upload", {"filename": "a.jpg", "content_type": "image/jpeg", "acl": "x"})
    assert caught.value.field_errors == {"acl": "is not a known field"}
    with pytest.raises(ValidationError) as caught:
        api.post("files/upload", {"filename": 3, "content_type": "nonsense"})
    assert caught.value.field_errors == {"filename": "must be a string"}
    answer = requests.post(
        crmgate.http_url + "/api/v1/files/upload/",
        data="{nope",
        auth=(close["key"], ""),
        timeout=10,
    )
    assert answer.status_code == 400 and answer.json()["field-errors"] == {}
    assert answer.json()["errors"][0].startswith("The body is not valid JSON")


def test_authentication(crmgate: CrmgateProcess, close: dict[str, str]) -> None:
    for auth in (None, ("api_wrong", ""), (close["key"] + "x", "")):
        answer = requests.post(
            crmgate.http_url + "/api/v1/files/upload/",
            auth=auth,
            json={"filename": "a", "content_type": "a/b"},
            timeout=10,
        )
        assert (answer.status_code, answer.json()) == (
            401,
            {"error": "Invalid or missing credentials."},
        )
    with pytest.raises(APIError) as caught:
        client(crmgate, close["other_key"]).get("activity/email/acti_doesnotexist")
    assert caught.value.response.status_code == 404
    assert caught.value.response.json() == {"error": "No email activity with that id."}


def test_oversized_fields_are_refused(pending: dict) -> None:
    fields = {**pending["fields"], "x-ignore-padding": "p" * (70 * 1024)}
    assert s3_error(post(pending["url"], fields)) == (400, "MaxPostPreDataLengthExceeded")
    assert post(pending["url"], pending["fields"]).status_code == 201  # the upload is still open


def test_a_failed_publish_leaves_the_upload_pending(crmgate: CrmgateProcess, pending: dict) -> None:
    target = crmgate.data_dir / "objects" / "crmgate-files" / pending["key"]
    target.mkdir(parents=True)  # a real fault: the object's place is taken by a directory
    answer = post(pending["url"], pending["fields"])
    assert s3_error(answer) == (500, "InternalError")
    assert requests.get(pending["download"], timeout=10).status_code == 404
    assert not list(target.parent.glob(".upload-*"))
    target.rmdir()
    assert post(pending["url"], pending["fields"]).status_code == 201
    assert requests.get(pending["download"], timeout=10).content == b"hello"


def test_a_field_given_twice_is_refused(pending: dict) -> None:
    fields = [*pending["fields"].items(), ("content-type", "text/html")]
    answer = requests.post(
        pending["url"], data=fields, files={"file": ("a.txt", b"hello", "text/plain")}, timeout=10
    )
    assert s3_error(answer) == (400, "InvalidArgument")
    assert post(pending["url"], pending["fields"]).status_code == 201


def test_attachments_are_only_this_servers_download_urls(
    crmgate: CrmgateProcess, close: dict[str, str], pending: dict
) -> None:
    """A valid token under another host, or in a javascript: or ftp: URL, is no download
    URL of ours; ours is stored (and returned) in its canonical form."""
    assert post(pending["url"], pending["fields"]).status_code == 201
    api = client(crmgate, close["key"])
    path = pending["download"].removeprefix(crmgate.http_url)
    for url in (
        "http://evil.example" + path,
        "javascript:alert(1)//" + path,
        "ftp://" + crmgate.http_url.removeprefix("http://") + path,
    ):
        with pytest.raises(ValidationError) as caught:
            api.post(
                "activity/email", {"contact_id": close["contact_id"], "attachments": [{"url": url}]}
            )
        assert list(caught.value.field_errors) == ["attachments.0.url"], url
    created = api.post(
        "activity/email",
        {"contact_id": close["contact_id"], "attachments": [{"url": pending["download"]}]},
    )
    assert created["attachments"][0]["url"] == pending["download"]


def test_file_names_with_control_characters_are_refused(
    crmgate: CrmgateProcess, close: dict[str, str]
) -> None:
    api = client(crmgate, close["key"])
    for name in ("a\r\nSet-Cookie: x.txt", "tab\there.txt", "del\x7f.txt"):
        with pytest.raises(ValidationError) as caught:
            api.post("files/upload", {"filename": name, "content_type": "text/plain"})
        assert caught.value.field_errors == {
            "filename": "File names cannot contain control characters."
        }, name
    with pytest.raises(ValidationError) as caught:  # refused by the gateway, for any field
        api.post("files/upload", {"filename": "nul\x00.txt", "content_type": "text/plain"})
    assert caught.value.errors == [
        "The body holds a NUL character (\\u0000), which no field accepts."
    ]


def test_a_file_name_with_a_slash_downloads(crmgate: CrmgateProcess, close: dict[str, str]) -> None:
    api = client(crmgate, close["key"])
    form = upload_form(api, "reports/q1.txt", "text/plain")
    assert "/reports%2Fq1.txt" in form["download"]["url"]
    posted = requests.post(
        form["upload"]["url"],
        data=form["upload"]["fields"],
        files={"file": ("q1.txt", b"first quarter", "text/plain")},
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    fetched = requests.get(form["download"]["url"], timeout=10)
    assert (fetched.status_code, fetched.content) == (200, b"first quarter")


def test_bidirectional_controls_are_removed_from_file_names(
    crmgate: CrmgateProcess, close: dict[str, str]
) -> None:
    """ "invoice\u202efdp.exe" would display as "invoiceexe.pdf": the name is kept without
    its bidirectional controls, in the download and in the attachment."""
    api = client(crmgate, close["key"])
    form = upload_form(api, "invoice\u202efdp.exe", "application/octet-stream")
    posted = requests.post(
        form["upload"]["url"],
        data=form["upload"]["fields"],
        files={"file": ("x", b"MZ", "application/octet-stream")},
        timeout=10,
    )
    assert posted.status_code == 201, posted.text
    fetched = requests.get(form["download"]["url"], timeout=10)
    assert fetched.headers["Content-Disposition"] == 'attachment; filename="invoicefdp.exe"'
    activity = api.post(
        "activity/email",
        data={
            "contact_id": close["contact_id"],
            "attachments": [{"url": form["download"]["url"], "filename": "a\u2067b\u2069.exe"}],
        },
    )
    assert activity["attachments"][0]["filename"] == "ab.exe"
    with pytest.raises(ValidationError) as caught:
        api.post("files/upload", {"filename": "\u202e\u202c", "content_type": "text/plain"})
    assert caught.value.field_errors == {"filename": "This field is required."}


def test_success_action_redirect_answers_303_with_bucket_key_and_etag(pending: dict) -> None:
    redirect = {"success_action_redirect": "https://app.example/done?from=crmgate"}
    fields = own_form(pending["key"], pending["secret"], extra=redirect)
    answer = requests.post(
        pending["url"], data=fields, files={"file": ("a.txt", b"hello", "text/plain")},
        allow_redirects=False, timeout=10,
    )  # fmt: skip
    etag = '"5d41402abc4b2a76b9719d911017c592"'  # MD5 of "hello", quoted as S3 does
    assert answer.status_code == 303
    assert answer.headers["ETag"] == etag
    assert answer.headers["Location"] == str(
        URL("https://app.example/done").with_query(
            {"from": "crmgate", "bucket": "crmgate-files", "key": pending["key"], "etag": etag}
        )
    )
    assert requests.get(pending["download"], timeout=10).content == b"hello"


def test_a_body_without_content_length_is_411(pending: dict) -> None:
    encoder = requests.Request(
        "POST", pending["url"], data=pending["fields"], files={"file": ("a.txt", b"hi")}
    ).prepare()
    chunked = requests.post(
        pending["url"], data=iter([encoder.body]), timeout=10,
        headers={"Content-Type": encoder.headers["Content-Type"]},
    )  # fmt: skip
    assert s3_error(chunked) == (411, "MissingContentLength")
    assert post(pending["url"], pending["fields"]).status_code == 201


def test_routes_answer_with_and_without_the_trailing_slash(
    crmgate: CrmgateProcess, close: dict[str, str]
) -> None:
    auth = (close["key"], "")
    body = {"filename": "a.txt", "content_type": "text/plain"}
    for path in ("/api/v1/files/upload/", "/api/v1/files/upload"):
        answer = requests.post(crmgate.http_url + path, json=body, auth=auth, timeout=10)
        assert answer.status_code == 200, (path, answer.text)
        assert set(answer.json()) == {"upload", "download"}
    activity = {"contact_id": close["contact_id"], "subject": "slashless"}
    created = requests.post(
        crmgate.http_url + "/api/v1/activity/email", json=activity, auth=auth, timeout=10
    )
    assert created.status_code == 200, created.text
    read = requests.get(
        f"{crmgate.http_url}/api/v1/activity/email/{created.json()['id']}", auth=auth, timeout=10
    )
    assert read.json() == created.json()


def test_an_attached_file_stays_readable_past_24_hours(
    crmgate: CrmgateProcess, close: dict[str, str], pending: dict, server_db: peewee.Database
) -> None:
    assert post(pending["url"], pending["fields"]).status_code == 201
    api = client(crmgate, close["key"])
    activity = api.post(
        "activity/email",
        {"contact_id": close["contact_id"], "attachments": [{"url": pending["download"]}]},
    )
    upload = FileUpload.get(FileUpload.key == pending["key"])
    upload.uploaded_at -= timedelta(hours=48)
    upload.save()
    (attached,) = api.get(f"activity/email/{activity['id']}")["attachments"]
    fetched = requests.get(attached["url"], timeout=10)
    assert (fetched.status_code, fetched.content) == (200, b"hello")
    with pytest.raises(ValidationError) as caught:  # readable, but not attachable again
        api.post(
            "activity/email",
            {"contact_id": close["contact_id"], "attachments": [{"url": pending["download"]}]},
        )
    assert list(caught.value.field_errors) == ["attachments.0.url"]


def test_closes_documented_email_fields_are_stored_and_read_back(
    crmgate: CrmgateProcess, close: dict[str, str]
) -> None:
    api = client(crmgate, close["key"])
    email = {
        "contact_id": close["contact_id"],
        "lead_id": "lead_x",
        "user_id": "user_y",
        "direction": "outgoing",
        "status": "scheduled",
        "template_id": "tmpl_welcome",
        "date_scheduled": "2026-12-01T09:30:00+00:00",
        "followup_date": "2026-12-08",
        "sender": "Ada <ada@acme.example>",
        "to": ["x@example.com"],
        "cc": ["y@example.com"],
        "bcc": ["z@example.com"],
        "subject": "Welcome",
        "body_text": "Hello",
        "body_html": "<p>Hello</p>",
    }
    created = api.post("activity/email", email)
    assert {name: created[name] for name in email} == email
    assert api.get(f"activity/email/{created['id']}") == created
    with pytest.raises(ValidationError) as caught:
        api.post(
            "activity/email",
            {**email, "date_scheduled": "", "followup_date": "next week"},
        )
    assert caught.value.field_errors == {
        "date_scheduled": "Required when status is scheduled.",
        "followup_date": "Enter an ISO-8601 date or date and time.",
    }


def test_the_form_survives_curl_f(
    crmgate: CrmgateProcess, close: dict[str, str], tmp_path: Path
) -> None:
    """`curl -F name=value` splits a value at ';': no field may hold one."""
    form = upload_form(client(crmgate, close["key"]), "report.txt", "text/plain")
    path = tmp_path / "report.txt"
    path.write_bytes(b"sent with curl")
    fields = [
        arg for name, value in form["upload"]["fields"].items() for arg in ("-F", f"{name}={value}")
    ]
    curl = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", *fields,
         "-F", f"file=@{path}", form["upload"]["url"]],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert curl.stdout == "201", curl.stderr
    fetched = requests.get(form["download"]["url"], timeout=10)
    assert fetched.content == b"sent with curl"
    assert fetched.headers["Content-Disposition"] == 'attachment; filename="report.txt"'
