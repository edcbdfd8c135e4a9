"""Putting a built batch into the print house's inbox exactly once, and only ever whole.

The file is written as `<name>.part` and renamed once its remote size is checked, so a file under
its final name is always complete and the print house only picks up names without `.part`. A rerun
after any failure is safe: a finished upload is recognised by name and size and left alone, a
leftover `.part` is overwritten, and a different file under the same final name is never replaced.
"""
from __future__ import annotations

import logging
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path

from paramiko import SFTPClient

log = logging.getLogger("dijlepost.printhouse")

PART_SUFFIX = ".part"


class RemoteBatchConflict(RuntimeError):
    """The print house already holds a different file under this batch's name."""


@dataclass(frozen=True)
class UploadResult:
    remote_path: str
    size: int
    already_present: bool


def upload_batch(sftp: SFTPClient, local_path: Path, remote_dir: str) -> UploadResult:
    """Upload `local_path` into `remote_dir` under the same name (see the module docstring)."""
    # Batch files are named <batch_id>.zip; the id carries no personal data, so it may be logged.
    batch_id = local_path.stem
    size = local_path.stat().st_size
    final = posixpath.join(remote_dir, local_path.name)
    part = final + PART_SUFFIX

    remote_size = _remote_size(sftp, final)
    if remote_size == size:
        log.info("batch %s already at the print house (%d bytes); not uploaded again", batch_id, size)
        return UploadResult(remote_path=final, size=size, already_present=True)
    if remote_size is not None:
        raise RemoteBatchConflict(
            f"batch {batch_id}: the print house already has {final} with {remote_size} bytes, the local "
            f"file has {size}; refusing to overwrite a delivered batch"
        )

    started = time.monotonic()
    with local_path.open("rb") as local:
        # "wb" truncates, so a .part left by an interrupted attempt is simply overwritten.
        sftp.putfo(local, part, file_size=size, confirm=False)
    uploaded = sftp.stat(part).st_size
    if uploaded != size:
        raise OSError(f"batch {batch_id}: {uploaded} of {size} bytes arrived; keeping it as .part")
    _rename(sftp, part, final)
    log.info("batch %s uploaded: %d bytes in %.2f s", batch_id, size, time.monotonic() - started)
    return UploadResult(remote_path=final, size=size, already_present=False)


def _remote_size(sftp: SFTPClient, path: str) -> int | None:
    try:
        return sftp.stat(path).st_size
    except FileNotFoundError:
        return None


def _rename(sftp: SFTPClient, source: str, target: str) -> None:
    try:
        # Atomic rename(2) on OpenSSH and asyncssh servers.
        sftp.posix_rename(source, target)
    except OSError as exc:
        # paramiko reports "operation unsupported" without an errno (and cannot tell us up front
        # which extensions the server has); not-found and permission errors carry one and are real.
        if exc.errno is not None:
            raise
        sftp.rename(source, target)
