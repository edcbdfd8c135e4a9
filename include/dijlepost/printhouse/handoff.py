"""Handing paper letters over to the print house, the whole path in one place: `hand_over` assigns
the rendered paper letters of a chunk to batches, builds each due batch's zip, puts it in the print
house's inbox and marks its letters handed over, exactly once.

Planning (`plan_batches`) is pure: letters are grouped by print day and postage class, in letter id
order, and cut into batches of at most `max_letters` letters and `max_bytes` bytes. A letter's print
day is the day it was decided (Europe/Brussels), or the next day when it was decided at or after the
wave's cut-off. Membership is written to the database before any file is built (`assign_print_batches`),
so a retry rebuilds the same batch with the same id, and a batch is handed over only once its print
day has come (`pending_print_batches`).

A batch moves `assigned -> uploading -> uploaded` (migration 0011). `uploading` is committed, with
the zip's SHA-256 and size, before the first byte goes to the print house; a batch found in that
state may have been delivered by an attempt that died after its upload, and the print house may
have taken and printed it since. Every batch is therefore looked for at the print house before it
is sent (`upload.find_batch`: its inbox, its taken folder, its acknowledgements, and the
acknowledgements we already read) and only sent when it is nowhere (docs/print-house.md, "Handing
over exactly once").
Letter status changes go through `outbox`. No Airflow import: `hook` is any object with
`get_managed_conn()` and the print house's folders (`PrintHouseHook`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import psycopg
from paramiko import SFTPClient
from psycopg.rows import dict_row

from include.dijlepost import clock, logfmt, outbox
from include.dijlepost.outbox import RunContext
from include.dijlepost.printhouse import upload
from include.dijlepost.printhouse.batch import (
    BatchLetter,
    address_lines,
    batch_id_for,
    build_batch_zip,
    postage_class_for,
)
from include.dijlepost.printhouse.upload import PrintHouseFolders, Whereabouts
from include.dijlepost.states import BatchStatus, Status, sql_list
from include.dijlepost.work import ChunkWork

MIB = 1024 * 1024
# What a letter adds to the zip besides its PDF: two zip headers with its file name (~100 bytes) and
# its manifest row (address lines included, ~300 bytes); generous so a batch never exceeds its limit.
PER_LETTER_OVERHEAD = 1024
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
    local = decided_at.astimezone(clock.BRUSSELS)
    return local.date() + timedelta(days=1) if local.time() >= cutoff else local.date()


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


def plan_batches(
    department: str, letters: Sequence[PlannedLetter], max_letters: int, max_bytes: int
) -> list[PlannedBatch]:
    """Cut the letters into batches by (print day, postage class), at most `max_letters` letters and
    `max_bytes` estimated zip bytes each. A single letter larger than `max_bytes` gets a batch of
    its own rather than being held back forever."""
    if max_letters < 1 or max_bytes < 1:
        raise ValueError("batch limits must be positive")
    groups: dict[tuple[date, str], list[PlannedLetter]] = {}
    for letter in sorted(letters, key=lambda planned: planned.letter_id):
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


def _batch(
    department: str, postage_class: str, day: date, members: list[PlannedLetter], size: int
) -> PlannedBatch:
    ids = tuple(m.letter_id for m in members)
    return PlannedBatch(
        batch_id=batch_id_for(department, postage_class, ids),
        postage_class=postage_class,
        print_day=day,
        letter_ids=ids,
        estimated_bytes=size,
    )


def assign_print_batches(
    conn,
    department: str,
    claim_id: str,
    ctx: RunContext,
    max_letters: int,
    max_mb: float | None = None,
    cutoff: str | None = None,
    chunk: int | None = None,
) -> list[str]:
    """Record batch membership (and print day) for the claim's rendered paper letters (or those of one
    chunk of it) before any file is built. A letter already in a batch is never assigned again; a
    letter whose PDF has vanished since rendering is quarantined with that reason instead of failing
    the whole hand-over."""
    cutoff_time = parse_cutoff(cutoff) if cutoff else None
    max_bytes = int(max_mb * MIB) if max_mb else 2**62
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT letter_id, registered, decided_at, pdf_path FROM letters WHERE claim_run_id = %s "
            f"AND status = {Status.PROCESSING.sql} AND channel = 'paper' AND rendered_at IS NOT NULL "
            "AND print_batch_id IS NULL"
            + (" AND claim_chunk = %s" if chunk is not None else "")
            + " ORDER BY letter_id",
            (claim_id,) if chunk is None else (claim_id, chunk),
        )
        rows = cur.fetchall()
    conn.commit()

    planned, missing = [], []
    for row in rows:
        try:
            size = os.stat(row["pdf_path"]).st_size
        except (OSError, TypeError) as exc:
            missing.append((row["letter_id"], f"print: the rendered PDF is gone ({type(exc).__name__})"))
            continue
        decided_at = row["decided_at"]
        day = print_day(decided_at, cutoff_time) if cutoff_time and decided_at else clock.today()
        planned.append(PlannedLetter(row["letter_id"], postage_class_for(row["registered"]), day, size))

    batches = plan_batches(department, planned, max_letters, max_bytes)
    with conn.cursor() as cur:
        for letter_id, reason in missing:
            outbox.quarantine(cur, ctx, letter_id, claim_id, reason, stage="print")
        for b in batches:
            cur.execute(
                "INSERT INTO print_batches (batch_id, department, postage_class, letter_count, hand_over_on) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (batch_id) DO NOTHING",
                (b.batch_id, department, b.postage_class, len(b.letter_ids), b.print_day),
            )
            outbox.assign_to_print_batch(cur, ctx, b.batch_id, b.letter_ids, b.print_day)
    conn.commit()
    return [b.batch_id for b in batches]


def pending_print_batches(
    conn, department: str, today: date | None = None, claim_id: str | None = None, chunk: int | None = None
) -> list[str]:
    """Batches not yet recorded as handed over (`assigned`, or `uploading` by an attempt that died)
    whose print day has come, oldest first: all of the department, or (with `claim_id` and `chunk`)
    those holding letters of that chunk of the claim."""
    sql = (
        f"SELECT batch_id FROM print_batches WHERE department = %s AND status IN {sql_list(BatchStatus.ASSIGNED, BatchStatus.UPLOADING)} "
        "AND (hand_over_on IS NULL OR hand_over_on <= %s)"
    )
    params: list = [department, today or clock.today()]
    if chunk is not None:
        sql += (
            " AND batch_id IN (SELECT print_batch_id FROM letters WHERE claim_run_id = %s AND claim_chunk = %s "
            f"AND status = {Status.PROCESSING.sql} AND print_batch_id IS NOT NULL)"
        )
        params += [claim_id, chunk]
    with conn.cursor() as cur:
        cur.execute(sql + " ORDER BY created_at, batch_id", params)
        ids = [r[0] for r in cur.fetchall()]
    conn.commit()
    return ids


# --------------------------------------------------------------------------- the hand-over


def hand_over(conn, work: ChunkWork, *, hook, work_dir: Path) -> dict:
    """Assign the paper letters of the work's chunk of its claim to print batches (none with
    `work.chunk` None) and hand over the due batches: of that chunk, or with `work.chunk` None every
    due batch of the department (earlier runs' and those held back by the cut-off). The SFTP session is opened only
    when a batch is due. Returns `{"assigned_now": [batch ids], "batches": [one dict per batch handed
    over], "letters": letters marked handed over now}`."""
    wave, claim_id, ctx, chunk = work.wave, work.claim_id, work.ctx, work.chunk
    assigned = (
        []
        if chunk is None
        else assign_print_batches(
            conn,
            wave.department,
            claim_id,
            ctx,
            wave.print_batch_max_letters,
            wave.print_batch_max_mb,
            wave.print_cutoff,
            chunk=chunk,
        )
    )
    due = pending_print_batches(conn, wave.department, claim_id=claim_id, chunk=chunk)
    results: list[dict] = []
    if due:
        folders = hook.folders
        with hook.get_managed_conn() as sftp:
            for batch_id in due:
                result = hand_over_batch(conn, sftp, folders, work_dir, batch_id, ctx)
                logfmt.emit("print_batch_handed_over", department=wave.department, chunk=chunk, **result)
                results.append(result)
    letters = sum(r["letters"] for r in results)
    logfmt.emit(
        "print_handed_over",
        department=wave.department,
        chunk=chunk,
        assigned_now=len(assigned),
        batches=len(results),
        letters=letters,
    )
    return {"assigned_now": assigned, "batches": results, "letters": letters}


# Advisory lock class for "one worker at a time hands over this batch" (pg_try_advisory_lock(int, int)).
_BATCH_LOCK_CLASS = 0x7072  # "pr"


@contextmanager
def _batch_lock(conn, batch_id: str) -> Iterator[bool]:
    """A session-level advisory lock on the batch: a second worker on the same batch (a zombie task and
    its retry) skips it. It dies with the session, so a killed worker never leaves it held."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_BATCH_LOCK_CLASS, batch_id))
        held = cur.fetchone()[0]
    conn.commit()
    try:
        yield held
    finally:
        if held:
            try:
                conn.rollback()
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (_BATCH_LOCK_CLASS, batch_id))
                conn.commit()
            except psycopg.Error:
                pass  # the session is gone, and the lock with it


