"""The print house's side of the protocol, simulated on the served directory tree of an SFTP server
(the asyncssh sandbox of the demo, or the chroot of the sshd the tests start).

For every complete batch in `inbox/` (its `<batch_id>.zip.sha256` is there) it checks the zip against
the checksum file and each PDF against the manifest (presence, SHA-256, pages and sheets), takes the
batch out of the inbox (moves the zip, then its checksum file, to `printed/`, as docs/print-house.md
asks of the print house), prints it, and then writes `outbox/<batch_id>.ack.csv` (accepted, or
rejected with a reason) and, by configuration, a `returned-<batch_id>.csv` for some accepted letters.
Files appear in the outbox atomically (written under a dot name, then renamed). A batch whose zip
does not match its checksum file, or whose zip or manifest cannot be read, is left in the inbox
untouched (as a print house would, asking for it again) and reported.

Like a real print house it prints whatever complete batch it finds, also one it has printed before:
every printed letter is appended to the print log beside the served tree (`print_log_path`, out of
reach of the SFTP client), so that a test or a benchmark can count how often each letter was printed
(`printed_letters`).
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import logging
import math
import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from include.dijlepost.printhouse.acks import ACK_COLUMNS, ACK_SUFFIX, RETURNS_COLUMNS
from include.dijlepost.printhouse.batch import CHECKSUM_SUFFIX, MANIFEST_COLUMNS, MANIFEST_NAME

log = logging.getLogger("sandboxes.printhouse.simulator")
PRINT_LOG_NAME = "printed-letters.csv"
_CHECKSUM_LINE = re.compile(r"^([0-9a-f]{64})  (\S+\.zip)\n?$")


@dataclass(frozen=True)
class PrinterBehaviour:
    """Which letters the simulated print house refuses or sees returned: every n-th letter of a
    batch in letter id order (0: none). Deterministic, so tests and the demo know what to expect."""

    reject_every: int = 0
    return_every: int = 0
    reject_reason: str = "address does not fit the envelope window"
    return_reason: str = "unknown_address"


class BatchUnreadable(RuntimeError):
    """The batch cannot be taken: checksum mismatch, unreadable zip or manifest."""


def print_log_path(root: Path) -> Path:
    """The print house's own log of printed letters, beside (not inside) the served tree `root`."""
    return Path(root).resolve().parent / PRINT_LOG_NAME


def printed_letters(root: Path) -> Counter:
    """How many times each letter was printed (and posted) by the print house serving `root`."""
    path = print_log_path(root)
    if not path.exists():
        return Counter()
    with path.open(newline="") as f:
        return Counter(row["letter_id"] for row in csv.DictReader(f) if row["result"] == "accepted")


def _log_printed(root: Path, batch_id: str, answers: list[tuple[str, str, str]]) -> None:
    path = print_log_path(root)
    with path.open("a", newline="") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # the demo's printer thread and a test may both print
        writer = csv.writer(f)
        if f.tell() == 0:
            writer.writerow(("batch_id", "letter_id", "result"))
        writer.writerows((batch_id, lid, result) for lid, result, _ in answers)
        f.flush()
        os.fsync(f.fileno())


def process_inbox(root: Path, behaviour: PrinterBehaviour = PrinterBehaviour()) -> dict:
    """Take every complete batch from `<root>/inbox`; return what was done, per batch id."""
    root = Path(root)
    inbox, outbox, printed = root / "inbox", root / "outbox", root / "printed"
    printed.mkdir(exist_ok=True)
    summary: dict = {"batches": {}, "left_in_inbox": {}}
    for checksum_file in sorted(inbox.glob(f"*.zip{CHECKSUM_SUFFIX}")):
        zip_path = checksum_file.with_name(checksum_file.name[: -len(CHECKSUM_SUFFIX)])
        batch_id = zip_path.stem
        try:
            answers = _check_batch(zip_path, checksum_file)
        except BatchUnreadable as exc:
            log.warning("batch %s left in the inbox: %s", batch_id, exc)
            summary["left_in_inbox"][batch_id] = str(exc)
            continue
        answers = _apply_behaviour(answers, behaviour)
        # Taken: out of the inbox first (the zip, then its checksum file), then printed and answered.
        os.replace(zip_path, printed / zip_path.name)
        os.replace(checksum_file, printed / checksum_file.name)
        _log_printed(root, batch_id, answers)
        _write_atomically(outbox / f"{batch_id}{ACK_SUFFIX}", _csv(ACK_COLUMNS, answers), outbox)
        accepted = [lid for lid, result, _ in answers if result == "accepted"]
        returned = [
            lid
            for i, lid in enumerate(accepted, start=1)
            if behaviour.return_every and i % behaviour.return_every == 0
        ]
        if returned:
            _write_atomically(
                outbox / f"returned-{batch_id}.csv",
                _csv(RETURNS_COLUMNS, [(lid, behaviour.return_reason) for lid in returned]),
                outbox,
            )
        summary["batches"][batch_id] = {
            "accepted": len(accepted),
            "rejected": len(answers) - len(accepted),
            "returned": len(returned),
        }
    return summary


