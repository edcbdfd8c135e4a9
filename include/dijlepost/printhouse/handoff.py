"""Handing paper letters over to the print house: batch planning, the daily cut-off and the batch's
own checksum file. `pipeline.py` keeps the entry points the wave DAG calls; the rules live here.

Planning (`plan_batches`) is pure: letters are grouped by print day and postage class, in letter id
order, and cut into batches of at most `max_letters` letters and `max_bytes` bytes. A letter's print
day is the day it was decided (Europe/Brussels), or the next day when it was decided at or after the
wave's cut-off. Membership is written to the database before any file is built (`assign_print_batches`),
so a retry rebuilds the same batch with the same id, and a batch is handed over only once its print
day has come (`pending_print_batches`). No Airflow import.
"""
from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from paramiko import SFTPClient

from include.dijlepost.outbox import RunContext, quarantine, record_events
from include.dijlepost.printhouse.batch import BuiltBatch, batch_id_for, postage_class_for
from include.dijlepost.printhouse.upload import PART_SUFFIX, RemoteBatchConflict, _remote_size, _rename

BRUSSELS = ZoneInfo("Europe/Brussels")
MIB = 1024 * 1024
# What a letter adds to the zip besides its PDF: two zip headers with its file name (~100 bytes) and
# its manifest row (address lines included, ~300 bytes); generous so a batch never exceeds its limit.
PER_LETTER_OVERHEAD = 1024
CHECKSUM_SUFFIX = ".sha256"
_CUTOFF = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")


def parse_cutoff(value: str) -> time:
    """'HH:MM' (24 h, Europe/Brussels) -> time; anything else is a configuration error."""
    match = _CUTOFF.match(value or "")
    if not match:
        raise ValueError(f"print cut-off {value!r} must be HH:MM (24-hour clock, Europe/Brussels)")
    return time(int(match.group(1)), int(match.group(2)))


def print_day(decided_at: datetime, cutoff: time) -> date:
    """The day a letter's batch goes to the print house: its decision day, or the next day when the
    decision came at or after the cut-off (local time in Brussels, daylight saving included)."""
    if decided_at.tzinfo is None:
        raise ValueError("decided_at must carry a time zone")
    local = decided_at.astimezone(BRUSSELS)
    return local.date() + timedelta(days=1) if local.time() >= cutoff else local.date()


def today_in_brussels(now: datetime | None = None) -> date:
    return (now or datetime.now(BRUSSELS)).astimezone(BRUSSELS).date()


@dataclass(frozen=True)
class PlannedLetter:
    letter_id: str
    postage_class: str
    print_day: date
    pdf_bytes: int


@dataclass(frozen=True)
class PlannedBatch:
    batch_id: str
    postage_class: str
    print_day: date
    letter_ids: tuple[str, ...]
    estimated_bytes: int


def plan_batches(department: str, letters: Sequence[PlannedLetter], max_letters: int,
                 max_bytes: int) -> list[PlannedBatch]:
    """Cut the letters into batches by (print day, postage class), at most `max_letters` letters and
    `max_bytes` estimated zip bytes each. A single letter larger than `max_bytes` gets a batch of
    its own rather than being held back forever."""
    if max_letters < 1 or max_bytes < 1:
        raise ValueError("batch limits must be positive")
    groups: dict[tuple[date, str], list[PlannedLetter]] = {}
    for letter in sorted(letters, key=lambda l: l.letter_id):
        groups.setdefault((letter.print_day, letter.postage_class), []).append(letter)
    batches: list[PlannedBatch] = []
    for (day, postage_class), members in sorted(groups.items()):
        current: list[PlannedLetter] = []
        size = 0
        for letter in members:
            cost = letter.pdf_bytes + PER_LETTER_OVERHEAD
            if current and (len(current) >= max_letters or size + cost > max_bytes):
                batches.append(_batch(department, postage_class, day, current, size))
                current, size = [], 0
            current.append(letter)
            size += cost
        if current:
            batches.append(_batch(department, postage_class, day, current, size))
    return batches


def _batch(department: str, postage_class: str, day: date, members: list[PlannedLetter], size: int) -> PlannedBatch:
    ids = tuple(m.letter_id for m in members)
    return PlannedBatch(batch_id=batch_id_for(department, postage_class, ids), postage_class=postage_class,
                        print_day=day, letter_ids=ids, estimated_bytes=size)