def account_for_hand_over(conn, work: ChunkWork, result: dict) -> dict | None:
    """The log of a print hand-over task after `hand_over`: its letters by id and batch (so that an
    auditor finds a letter in the log that sent it) and, on a rerun (a cleared task, a retry), what
    the earlier tries did. Returns the task's result, or None when nothing was due (a skip)."""
    from include.dijlepost.task_letters import PRINT_EVENTS, account_for_task, done_earlier

    earlier = account_for_task(conn, work, PRINT_EVENTS, "print_letters", "print_handed_over_earlier")
    if not result["batches"]:
        if earlier:
            return done_earlier(result, earlier)
        logfmt.emit(
            "print_handoff_skipped",
            department=work.department,
            chunk=work.chunk,
            assigned_now=len(result["assigned_now"]),
            reason="no batch due today (none, or all after the cut-off)",
        )
        return None
    return result


def hand_over_batch(
    conn, sftp: SFTPClient, folders: PrintHouseFolders, work_dir: Path, batch_id: str, ctx: RunContext
) -> dict:
    """Hand one recorded batch over exactly once: look for it at the print house, and when it is there
    (or was taken, or answered) only record the hand-over; otherwise build its zip from its recorded
    members, commit `uploading`, upload the zip and then its checksum file, and mark the batch and its
    letters in one transaction."""
    with _batch_lock(conn, batch_id) as held:
        if not held:
            logfmt.emit("print_batch_busy", batch_id=batch_id, reason="another worker is handing it over")
            return {"batch_id": batch_id, "letters": 0, "evidence": None, "busy": True}
        batch, rows = _read_batch(conn, batch_id)
        if batch["status"] == "uploaded":  # an earlier attempt finished meanwhile
            return {"batch_id": batch_id, "letters": 0, "evidence": None}
        if not rows:  # every member is final already: nothing to send
            _record_handed_over(conn, ctx, batch_id, [], batch["zip_sha256"], "members_final")
            return {"batch_id": batch_id, "letters": 0, "evidence": "members_final"}
        where = _look_for_batch(conn, sftp, folders, batch_id, batch["status"])
        if where.delivered:
            return _record_found_batch(conn, ctx, batch_id, batch, [r["letter_id"] for r in rows], where)
        return _upload_and_record_batch(conn, sftp, folders, work_dir, batch_id, ctx, rows)


