"""Close Files uploads: starting one (checked, recorded, its browser form signed), download
capabilities and their 24-hour window.

A download URL carries `file_id.signature`, an HMAC of the file id under a server secret:
unguessable, verifiable without a lookup, and only honoured while the upload is
complete and younger than DOWNLOAD_WINDOW.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import quote, unquote, urlsplit

from aiohttp.helpers import content_disposition_header
from files.v1 import files_pb2

from gateway.contract import DOWNLOAD_PATH
from server.database.models import EmailAttachment, FileUpload, Tenant, utcnow
from server.files import messages
from server.signing_keys import signing_key
from server.tenant_hosts import tenant_hosts
from server.validation import Violations

DOWNLOAD_WINDOW = timedelta(hours=24)
UPLOAD_BUCKET = "crmgate-files"
_TOKEN = re.compile(r"(file_[A-Za-z0-9]{16,40})\.([A-Za-z0-9_-]{43})")
REQUIRED = "This field is required."
MIME_TYPE = re.compile(r"[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*")
#: Line breaks and other controls break headers (Content-Disposition) and logs.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
#: Unicode's bidirectional embeddings, overrides, isolates and marks: in a file name they
#: make "invoice\u202efdp.exe" display as "invoiceexe.pdf".
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
#: How long a signed upload form is accepted (Close documents 60 seconds).
FORM_SECONDS = 60

#: Builds the signed browser-POST form: (bucket, key, content_type, max bytes, base URL) →
#: (upload URL, form fields).
FormSigner = Callable[[str, str, str, int, str], tuple[str, dict[str, str]]]


def _signature(file_id: str) -> str:
    key = signing_key("download-urls").encode()
    digest = hmac.new(key, f"download:{file_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def download_token(file_id: str) -> str:
    return f"{file_id}.{_signature(file_id)}"


def download_url(base: str, upload: FileUpload) -> str:
    return (
        f"{base}{DOWNLOAD_PATH}{download_token(upload.file_id)}/{quote(upload.filename, safe='')}"
    )


def file_id_from_token(token: str) -> str | None:
    """The file id a token grants, or None when it is malformed or forged."""
    match = _TOKEN.fullmatch(token)
    if match is None or not hmac.compare_digest(match.group(2), _signature(match.group(1))):
        return None
    return match.group(1)


def token_from_url(url: str, base: str) -> str | None:
    """The token of one of this server's own download URLs: under `base` (the public base
    links are made with), or — with no absolute base to compare — an http(s) URL whose
    path is ours. Anything else (another host, `javascript:`, `ftp:`) is no download URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if base and not url.startswith(base + DOWNLOAD_PATH):
        return None
    path = unquote(parts.path)
    if not path.startswith(DOWNLOAD_PATH):
        return None
    return path.removeprefix(DOWNLOAD_PATH).split("/", 1)[0]


def content_disposition(filename: str) -> str:
    """`attachment` with the name for every client (RFC 6266): an ASCII `filename` for old
    ones (aiohttp's helper escapes it), and `filename*` in UTF-8 when the name is not
    ASCII. aiohttp's helper quotes MIME parts (RFC 7578), not HTTP's `filename*`."""
    fallback = "".join(c if " " <= c < "\x7f" else "_" for c in filename)
    value = content_disposition_header("attachment", quote_fields=False, filename=fallback)
    if fallback != filename:
        value += "; filename*=UTF-8''" + quote(filename, safe="")
    return value


def display_name(filename: str) -> str:
    """A client's file name as we show it back (downloads, attachments, spreadsheets):
    trimmed, with bidirectional controls removed so it reads as it is."""
    return BIDI_CONTROLS.sub("", filename).strip()


def safe_name(filename: str) -> str:
    """A storage-safe version of a client's file name (the key, not what is shown)."""
    base = re.split(r"[\\/]", filename)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")
    return cleaned[:120] or "file"


def form_fields(content_type: str) -> dict[str, str]:
    """The fields a signed form fixes besides the key: the object's type, and the 201
    Close documents for a successful post. No field holds a ';', so the form survives
    `curl -F` (which splits values there); the download sets Content-Disposition itself."""
    return {"Content-Type": content_type, "success_action_status": "201"}