def assign_print_batches(conn, department: str, run_id: str, ctx: RunContext, max_letters: int,
                         max_mb: float | None = None, cutoff: str | None = None,
                         chunk: int | None = None) -> list[str]:
    """Record batch membership (and print day) for the claim's rendered paper letters (or those of one
    chunk of it) before any file is built. A letter already in a batch is never assigned again; a
    letter whose PDF has vanished since rendering is quarantined with that reason instead of failing
    the whole hand-over."""
    cutoff_time = parse_cutoff(cutoff) if cutoff else None
    max_bytes = int(max_mb * MIB) if max_mb else 2**62
    with conn.cursor() as cur:
        cur.execute("SELECT letter_id, registered, decided_at, pdf_path FROM letters WHERE claim_run_id = %s "
                    "AND status = 'processing' AND channel = 'paper' AND rendered_at IS NOT NULL "
                    "AND print_batch_id IS NULL" + (" AND claim_chunk = %s" if chunk is not None else "")
                    + " ORDER BY letter_id", (run_id,) if chunk is None else (run_id, chunk))
        rows = cur.fetchall()
    conn.commit()

    planned, missing = [], []
    for letter_id, registered, decided_at, pdf_path in rows:
        try:
            size = os.stat(pdf_path).st_size
        except OSError as exc:
            missing.append((letter_id, f"print: the rendered PDF is gone ({type(exc).__name__})"))
            continue
        day = print_day(decided_at, cutoff_time) if cutoff_time and decided_at else today_in_brussels()
        planned.append(PlannedLetter(letter_id, postage_class_for(registered), day, size))

    batches = plan_batches(department, planned, max_letters, max_bytes)
    with conn.cursor() as cur:
        for letter_id, reason in missing:
            quarantine(cur, ctx, letter_id, run_id, reason, stage="print")
        for b in batches:
            cur.execute("INSERT INTO print_batches (batch_id, department, postage_class, letter_count, hand_over_on) "
                        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (batch_id) DO NOTHING",
                        (b.batch_id, department, b.postage_class, len(b.letter_ids), b.print_day))
            cur.execute("UPDATE letters SET print_batch_id = %s, updated_at = now() WHERE letter_id = ANY(%s) "
                        "AND status = 'processing' AND print_batch_id IS NULL", (b.batch_id, list(b.letter_ids)))
            record_events(cur, ctx, ((lid, "assigned_to_print_batch",
                                      {"batch_id": b.batch_id, "hand_over_on": b.print_day.isoformat()})
                                     for lid in b.letter_ids))
    conn.commit()
    return [b.batch_id for b in batches]


def pending_print_batches(conn, department: str, today: date | None = None, run_id: str | None = None,
                          chunk: int | None = None) -> list[str]:
    """Recorded batches not yet uploaded whose print day has come, oldest first: all of the department,
    or (with `run_id` and `chunk`) those holding letters of that chunk of the claim."""
    sql = ("SELECT batch_id FROM print_batches WHERE department = %s AND status = 'assigned' "
           "AND (hand_over_on IS NULL OR hand_over_on <= %s)")
    params: list = [department, today or today_in_brussels()]
    if chunk is not None:
        sql += (" AND batch_id IN (SELECT print_batch_id FROM letters WHERE claim_run_id = %s AND claim_chunk = %s "
                "AND status = 'processing' AND print_batch_id IS NOT NULL)")
        params += [run_id, chunk]
    with conn.cursor() as cur:
        cur.execute(sql + " ORDER BY created_at, batch_id", params)
        ids = [r[0] for r in cur.fetchall()]
    conn.commit()
    return ids


def deferred_print_batches(conn, department: str, today: date | None = None) -> list[tuple[str, date]]:
    """Batches waiting for a later print day (their letters were decided after the cut-off)."""
    with conn.cursor() as cur:
        cur.execute("SELECT batch_id, hand_over_on FROM print_batches WHERE department = %s AND status = 'assigned' "
                    "AND hand_over_on > %s ORDER BY hand_over_on, batch_id", (department, today or today_in_brussels()))
        rows = cur.fetchall()
    conn.commit()
    return rows


# --------------------------------------------------------------------------- the batch's checksum

def checksum_line(built: BuiltBatch) -> bytes:
    """`<sha256>  <batch_id>.zip`: the `sha256sum` format, so `sha256sum -c` checks the zip."""
    return f"{built.sha256}  {built.path.name}\n".encode("ascii")


def write_checksum_file(built: BuiltBatch) -> Path:
    path = built.path.with_name(built.path.name + CHECKSUM_SUFFIX)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(checksum_line(built))
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class ChecksumUpload:
    remote_path: str
    already_present: bool


def upload_checksum(sftp: SFTPClient, built: BuiltBatch, remote_dir: str) -> ChecksumUpload:
    """Put `<batch_id>.zip.sha256` next to the uploaded zip, after it, by the same .part-then-rename
    protocol. Its arrival tells the print house the batch is complete. Idempotent: the same content
    already there is left alone; a different content is never overwritten."""
    data = checksum_line(built)
    local = write_checksum_file(built)
    final = posixpath.join(remote_dir, local.name)
    remote_size = _remote_size(sftp, final)
    if remote_size is not None:
        with sftp.open(final, "rb") as remote:
            existing = remote.read(4096)
        if existing == data:
            return ChecksumUpload(remote_path=final, already_present=True)
        raise RemoteBatchConflict(f"batch {built.batch_id}: the print house holds a different {local.name}; "
                                  "refusing to overwrite it")
    part = final + PART_SUFFIX
    with sftp.open(part, "wb") as remote:
        remote.write(data)
    if sftp.stat(part).st_size != len(data):
        raise OSError(f"batch {built.batch_id}: the checksum file arrived incomplete; keeping it as .part")
    _rename(sftp, part, final)
    return ChecksumUpload(remote_path=final, already_present=False)