def _read_batch(conn, batch_id: str) -> tuple[dict, list[dict]]:
    """The batch's record and its members still processing (the letters it would send)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT status, zip_sha256, zip_bytes FROM print_batches WHERE batch_id = %s", (batch_id,)
        )
        batch = cur.fetchone()
        cur.execute(
            "SELECT letter_id, pdf_path, pdf_sha256, pdf_pages, registered, recipient_name, street, "
            f"postal_code, city, country FROM letters WHERE print_batch_id = %s AND status = {Status.PROCESSING.sql} "
            "ORDER BY letter_id",
            (batch_id,),
        )
        rows = cur.fetchall()
    conn.commit()
    if batch is None:
        raise LookupError(f"batch {batch_id} is not recorded")
    return batch, rows


def _look_for_batch(
    conn, sftp: SFTPClient, folders: PrintHouseFolders, batch_id: str, status: str
) -> Whereabouts:
    """Where the batch is at the print house, looked up before anything is sent.

    After an attempt that died (`uploading`) the print house may have the batch, or have taken and
    printed it; so may it for a batch recorded before the `uploading` state existed. For any other
    batch this finds nothing, at a few stat calls."""
    where = upload.find_batch(sftp, batch_id, folders)
    if where is Whereabouts.NOT_THERE and _acknowledgement_read(conn, batch_id):
        where = Whereabouts.ACKNOWLEDGED
    if status == "uploading" or where is not Whereabouts.NOT_THERE:
        logfmt.emit("print_batch_looked_up", batch_id=batch_id, status=status, found=where.value)
    return where


def _record_found_batch(
    conn, ctx: RunContext, batch_id: str, batch: dict, letter_ids: list[str], where: Whereabouts
) -> dict:
    """The batch is at the print house already (in its inbox, taken or acknowledged): only record the
    hand-over, with that evidence."""
    evidence = {
        Whereabouts.IN_INBOX: "found_in_inbox",
        Whereabouts.TAKEN: "taken_by_print_house",
        Whereabouts.ACKNOWLEDGED: "acknowledged",
    }[where]
    changed = _record_handed_over(conn, ctx, batch_id, letter_ids, batch["zip_sha256"], evidence)
    return {
        "batch_id": batch_id,
        "letters": len(changed),
        "sha256": batch["zip_sha256"],
        "bytes": batch["zip_bytes"],
        "already_present": True,
        "evidence": evidence,
    }


def _upload_and_record_batch(
    conn,
    sftp: SFTPClient,
    folders: PrintHouseFolders,
    work_dir: Path,
    batch_id: str,
    ctx: RunContext,
    rows: list[dict],
) -> dict:
    """Build the batch's zip from its members, commit `uploading`, upload the zip and then its checksum
    file, and record the hand-over."""
    members = [_batch_letter(r) for r in rows]
    built = build_batch_zip(batch_id, members, work_dir)
    _record_uploading(conn, batch_id, built.sha256, built.size)
    sent = upload.upload_batch(sftp, built.path, folders.inbox)
    # The checksum file goes last: its arrival tells the print house the batch is complete.
    checksum = upload.upload_checksum(sftp, built, folders.inbox)
    evidence = "found_in_inbox" if sent.already_present and checksum.already_present else "uploaded"
    changed = _record_handed_over(
        conn,
        ctx,
        batch_id,
        [m.letter_id for m in members],
        built.sha256,
        evidence,
        sent.remote_path,
        checksum.remote_path,
    )
    return {
        "batch_id": batch_id,
        "letters": len(changed),
        "bytes": built.size,
        "sha256": built.sha256,
        "already_present": sent.already_present,
        "evidence": evidence,
        "remote_path": sent.remote_path,
        "checksum_path": checksum.remote_path,
        "local_path": str(built.path),
    }


def _batch_letter(row: dict) -> BatchLetter:
    """A member of the batch's zip, from its letter's row."""
    return BatchLetter(
        letter_id=row["letter_id"],
        pdf_path=Path(row["pdf_path"]),
        pdf_sha256=row["pdf_sha256"],
        pages=row["pdf_pages"],
        postage_class=postage_class_for(row["registered"]),
        registered=row["registered"],
        address_lines=address_lines(
            row["recipient_name"], row["street"], row["postal_code"], row["city"], row["country"]
        ),
        country=row["country"],
    )


def _acknowledgement_read(conn, batch_id: str) -> bool:
    """Whether we already read an acknowledgement file for the batch (acks.collect keeps every file)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM print_house_files WHERE file_name = %s)",
            (f"{batch_id}{upload.ACK_SUFFIX}",),
        )
        seen = cur.fetchone()[0]
    conn.commit()
    return seen