def begin(
    tenant_id: int, filename: str, content_type: str, base: str, sign_form: FormSigner
) -> tuple[files_pb2.UploadForm, files_pb2.DownloadLink]:
    """A pending upload, the signed form a browser posts its file with, and the URL that
    downloads it once posted. Nothing is recorded or signed for an invalid request."""
    violations = Violations()
    if not display_name(filename):
        violations.add("filename", REQUIRED)
    elif len(filename) > 255:
        violations.add("filename", "Ensure this value has at most 255 characters.")
    elif CONTROL_CHARACTERS.search(filename):
        violations.add("filename", "File names cannot contain control characters.")
    if not content_type.strip():
        violations.add("content_type", REQUIRED)
    elif not MIME_TYPE.fullmatch(content_type.strip()):
        violations.add("content_type", "Enter a valid MIME type, such as image/jpeg.")
    violations.raise_if_any("validation_failed", "Invalid upload request.")
    upload = create_upload(tenant_id, display_name(filename), content_type.strip())
    url, fields = sign_form(
        upload.bucket,
        upload.key,
        upload.content_type,
        MAX_UPLOAD_BYTES,
        base,
    )
    return messages.upload(url, fields, download_url(base, upload))


def create_upload(tenant_id: int, filename: str, content_type: str) -> FileUpload:
    file_id = "file_" + secrets.token_hex(12)
    return FileUpload.create(
        file_id=file_id,
        tenant=tenant_id,
        bucket=UPLOAD_BUCKET,
        key=f"tenants/{tenant_id}/files/{file_id}/{safe_name(filename)}",
        filename=filename,
        content_type=content_type,
    )


def mark_uploaded(
    bucket: str, key: str, size: int, etag: str, uploaded_at: datetime | None = None
) -> bool:
    """Record that storage holds the object (stored at `uploaded_at`, default now, which
    starts the download window); False when no pending upload has that key."""
    updated = (
        FileUpload.update(size=size, etag=etag, uploaded_at=uploaded_at or utcnow())
        .where(
            FileUpload.bucket == bucket,
            FileUpload.key == key,
            FileUpload.uploaded_at.is_null(),
        )
        .execute()
    )
    return updated == 1


def unmark_uploaded(bucket: str, key: str) -> None:
    """Back to pending: storage could not keep the object after all."""
    FileUpload.update(size=None, etag=None, uploaded_at=None).where(
        FileUpload.bucket == bucket, FileUpload.key == key
    ).execute()


def is_pending(bucket: str, key: str, host: str | None = None) -> bool:
    """Whether the upload at this key awaits its object, on a host its tenant may use."""
    upload = FileUpload.get_or_none(
        FileUpload.bucket == bucket, FileUpload.key == key, FileUpload.uploaded_at.is_null()
    )
    return upload is not None and tenant_hosts.admits(host, upload.tenant_id)


def pending_upload(token: str) -> FileUpload | None:
    """The upload a genuine token grants while it is still pending, else None."""
    file_id = file_id_from_token(token)
    if file_id is None:
        return None
    return FileUpload.get_or_none(FileUpload.file_id == file_id, FileUpload.uploaded_at.is_null())


@dataclass(frozen=True)
class Downloadable:
    upload: FileUpload
    expired: bool


def resolve(
    token: str, now: datetime | None = None, host: str | None = None
) -> Downloadable | None:
    """The completed upload a token grants (with whether its window has passed), or None
    when the token is forged, the upload has not completed, or the host is bound to
    another tenant."""
    file_id = file_id_from_token(token)
    if file_id is None:
        return None
    upload = FileUpload.get_or_none(FileUpload.file_id == file_id)
    if upload is None or upload.uploaded_at is None:
        return None
    if not tenant_hosts.admits(host, upload.tenant_id):
        return None
    now = now or utcnow()
    expired = now >= upload.uploaded_at + DOWNLOAD_WINDOW and not _attached(upload)
    return Downloadable(upload, expired)


def _attached(upload: FileUpload) -> bool:
    """Whether an email activity holds the file: it then stays readable through the
    activity's attachment URL for as long as the activity exists."""
    return EmailAttachment.select().where(EmailAttachment.upload == upload).exists()


def attachable(
    tenant: Tenant | int, url: str, base: str, now: datetime | None = None
) -> FileUpload | None:
    """The tenant's completed upload behind one of our download URLs, within its 24 hours
    (a file attached before stays readable, but is not attachable again), else None."""
    token = token_from_url(url, base)
    found = resolve(token, now) if token else None
    tenant_id = tenant if isinstance(tenant, int) else tenant.id
    if found is None or found.upload.tenant_id != tenant_id:
        return None
    if (now or utcnow()) >= found.upload.uploaded_at + DOWNLOAD_WINDOW:
        return None
    return found.upload
