"""The SFTP side of the print house: putting a batch's files into its inbox whole, and finding out
whether it already has a batch.

Every file is written as `<name>.part` and renamed once its remote size is checked, so a file under
its final name is always complete and the print house only picks up names without `.part`. The zip
goes first, its `<batch_id>.zip.sha256` last: the checksum file's arrival is the print house's
signal that the batch is complete. A rerun after any failure is safe: a finished file is recognised
by name and size (zip) or bytes (checksum) and left alone, a leftover `.part` is overwritten, and a
different file under the same final name is never replaced (`RemoteBatchConflict`).

`find_batch` answers where a batch is at the print house, following the contract of
docs/print-house.md ("Handing over exactly once"): files only ever move from the inbox to the
print house's taken folder, so the inbox is looked at first, then the taken folder, then the
acknowledgements. No Airflow import.
"""

from __future__ import annotations

import logging
import posixpath
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from paramiko import SFTPClient

from include.dijlepost.printhouse.batch import CHECKSUM_SUFFIX, BuiltBatch, checksum_line, write_checksum_file

log = logging.getLogger("dijlepost.printhouse")

PART_SUFFIX = ".part"
ACK_SUFFIX = ".ack.csv"
# Where our acknowledgement reader moves the print house's files once read (acks.collect).
PROCESSED_DIR = "processed"
REFUSED_DIR = "refused"


class RemoteBatchConflict(RuntimeError):
    """The print house already holds a different file under this batch's name."""


@dataclass(frozen=True)
class UploadResult:
    remote_path: str
    size: int
    already_present: bool


@dataclass(frozen=True)
class PrintHouseFolders:
    """The print house's folders as seen over SFTP: `inbox` (we put batches), `taken` (the print house
    moves a batch there when it takes it from the inbox), `outbox` (its acknowledgements)."""

    inbox: str = "inbox"
    taken: str = "printed"
    outbox: str = "outbox"


class Whereabouts(StrEnum):
    """Where a batch is at the print house."""

    NOT_THERE = "not_there"  # nothing under its final names: never arrived (a .part maybe)
    ZIP_IN_INBOX = "zip_in_inbox"  # the zip, not yet its checksum file: not complete, not taken
    IN_INBOX = "in_inbox"  # zip and checksum file: complete, waiting to be taken
    TAKEN = "taken"  # in the print house's taken folder
    ACKNOWLEDGED = "acknowledged"  # its acknowledgement is in the print house's outbox

    @property
    def delivered(self) -> bool:
        """The print house has the whole batch (or had it): nothing may be sent again."""
        return self in (Whereabouts.IN_INBOX, Whereabouts.TAKEN, Whereabouts.ACKNOWLEDGED)


def remote_size(sftp: SFTPClient, path: str) -> int | None:
    """The size of a remote file, or None when there is none."""
    try:
        return sftp.stat(path).st_size
    except FileNotFoundError:
        return None


def rename(sftp: SFTPClient, source: str, target: str) -> None:
    """Rename on the server, atomically where it can (posix-rename on OpenSSH and asyncssh)."""
    try:
        sftp.posix_rename(source, target)
    except OSError as exc:
        # paramiko reports "operation unsupported" without an errno (and cannot tell us up front
        # which extensions the server has); not-found and permission errors carry one and are real.
        if exc.errno is not None:
            raise
        sftp.rename(source, target)


def upload_batch(sftp: SFTPClient, local_path: Path, remote_dir: str) -> UploadResult:
    """Upload `local_path` into `remote_dir` under the same name (see the module docstring)."""
    # Batch files are named <batch_id>.zip; the id carries no personal data, so it may be logged.
    batch_id = local_path.stem
    size = local_path.stat().st_size
    final = posixpath.join(remote_dir, local_path.name)
    part = final + PART_SUFFIX

    existing = remote_size(sftp, final)
    if existing == size:
        log.info("batch %s already at the print house (%d bytes); not uploaded again", batch_id, size)
        return UploadResult(remote_path=final, size=size, already_present=True)
    if existing is not None:
        raise RemoteBatchConflict(
            f"batch {batch_id}: the print house already has {final} with {existing} bytes, the local "
            f"file has {size}; refusing to overwrite a delivered batch"
        )

    started = time.monotonic()
    with local_path.open("rb") as local:
        # "wb" truncates, so a .part left by an interrupted attempt is simply overwritten.
        sftp.putfo(local, part, file_size=size, confirm=False)
    uploaded = sftp.stat(part).st_size
    if uploaded != size:
        raise OSError(f"batch {batch_id}: {uploaded} of {size} bytes arrived; keeping it as .part")
    rename(sftp, part, final)
    log.info("batch %s uploaded: %d bytes in %.2f s", batch_id, size, time.monotonic() - started)
    return UploadResult(remote_path=final, size=size, already_present=False)


def upload_checksum(sftp: SFTPClient, built: BuiltBatch, remote_dir: str) -> UploadResult:
    """Put `<batch_id>.zip.sha256` next to the uploaded zip, after it, by the same .part-then-rename
    protocol. Its arrival tells the print house the batch is complete. Idempotent: the same content
    already there is left alone; a different content is never overwritten."""
    data = checksum_line(built)
    local = write_checksum_file(built)
    final = posixpath.join(remote_dir, local.name)
    if remote_size(sftp, final) is not None:
        with sftp.open(final, "rb") as remote:
            existing = remote.read(4096)
        if existing == data:
            return UploadResult(remote_path=final, size=len(data), already_present=True)
        raise RemoteBatchConflict(
            f"batch {built.batch_id}: the print house holds a different {local.name}; "
            "refusing to overwrite it"
        )
    part = final + PART_SUFFIX
    with sftp.open(part, "wb") as remote:
        remote.write(data)
    if sftp.stat(part).st_size != len(data):
        raise OSError(f"batch {built.batch_id}: the checksum file arrived incomplete; keeping it as .part")
    rename(sftp, part, final)
    return UploadResult(remote_path=final, size=len(data), already_present=False)


def find_batch(sftp: SFTPClient, batch_id: str, folders: PrintHouseFolders) -> Whereabouts:
    """Where `batch_id` is at the print house. The order matters: the print house moves a batch out
    of the inbox into its taken folder (and never back), so a batch not in the inbox at the first
    look, if it ever arrived, is in the taken folder at the second."""
    zip_name = f"{batch_id}.zip"
    if remote_size(sftp, posixpath.join(folders.inbox, zip_name)) is not None:
        if remote_size(sftp, posixpath.join(folders.inbox, zip_name + CHECKSUM_SUFFIX)) is not None:
            return Whereabouts.IN_INBOX
        return Whereabouts.ZIP_IN_INBOX
    for name in (zip_name, zip_name + CHECKSUM_SUFFIX):
        if remote_size(sftp, posixpath.join(folders.taken, name)) is not None:
            return Whereabouts.TAKEN
    ack = f"{batch_id}{ACK_SUFFIX}"
    for folder in (
        folders.outbox,
        posixpath.join(folders.outbox, PROCESSED_DIR),
        posixpath.join(folders.outbox, REFUSED_DIR),
    ):
        if remote_size(sftp, posixpath.join(folder, ack)) is not None:
            return Whereabouts.ACKNOWLEDGED
    return Whereabouts.NOT_THERE