def _record_uploading(conn, batch_id: str, sha256: str, size: int) -> None:
    """Committed before the first byte goes to the print house: from here on, a retry looks first."""
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE print_batches SET status = {BatchStatus.UPLOADING.sql}, zip_sha256 = %s, zip_bytes = %s, "
            "upload_started_at = coalesce(upload_started_at, now()), upload_attempts = upload_attempts + 1 "
            f"WHERE batch_id = %s AND status IN {sql_list(BatchStatus.ASSIGNED, BatchStatus.UPLOADING)}",
            (sha256, size, batch_id),
        )
        if cur.rowcount != 1:
            raise RuntimeError(f"batch {batch_id} was recorded as handed over meanwhile; not uploading it")
    conn.commit()


def _record_handed_over(
    conn,
    ctx: RunContext,
    batch_id: str,
    letter_ids: Sequence[str],
    sha256: str | None,
    evidence: str,
    remote_path: str | None = None,
    checksum_path: str | None = None,
) -> set[str]:
    """The batch `uploaded` and its letters `handed_to_print`, in one transaction."""
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE print_batches SET status = {BatchStatus.UPLOADED.sql}, handover_evidence = %s, uploaded_at = now(), "
            "remote_path = coalesce(%s, remote_path), "
            "zip_sha256_remote_path = coalesce(%s, zip_sha256_remote_path) "
            f"WHERE batch_id = %s AND status IN {sql_list(BatchStatus.ASSIGNED, BatchStatus.UPLOADING)}",
            (evidence, remote_path, checksum_path, batch_id),
        )
        changed = outbox.mark_handed_to_print(cur, ctx, batch_id, letter_ids, sha256) if letter_ids else set()
    conn.commit()
    return changed
