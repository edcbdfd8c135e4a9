"""Durable storage of the rendered PDFs on the document volume.

A PDF is written to a new temporary file beside its final name and renamed onto it, so a reader sees
the old file or the whole new one (`write_atomically`). A render task makes a whole chunk's PDFs
durable in one go (`VolumeSync`: one syncfs of the volume instead of an fsync per PDF), then syncs
the directories the renames touched (`sync_directories`), and only then records the letters as
rendered: a letter marked rendered always has its PDF on disk. No Airflow, no database.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from pathlib import Path


def document_path(root: Path, letter: dict) -> Path:
    return root / letter["department"] / f"{letter['letter_id']}.pdf"


def write_atomically(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write `data` to a new temporary file next to `path` and rename it onto `path`: a reader sees
    the old file or the whole new one. `sync=False` leaves the fsync to the caller (`VolumeSync`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_syncfs():
    """libc's syncfs(2) (Linux), or None where there is none."""
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
    syncfs.argtypes, syncfs.restype = [ctypes.c_int], ctypes.c_int
    return syncfs


SYNCFS = load_syncfs()


class VolumeSync:
    """Makes the files written under `root` durable in one go: `syncfs(2)` on the file system holding
    `root` instead of one fsync per file.

    Per-file fsync made every PDF its own write-back (and, on a journalled volume, its own journal
    commit) while the letters rendered; one syncfs per chunk writes them back together and waits for
    it. The descriptor is opened before the first file is written, so that syncfs also reports a
    write-back error that happened in the background while the chunk rendered (Linux >= 5.8 reports
    errors since the descriptor was opened). Files in a directory on another file system (a
    department directory that is a mount of its own) are fsynced one by one instead, and so is every
    file with `each_file` (DIJLEPOST_DOCUMENT_SYNC=file) or where libc has no syncfs."""

    def __init__(self, root: Path, each_file: bool = False):
        root.mkdir(parents=True, exist_ok=True)
        use_syncfs = SYNCFS is not None and not each_file
        self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY) if use_syncfs else None
        self._device = os.fstat(self._fd).st_dev if self._fd is not None else None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def sync(self, paths) -> None:
        paths = [Path(p) for p in paths]
        if self._fd is not None:
            if SYNCFS(self._fd) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"syncfs of the document volume failed: {os.strerror(errno)}")
            covered = {d for d in {p.parent for p in paths} if os.stat(d).st_dev == self._device}
            paths = [p for p in paths if p.parent not in covered]
        for path in paths:
            fsync_path(path)


def fsync_path(path) -> None:
    """fsync a file or a directory by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_directories(paths, root: Path) -> None:
    """fsync the directory of each of `paths` and the directories above it, up to the one holding
    `root`: a file renamed into a directory is only there for good once the directory is synced, and a
    directory created on a department's first run only once its parent is (POSIX; ext4 without a
    journal may lose either). The deepest first."""
    top = Path(root).absolute().parent
    directories: dict[Path, None] = {}
    for path in paths:
        for directory in Path(path).absolute().parents:
            if directory in directories:
                break
            directories[directory] = None
            if directory == top:
                break
    for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
        fsync_path(directory)
