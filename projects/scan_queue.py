"""Queued SARIF imports: a large upload is stored, and the task worker imports it.

Writes, like `projects.services` (which does the import itself):

- `scan_submit` (the upload page and the API): imports at once up to
  SARIF_ASYNC_THRESHOLD_BYTES, else calls `scan_enqueue`.
- `scan_enqueue` (the upload page and the API, for a file over
  SARIF_ASYNC_THRESHOLD_BYTES): stores the file in Django's default storage
  (MEDIA_ROOT/sarif/), creates the Scan as `queued`, and once that commits hands it
  to the `import_queued_scan` task (projects/tasks.py).
- `scan_import_queued` (that task): `queued` -> `processing` (started_at) ->
  `complete` or `failed` (finished_at; `error` says what to fix). The file is deleted
  once the scan is final, whichever way it ended.
- `scan_recover` (the `recover_queued_scan` task): what a lost worker left behind.

A worker killed mid-import (SIGKILL, out of memory) leaves its django-tasks-db task
RUNNING for good, and no worker looks at it again. So, as the notifications outbox
does with its leases, every queued scan has a `recover_queued_scan` task booked for
when its import should be over (SARIF_IMPORT_TIMEOUT_SECONDS): a scan still queued
then is enqueued again (its own task was lost, or is far down the queue), and
a scan still processing past its timeout is marked failed, since its worker is gone.
It is failed rather than retried because a file that killed one worker (memory)
would kill the next; the person uploads it again. Every step is a conditional
update, so running a task twice, or the import and the recovery together, imports
a scan at most once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from projects import services
from projects.exceptions import ProjectError, SarifTooLarge
from projects.models import Project, Scan, ScanSource, ScanStatus

logger = logging.getLogger(__name__)

FINAL_STATUSES = (ScanStatus.COMPLETE, ScanStatus.FAILED)


def _timeout() -> timedelta:
    return timedelta(seconds=float(settings.SARIF_IMPORT_TIMEOUT_SECONDS))


def sarif_size(sarif) -> int:
    """The size in bytes of a body read (bytes) or of an upload (a Django File)."""
    if isinstance(sarif, (bytes, bytearray, memoryview)):
        return len(sarif)
    return sarif.size


def scan_should_queue(*, sarif) -> bool:
    """Whether this upload is imported by the worker rather than in the request."""
    return sarif_size(sarif) > settings.SARIF_ASYNC_THRESHOLD_BYTES


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def scan_submit(
    *,
    project: Project,
    sarif,
    source: str,
    actor=None,
    category: str = "",
) -> Scan:
    """Import an upload now, or queue it for the worker when it is over
    SARIF_ASYNC_THRESHOLD_BYTES. The scan's status says which: `complete` or
    `queued`. Raises what `services.scan_import` or `scan_enqueue` raise."""
    submit = scan_enqueue if scan_should_queue(sarif=sarif) else services.scan_import
    return submit(
        project=project, sarif=sarif, source=source, actor=actor, category=category
    )


def scan_enqueue(
    *,
    project: Project,
    sarif,
    source: str,
    actor=None,
    category: str = "",
) -> Scan:
    """Store `sarif` (bytes, or an uploaded Django File) and create a queued Scan.

    The worker imports it once this commits. Only the size is checked here (over
    SARIF_MAX_BYTES is a SarifTooLarge, and nothing is stored); what is wrong with
    the content is the import's to find, and ends up in the scan's `error`.
    """
    if source not in ScanSource.values:
        raise ValueError(f"unknown scan source {source!r}")
    size, limit = sarif_size(sarif), settings.SARIF_MAX_BYTES
    if size > limit:
        raise SarifTooLarge(
            _(
                "The file is %(size)s; the limit is %(limit)s. Import fewer results "
                "per file (e.g. one per tool or per directory) or raise "
                "SARIF_MAX_BYTES."
            )
            % {"size": _megabytes(size), "limit": _megabytes(limit)}
        )
    if isinstance(sarif, (bytes, bytearray, memoryview)):
        content = ContentFile(bytes(sarif))
    else:
        # An UploadedFile as it is: a temporary one is moved, not copied.
        content = sarif if isinstance(sarif, File) else File(sarif)
    scan = Scan(
        project=project,
        source=source,
        created_by=actor,
        category=category,
        status=ScanStatus.QUEUED,
    )
    # The person's file name is not used: it says nothing the row does not.
    scan.sarif_file.save(f"{uuid.uuid4().hex}.sarif", content, save=False)
    try:
        with transaction.atomic():
            scan.save()
            transaction.on_commit(lambda: _enqueue(scan.pk))
    except BaseException:
        scan.sarif_file.delete(save=False)
        raise
    return scan


def _enqueue(scan_id: int) -> None:
    # The one import cycle of this module, as in notifications.services.outbox: the
    # tasks call these services, and these services hand scans to those tasks.
    # Imported at commit time, so importing the services never loads the framework.
    from projects import tasks

    tasks.import_queued_scan_enqueue(scan_id=scan_id)


def scan_recovery_at() -> datetime:
    """When to look again at a scan whose import starts (or is queued) now."""
    return timezone.now() + _timeout()


def scan_import_queued(*, scan_id: int) -> Scan | None:
    """Import the queued scan `scan_id`, and delete its file once it is final.

    Returns the scan, or None when it is not queued any more (another task has it,
    or has done it): running this twice imports it once.
    """
    started_at = timezone.now()
    claimed = Scan.objects.filter(pk=scan_id, status=ScanStatus.QUEUED).update(
        status=ScanStatus.PROCESSING, started_at=started_at
    )
    if not claimed:
        return None
    scan = Scan.objects.select_related("project", "created_by").get(pk=scan_id)
    try:
        with scan.sarif_file.open("rb") as sarif:
            scan = services.scan_import(
                project=scan.project,
                sarif=sarif,
                source=scan.source,
                actor=scan.created_by,
                category=scan.category,
                scan=scan,
            )
    except FileNotFoundError:
        _fail(
            scan,
            started_at=started_at,
            error=_(
                "The uploaded file is no longer stored, so it cannot be imported. "
                "Upload it again."
            ),
        )
    except ProjectError as exc:
        # scan_import wrote nothing; its message says what to fix in the file.
        _fail(scan, started_at=started_at, error=exc.message)
    except Exception:
        logger.exception("Queued import of scan %s failed", scan_id)
        _fail(
            scan,
            started_at=started_at,
            error=_(
                "The import failed because of an error in the product, not in the "
                "file. Try again; if it fails again, ask an administrator to look "
                "at the worker's log."
            ),
        )
        raise
    else:
        _file_delete(scan)
    scan.refresh_from_db()
    return scan


def _fail(scan: Scan, *, started_at: datetime, error: str) -> bool:
    """Mark `scan` failed if it is still the import started at `started_at`; its
    file is deleted either way, once the scan is final."""
    failed = Scan.objects.filter(
        pk=scan.pk, status=ScanStatus.PROCESSING, started_at=started_at
    ).update(status=ScanStatus.FAILED, error=str(error), finished_at=timezone.now())
    _file_delete(scan)
    return bool(failed)


def _file_delete(scan: Scan) -> None:
    name = scan.sarif_file.name
    if not name:
        return
    try:
        scan.sarif_file.storage.delete(name)
    except OSError:
        # Left behind, but no longer referenced: nothing reads it again.
        logger.exception("Could not delete the SARIF file of scan %s", scan.pk)
    Scan.objects.filter(pk=scan.pk, sarif_file=name).update(sarif_file="")
    scan.sarif_file.name = ""


def scan_recover(*, scan_id: int) -> datetime | None:
    """Finish what a lost task or a dead worker left of scan `scan_id`.

    Still queued: its task was lost, or is far down the queue; it is enqueued again
    (with a recovery of its own), and whichever task comes first imports it.
    Processing past SARIF_IMPORT_TIMEOUT_SECONDS: its worker is gone (a live one
    would have finished, or failed it), so it is marked failed. Returns when to look
    again (a scan processing within its time), or None.
    """
    scan = Scan.objects.filter(pk=scan_id).first()
    if scan is None or scan.status in FINAL_STATUSES:
        return None
    if scan.status == ScanStatus.QUEUED:
        _enqueue(scan_id)
        return None
    deadline = (scan.started_at or scan.created_at) + _timeout()
    if deadline > timezone.now():
        return deadline
    if _fail(
        scan,
        started_at=scan.started_at,
        error=_(
            "The import stopped before it finished: the worker running it was "
            "stopped, or ran out of memory. Upload the file again; if this happens "
            "again, split it (e.g. one file per tool) or ask an administrator to "
            "import it with manage.py import_sarif."
        ),
    ):
        logger.warning(
            "Scan %s was still processing after SARIF_IMPORT_TIMEOUT_SECONDS; "
            "marked failed",
            scan_id,
        )
    return None