def _check_batch(zip_path: Path, checksum_file: Path) -> list[tuple[str, str, str]]:
    match = _CHECKSUM_LINE.match(checksum_file.read_text(encoding="ascii", errors="replace"))
    if not match or match.group(2) != zip_path.name:
        raise BatchUnreadable(f"{checksum_file.name} is not '<sha256>  {zip_path.name}'")
    if not zip_path.exists():
        raise BatchUnreadable(f"{zip_path.name} is missing")
    with zip_path.open("rb") as f:
        if hashlib.file_digest(f, "sha256").hexdigest() != match.group(1):
            raise BatchUnreadable(f"{zip_path.name} does not match its checksum file")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            manifest = list(csv.DictReader(io.StringIO(zf.read(MANIFEST_NAME).decode("utf-8"), newline="")))
            names = set(zf.namelist()) - {MANIFEST_NAME}
            answers = []
            for row in manifest:
                if tuple(row) != MANIFEST_COLUMNS:
                    raise BatchUnreadable("manifest columns differ from the agreed format")
                answers.append((row["letter_id"], *_check_letter(zf, row, names)))
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as exc:
        raise BatchUnreadable(f"{zip_path.name}: {type(exc).__name__}: {exc}") from None
    listed = {row["file_name"] for row in manifest}
    if names - listed:
        raise BatchUnreadable(
            f"{zip_path.name} holds files the manifest does not list: {sorted(names - listed)[:5]}"
        )
    return sorted(answers)


def _check_letter(zf: zipfile.ZipFile, row: dict, names: set[str]) -> tuple[str, str]:
    if row["file_name"] not in names:
        return "rejected", "PDF missing from the batch"
    data = zf.read(row["file_name"])
    if hashlib.sha256(data).hexdigest() != row["sha256"]:
        return "rejected", "PDF does not match the manifest checksum"
    if not data.startswith(b"%PDF-"):
        return "rejected", "not a PDF"
    try:
        pages, sheets = int(row["pages"]), int(row["sheets"])
    except ValueError:
        return "rejected", "pages or sheets not a number"
    if pages < 1 or sheets != math.ceil(pages / 2):
        return "rejected", "sheets do not match pages for duplex printing"
    if not row["address_line_1"] or not row["address_line_3"]:
        return "rejected", "address incomplete"
    return "accepted", ""


def _apply_behaviour(
    answers: list[tuple[str, str, str]], behaviour: PrinterBehaviour
) -> list[tuple[str, str, str]]:
    out = []
    for i, (lid, result, reason) in enumerate(answers, start=1):
        if result == "accepted" and behaviour.reject_every and i % behaviour.reject_every == 0:
            result, reason = "rejected", behaviour.reject_reason
        out.append((lid, result, reason))
    return out


def _csv(columns: tuple[str, ...], rows) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _write_atomically(path: Path, data: bytes, directory: Path) -> None:
    tmp = directory / f".{path.name}.tmp"
    tmp.write_bytes(data)
    st = directory.stat()
    if os.geteuid() == 0 and st.st_uid != 0:
        os.chown(tmp, st.st_uid, st.st_gid)  # the SFTP user of the folder owns what appears in it
    os.replace(tmp, path)
