"""Keeping the store and object storage in step across crashes.

Every writer puts an object in place before it commits the row that points at it, so a
`kill -9` can leave debris but never a row without its object: temp files of uploads in
flight, and objects whose row was never committed. The sweep (at start and every
SWEEP_INTERVAL_SECONDS) removes that debris once it is older than the grace period, so
an upload still in flight is never touched. `crmgate admin fsck` reports every mismatch,
including rows whose object went missing some other way, and `--repair` fixes them.

With direct uploads (CRMGATE_DIRECT_UPLOADS=1) clients post Close files to the bucket
and the row completes only at first use, so the object of a pending upload is no debris
there: `direct_uploads` keeps it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from server.c2c.media import MEDIA_BUCKET
from server.crm.sheets import SPREADSHEET_BUCKET
from server.database.models import FileUpload, Media, Spreadsheet
from server.files.uploads import UPLOAD_BUCKET, unmark_uploaded
from server.objects import ObjectStorage

log = logging.getLogger("crmgate.consistency")

BUCKETS = (MEDIA_BUCKET, UPLOAD_BUCKET, SPREADSHEET_BUCKET)
SWEEP_INTERVAL_SECONDS = 600.0


class Kind(StrEnum):
    MISSING_MEDIA = "media-without-object"
    MISSING_SPREADSHEET = "spreadsheet-without-object"
    MISSING_UPLOAD = "upload-without-object"
    ORPHAN_OBJECT = "orphan-object"
    TEMP_FILE = "temp-file"


#: What the sweep removes on its own: debris, never rows.
DEBRIS = frozenset({Kind.ORPHAN_OBJECT, Kind.TEMP_FILE})


@dataclass(frozen=True)
class Mismatch:
    kind: Kind
    bucket: str  # "" for a temp file
    key: str  # the object's key, or the temp file's path
    row_id: int | None = None

    def __str__(self) -> str:
        where = self.key if self.kind is Kind.TEMP_FILE else f"{self.bucket}/{self.key}"
        row = f" (row {self.row_id})" if self.row_id is not None else ""
        return f"{self.kind} {where}{row}"


@dataclass(frozen=True)
class _Row:
    kind: Kind
    bucket: str
    key: str
    row_id: int


def _rows() -> Iterator[_Row]:
    """Every row that promises an object: media, spreadsheets and completed uploads."""
    for media_id, key in Media.select(Media.id, Media.storage_key).tuples().iterator():
        yield _Row(Kind.MISSING_MEDIA, MEDIA_BUCKET, key, media_id)
    sheets = Spreadsheet.select(Spreadsheet.id, Spreadsheet.storage_key).tuples()
    for sheet_id, key in sheets.iterator():
        yield _Row(Kind.MISSING_SPREADSHEET, SPREADSHEET_BUCKET, key, sheet_id)
    uploads = (
        FileUpload.select(FileUpload.id, FileUpload.bucket, FileUpload.key)
        .where(FileUpload.uploaded_at.is_null(False))
        .tuples()
    )
    for upload_id, bucket, key in uploads.iterator():
        yield _Row(Kind.MISSING_UPLOAD, bucket, key, upload_id)


def _pending_uploads() -> Iterator[tuple[str, str]]:
    """(bucket, key) of every upload not yet completed."""
    pending = FileUpload.select(FileUpload.bucket, FileUpload.key).where(
        FileUpload.uploaded_at.is_null()
    )
    yield from pending.tuples().iterator()


def check(
    buckets: ObjectStorage,
    grace: timedelta,
    now: datetime | None = None,
    *,
    direct_uploads: bool = False,
) -> list[Mismatch]:
    """Every mismatch between the rows and the objects.

    Rows are read before objects are listed: a row is committed only once its object is
    in place, so a row read here whose object is not listed really lacks it. Objects and
    temp files younger than `grace` are left out: they may belong to uploads in flight.
    """
    now = now or datetime.now(UTC)
    cutoff = now - grace
    rows = list(_rows())
    objects = {bucket: dict(buckets.list(bucket)) for bucket in BUCKETS}
    found = [
        Mismatch(row.kind, row.bucket, row.key, row.row_id)
        for row in rows
        if row.key not in objects.get(row.bucket, {})
    ]
    referenced = {(row.bucket, row.key) for row in rows}
    if direct_uploads:
        referenced.update(_pending_uploads())
    for bucket, listing in objects.items():
        found += [
            Mismatch(Kind.ORPHAN_OBJECT, bucket, key)
            for key, modified in sorted(listing.items())
            if modified <= cutoff and (bucket, key) not in referenced
        ]
    found += [
        Mismatch(Kind.TEMP_FILE, "", str(path))
        for path, modified in sorted(buckets.temp_files())
        if modified <= cutoff
    ]
    return found


def repair(
    buckets: ObjectStorage, mismatches: Iterable[Mismatch], *, direct_uploads: bool = False
) -> None:
    """Fix each mismatch: debris is removed; a media or spreadsheet row whose object is
    gone is deleted (nothing can serve it again); a completed upload whose object is gone
    goes back to pending, so its download URL answers 404 and it cannot be attached, while
    email attachments already made keep their row to point at."""
    for mismatch in mismatches:
        match mismatch.kind:
            case Kind.ORPHAN_OBJECT:
                # A row may have been committed since the check: look again, then delete.
                if not _referenced(mismatch.bucket, mismatch.key, direct_uploads):
                    buckets.delete(mismatch.bucket, mismatch.key)
            case Kind.TEMP_FILE:
                Path(mismatch.key).unlink(missing_ok=True)
            case Kind.MISSING_MEDIA:
                Media.delete().where(Media.id == mismatch.row_id).execute()
            case Kind.MISSING_SPREADSHEET:
                Spreadsheet.delete().where(Spreadsheet.id == mismatch.row_id).execute()
            case Kind.MISSING_UPLOAD:
                unmark_uploaded(mismatch.bucket, mismatch.key)


def _referenced(bucket: str, key: str, direct_uploads: bool) -> bool:
    if bucket == MEDIA_BUCKET:
        return Media.select().where(Media.storage_key == key).exists()
    if bucket == SPREADSHEET_BUCKET:
        return Spreadsheet.select().where(Spreadsheet.storage_key == key).exists()
    uploads = FileUpload.select().where(FileUpload.bucket == bucket, FileUpload.key == key)
    if not direct_uploads:
        uploads = uploads.where(FileUpload.uploaded_at.is_null(False))
    return uploads.exists()


def summary(mismatches: Iterable[Mismatch]) -> str:
    counts = Counter(mismatch.kind for mismatch in mismatches)
    if not counts:
        return "no mismatches"
    return ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items()))


def sweep(
    buckets: ObjectStorage, grace: timedelta, *, direct_uploads: bool = False
) -> list[Mismatch]:
    """Remove crash debris older than `grace`; rows are left to fsck, only reported."""
    mismatches = check(buckets, grace, direct_uploads=direct_uploads)
    debris = [mismatch for mismatch in mismatches if mismatch.kind in DEBRIS]
    repair(buckets, debris, direct_uploads=direct_uploads)
    rows = [mismatch for mismatch in mismatches if mismatch.kind not in DEBRIS]
    if rows:
        log.warning("%s point at missing objects; `crmgate admin fsck` lists them", summary(rows))
    log.info("orphan sweep done: removed %s", summary(debris) if debris else "nothing")
    return debris


class OrphanSweeper:
    """Sweeps at start and then every `interval`, on a thread: listing a large bucket
    must not hold up the event loop."""

    def __init__(
        self,
        buckets: ObjectStorage,
        grace: timedelta,
        interval: float = SWEEP_INTERVAL_SECONDS,
        *,
        direct_uploads: bool = False,
    ) -> None:
        self._buckets = buckets
        self._grace = grace
        self._interval = interval
        self._direct_uploads = direct_uploads

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(
                    sweep, self._buckets, self._grace, direct_uploads=self._direct_uploads
                )
            except Exception:
                log.exception("orphan sweep failed; it runs again in %ss", self._interval)
            await asyncio.sleep(self._interval)
