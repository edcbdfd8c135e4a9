"""The print house's answers: acknowledgements and returned mail, read from its outbound folder.

Two kinds of file, both UTF-8 CSV with a header row (formats in docs/print-house.md):

    <batch_id>.ack.csv       letter_id,result,reason     result accepted | rejected (reason required)
    returned-<name>.csv      letter_id,reason            reason one of RETURN_REASONS

Every file is validated whole before anything changes: an ack must answer every letter of its batch
exactly once and nothing else; a returns file may only name letters that were handed to the print
house. A file that fails is refused as a whole with a clear error, recorded in `print_house_files`
(its SHA-256, size and first `REFUSED_KEPT_BYTES` bytes, enough to show the print house) and moved
aside to `refused/` at the print house; nothing in it is applied. An applied file is moved to
`processed/`. Applying is idempotent: every update is guarded by the state it expects, and a file
seen again (same name, same bytes) is recognised and changes nothing. No Airflow import.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import posixpath
import re
import stat
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from paramiko import SFTPClient
from psycopg.rows import dict_row

from include.dijlepost import logfmt, outbox
from include.dijlepost.outbox import RunContext, quarantine_after_print_rejection
from include.dijlepost.printhouse.upload import ACK_SUFFIX, PROCESSED_DIR, REFUSED_DIR, rename
from include.dijlepost.states import BatchStatus, PrintStatus, Status, sql_list

ACK_COLUMNS = ("letter_id", "result", "reason")
ACK_RESULTS = ("accepted", "rejected")
RETURNS_COLUMNS = ("letter_id", "reason")
RETURN_REASONS = (
    "unknown_address",
    "moved",
    "refused",
    "not_collected",
    "deceased",
    "insufficient_address",
    "other",
)
MAX_FILE_BYTES = 20 * 1024 * 1024
# A refused file is kept as its SHA-256, size and first bytes, not whole (migration 0013).
REFUSED_KEPT_BYTES = 4096
MAX_REASON_CHARS = 300
_BATCH_ID = re.compile(r"^[a-z0-9_]+-(non_prior|prior|registered)-[0-9a-f]{16}$")
_RETURNS_NAME = re.compile(r"^returned-[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.csv$")
_LETTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


_SHOWABLE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _shown(value: str) -> str:
    """A value from a file as quoted in an error (and so in the task log): only if it looks like an id
    or a code. A corrupt file may hold names or addresses, which never go to the logs."""
    return repr(value) if _SHOWABLE.match(value) else "(a value that is not shown)"


class PrintHouseFileError(ValueError):
    """A file from the print house is not in the agreed format or does not match what we sent."""


class NotYetApplicable(RuntimeError):
    """The file is fine but answers a batch whose upload is not recorded yet (a crash between the upload
    and its commit, repaired by the next wave run): leave it where it is and read it again later."""


@dataclass(frozen=True)
class AckRow:
    letter_id: str
    result: str
    reason: str


@dataclass(frozen=True)
class FileOutcome:
    file_name: str
    kind: str
    outcome: str  # applied | refused | seen_before | deferred
    batch_id: str | None = None
    letters: int = 0
    counts: dict = field(default_factory=dict)
    error: str | None = None


def kind_of(name: str) -> str:
    if name.endswith(ACK_SUFFIX) and _BATCH_ID.match(name[: -len(ACK_SUFFIX)]):
        return "ack"
    if _RETURNS_NAME.match(name):
        return "returns"
    return "unknown"


def _rows(name: str, data: bytes, columns: tuple[str, ...]) -> list[dict]:
    if len(data) > MAX_FILE_BYTES:
        raise PrintHouseFileError(f"{name}: {len(data)} bytes, more than the {MAX_FILE_BYTES} allowed")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PrintHouseFileError(f"{name}: not UTF-8 (byte {exc.start})") from None
    if "\x00" in text:
        raise PrintHouseFileError(f"{name}: contains NUL bytes; not a CSV file")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        records = list(reader)
    except csv.Error as exc:
        raise PrintHouseFileError(f"{name}: not valid CSV at line {reader.line_num}: {exc}") from None
    if not records:
        raise PrintHouseFileError(f"{name}: empty file; expected the header {','.join(columns)}")
    header = tuple(h.strip() for h in records[0])
    if header != columns:
        shown = ",".join(h if _SHOWABLE.match(h) else "?" for h in header)
        raise PrintHouseFileError(f"{name}: header is {shown!r}, expected {','.join(columns)!r}")
    out = []
    for line_no, record in enumerate(records[1:], start=2):
        if not record or record == [""]:
            continue
        if len(record) != len(columns):
            raise PrintHouseFileError(
                f"{name}: line {line_no} has {len(record)} fields, expected {len(columns)}"
            )
        row: dict[str, Any] = dict(zip(columns, (v.strip() for v in record)))
        if not _LETTER_ID.match(row["letter_id"]):
            raise PrintHouseFileError(
                f"{name}: line {line_no}: {_shown(row['letter_id'])} is not a letter id"
            )
        row["_line"] = line_no
        out.append(row)
    if not out:
        raise PrintHouseFileError(f"{name}: no letters in the file")
    ids = [r["letter_id"] for r in out]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise PrintHouseFileError(f"{name}: letter(s) listed more than once: {', '.join(twice[:10])}")
    return out


def _reason(name: str, row: dict, required: bool) -> str:
    reason = row["reason"]
    if required and not reason:
        raise PrintHouseFileError(f"{name}: line {row['_line']}: a rejection needs a reason")
    if len(reason) > MAX_REASON_CHARS or any(not c.isprintable() for c in reason):
        raise PrintHouseFileError(
            f"{name}: line {row['_line']}: reason longer than {MAX_REASON_CHARS} characters or not printable"
        )
    return reason


def parse_ack(name: str, data: bytes) -> list[AckRow]:
    rows = _rows(name, data, ACK_COLUMNS)
    out = []
    for row in rows:
        if row["result"] not in ACK_RESULTS:
            raise PrintHouseFileError(
                f"{name}: line {row['_line']}: result {_shown(row['result'])} is not one of "
                f"{', '.join(ACK_RESULTS)}"
            )
        reason = _reason(name, row, required=row["result"] == "rejected")
        if row["result"] == "accepted" and reason:
            raise PrintHouseFileError(f"{name}: line {row['_line']}: an accepted letter has no reason")
        out.append(AckRow(row["letter_id"], row["result"], reason))
    return out


def parse_returns(name: str, data: bytes) -> list[tuple[str, str]]:
    rows = _rows(name, data, RETURNS_COLUMNS)
    for row in rows:
        if row["reason"] not in RETURN_REASONS:
            raise PrintHouseFileError(
                f"{name}: line {row['_line']}: return reason {_shown(row['reason'])} is not one of "
                f"{', '.join(RETURN_REASONS)}"
            )
    return [(r["letter_id"], r["reason"]) for r in rows]


# --------------------------------------------------------------------------- applying a file


def apply_file(conn, name: str, data: bytes, ctx: RunContext) -> FileOutcome:
    """Validate and apply one file in one transaction, recording it in `print_house_files`."""
    digest = hashlib.sha256(data).hexdigest()
    kind = kind_of(name)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT outcome, batch_id, letters, error FROM print_house_files WHERE file_name = %s "
            "AND sha256 = %s",
            (name, digest),
        )
        seen = cur.fetchone()
    conn.commit()
    if seen:
        return FileOutcome(name, kind, "seen_before", seen[1], seen[2], {"earlier": seen[0]}, seen[3])
    try:
        with conn.cursor() as cur:
            if kind == "ack":
                batch_id, counts = _apply_ack(cur, name, data, digest, ctx)
            elif kind == "returns":
                batch_id, counts = None, _apply_returns(cur, name, data, ctx)
            else:
                raise PrintHouseFileError(
                    f"{name}: unknown file name; the print house may only write <batch_id>{ACK_SUFFIX} "
                    "and returned-<name>.csv"
                )
            letters = sum(counts.values())
            cur.execute(
                "INSERT INTO print_house_files (file_name, sha256, kind, outcome, batch_id, letters, content, "
                "size_bytes) VALUES (%s, %s, %s, 'applied', %s, %s, %s, %s)",
                (name, digest, kind, batch_id, letters, data, len(data)),
            )
        conn.commit()
        return FileOutcome(name, kind, "applied", batch_id, letters, counts)
    except NotYetApplicable as exc:
        conn.rollback()
        return FileOutcome(name, kind, "deferred", name[: -len(ACK_SUFFIX)], 0, {}, str(exc))
    except PrintHouseFileError as exc:
        conn.rollback()
        error = str(exc)
        batch_id = name[: -len(ACK_SUFFIX)] if kind == "ack" else None
        with conn.cursor() as cur:
            cur.execute(
                "INSERT INTO print_house_files (file_name, sha256, kind, outcome, batch_id, error, content, "
                "size_bytes) VALUES (%s, %s, %s, 'refused', %s, %s, %s, %s) "
                "ON CONFLICT (file_name, sha256) DO NOTHING",
                (name, digest, kind, batch_id, error, data[:REFUSED_KEPT_BYTES], len(data)),
            )
        conn.commit()
        return FileOutcome(name, kind, "refused", batch_id, 0, {}, error)
    except BaseException:
        conn.rollback()
        raise


def _apply_ack(cur, name: str, data: bytes, digest: str, ctx: RunContext) -> tuple[str, dict]:
    batch_id = name[: -len(ACK_SUFFIX)]
    rows = parse_ack(name, data)
    cur.execute(
        "SELECT status, acknowledged_at, ack_file_sha256 FROM print_batches WHERE batch_id = %s FOR UPDATE",
        (batch_id,),
    )
    batch = cur.fetchone()
    if batch is None:
        raise PrintHouseFileError(f"{name}: no batch {batch_id} was ever sent")
    status, acknowledged_at, ack_sha = batch
    if status != "uploaded":
        raise NotYetApplicable(
            f"{name}: the upload of batch {batch_id} is not recorded yet; read again later"
        )
    if acknowledged_at is not None and ack_sha != digest:
        raise PrintHouseFileError(
            f"{name}: batch {batch_id} was already acknowledged by a different file "
            f"(sha256 {ack_sha}); a batch is acknowledged once"
        )
    cur.execute("SELECT letter_id FROM letters WHERE print_batch_id = %s", (batch_id,))
    members = {r[0] for r in cur.fetchall()}
    answered = {r.letter_id for r in rows}
    if answered - members:
        raise PrintHouseFileError(
            f"{name}: letters not in batch {batch_id}: {', '.join(sorted(answered - members)[:10])}"
        )
    if members - answered:
        raise PrintHouseFileError(
            f"{name}: no answer for {len(members - answered)} letter(s) of batch {batch_id}: "
            f"{', '.join(sorted(members - answered)[:10])}"
        )

    accepted = [r.letter_id for r in rows if r.result == "accepted"]
    rejected = [r for r in rows if r.result == "rejected"]
    posted = outbox.mark_posted(cur, ctx, batch_id, accepted, name)
    quarantined = [
        r.letter_id
        for r in rejected
        if quarantine_after_print_rejection(cur, ctx, r.letter_id, batch_id, r.reason)
    ]
    cur.execute(
        "UPDATE print_batches SET acknowledged_at = coalesce(acknowledged_at, now()), ack_file_sha256 = %s, "
        "accepted_count = %s, rejected_count = %s WHERE batch_id = %s",
        (digest, len(accepted), len(rejected), batch_id),
    )
    return batch_id, {
        "accepted": len(posted),
        "rejected": len(quarantined),
        "unchanged": len(rows) - len(posted) - len(quarantined),
    }


def _apply_returns(cur, name: str, data: bytes, ctx: RunContext) -> dict:
    rows = parse_returns(name, data)
    ids = [lid for lid, _ in rows]
    cur.execute(
        "SELECT letter_id, status, print_status, print_reason FROM letters WHERE letter_id = ANY(%s) "
        "FOR UPDATE",
        (ids,),
    )
    known = {r[0]: r[1:] for r in cur.fetchall()}
    unknown = [lid for lid in ids if lid not in known]
    if unknown:
        raise PrintHouseFileError(f"{name}: unknown letter(s): {', '.join(unknown[:10])}")
    not_sent = [lid for lid in ids if known[lid][0] != "handed_to_print"]
    if not_sent:
        raise PrintHouseFileError(
            f"{name}: letter(s) never handed to the print house or rejected by it: {', '.join(not_sent[:10])}"
        )
    flagged = 0
    for letter_id, reason in rows:
        _, print_status, _ = known[letter_id]
        if print_status == "returned":
            continue
        flagged += outbox.mark_returned(cur, ctx, letter_id, reason, name)
    return {"returned": flagged, "unchanged": len(rows) - flagged}


# --------------------------------------------------------------------------- over SFTP


def collect(conn, sftp: SFTPClient, outbox_dir: str, ctx: RunContext) -> list[FileOutcome]:
    """Read every file in the print house's outbound folder, apply it, and move it aside:
    `processed/` once applied (or seen before), `refused/` when refused. A crash between applying and
    moving only means the file is seen again next time, recognised, and moved then."""
    outcomes = []
    for entry in sorted(sftp.listdir_attr(outbox_dir), key=lambda e: e.filename):
        name = entry.filename
        if not stat.S_ISREG(entry.st_mode or 0) or name.startswith(".") or name.endswith(".part"):
            continue
        path = posixpath.join(outbox_dir, name)
        with sftp.open(path, "rb") as remote:
            data = remote.read(MAX_FILE_BYTES + 1)
        outcome = apply_file(conn, name, data, ctx)
        if outcome.outcome == "deferred":
            logfmt.emit(
                "print_house_file_deferred", file=name, batch_id=outcome.batch_id, reason=outcome.error
            )
            outcomes.append(outcome)
            continue
        refused = outcome.outcome == "refused" or outcome.counts.get("earlier") == "refused"
        _move_aside(
            sftp,
            outbox_dir,
            name,
            REFUSED_DIR if refused else PROCESSED_DIR,
            hashlib.sha256(data).hexdigest(),
        )
        if refused:
            logfmt.emit(
                "alert_print_house_file_refused",
                file=name,
                kind=outcome.kind,
                batch_id=outcome.batch_id,
                error=outcome.error,
                kept_in=f"{outbox_dir}/{REFUSED_DIR}",
            )
        else:
            logfmt.emit(
                "print_house_file_read",
                file=name,
                kind=outcome.kind,
                outcome=outcome.outcome,
                batch_id=outcome.batch_id,
                **{k: v for k, v in outcome.counts.items() if k != "earlier"},
            )
        outcomes.append(outcome)
    return outcomes


def _move_aside(sftp: SFTPClient, outbox_dir: str, name: str, folder: str, digest: str) -> None:
    target_dir = posixpath.join(outbox_dir, folder)
    try:
        sftp.mkdir(target_dir)
    except OSError:
        sftp.stat(target_dir)  # already there; anything else is a real error
    target = posixpath.join(target_dir, name)
    try:
        sftp.stat(target)
        target = f"{target}.{digest[:12]}"  # an earlier file of the same name is kept as well
    except FileNotFoundError:
        pass
    rename(sftp, posixpath.join(outbox_dir, name), target)


# --------------------------------------------------------------------------- alerts and reconciliation


def overdue_batches(conn, department: str, hours: int, now: datetime | None = None) -> list[dict]:
    """Batches handed over more than `hours` ago that the print house has not acknowledged, and
    batches whose upload started more than `hours` ago and was never finished or recognised (an
    attempt died and no wave run has handed them over since): `status` says which."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT batch_id, letter_count AS letters, status, coalesce(uploaded_at, upload_started_at) AS since "
            "FROM print_batches WHERE department = %s AND acknowledged_at IS NULL "
            f"AND status IN {sql_list(BatchStatus.UPLOADED, BatchStatus.UPLOADING)} "
            "AND coalesce(uploaded_at, upload_started_at) < coalesce(%s, now()) - make_interval(hours => %s) "
            "ORDER BY since, batch_id",
            (department, now, hours),
        )
        rows = [
            {
                "batch_id": r["batch_id"],
                "letters": r["letters"],
                "status": r["status"],
                "uploaded_at": r["since"].isoformat(),
            }
            for r in cur.fetchall()
        ]
    conn.commit()
    return rows


def acknowledgement_problems(conn, alert_hours: dict[str, int], collected: dict) -> list[str]:
    """What an operator must act on after a collection: each department's batches without an
    acknowledgement past its alert delay (`alert_hours`, department -> hours; one `alert_print_ack_overdue`
    line each) and the files the collection refused. An empty list when all is well."""
    late = 0
    for department, hours in alert_hours.items():
        for batch in overdue_batches(conn, department, hours):
            late += 1
            logfmt.emit(
                "alert_print_ack_overdue",
                department=department,
                batch_id=batch["batch_id"],
                letters=batch["letters"],
                uploaded_at=batch["uploaded_at"],
                alert_after_hours=hours,
            )
    refused = collected["refused_files"]
    logfmt.emit("print_acks_checked", overdue_batches=late, refused_files=len(refused))
    problems = []
    if refused:
        problems.append(
            f"refused print-house file(s) {refused}, kept in the database and in {collected['refused_in']} "
            "(reasons in the alert_print_house_file_refused lines)"
        )
    if late:
        problems.append(f"{late} print batch(es) without acknowledgement past the alert delay")
    return problems


def reconciliation(conn) -> dict:
    """Letters handed over without an acknowledgement, and returned letters awaiting follow-up."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT l.letter_id, l.department, l.print_batch_id, b.uploaded_at FROM letters l "
            "JOIN print_batches b ON b.batch_id = l.print_batch_id "
            f"WHERE l.status = {Status.HANDED_TO_PRINT.sql} AND l.print_status IS NULL "
            "ORDER BY b.uploaded_at, l.letter_id"
        )
        unacknowledged = [
            {"letter_id": r[0], "department": r[1], "batch_id": r[2], "handed_over_at": r[3]}
            for r in cur.fetchall()
        ]
        cur.execute(
            "SELECT letter_id, department, print_batch_id, print_returned_at, print_reason FROM letters "
            f"WHERE print_status = {PrintStatus.RETURNED.sql} ORDER BY print_returned_at, letter_id"
        )
        returned = [
            {"letter_id": r[0], "department": r[1], "batch_id": r[2], "returned_at": r[3], "reason": r[4]}
            for r in cur.fetchall()
        ]
    conn.commit()
    return {"unacknowledged": unacknowledged, "returned": returned}


def write_reconciliation_report(report: dict, directory, day: date) -> str:
    """One CSV per day (letter ids, batch ids and dates only: no names or addresses)."""
    from pathlib import Path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"print-reconciliation-{day.isoformat()}.csv"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["issue", "letter_id", "department", "batch_id", "since", "reason"])
    for r in report["unacknowledged"]:
        writer.writerow(
            [
                "no_acknowledgement",
                r["letter_id"],
                r["department"],
                r["batch_id"],
                r["handed_over_at"].isoformat(),
                "",
            ]
        )
    for r in report["returned"]:
        writer.writerow(
            [
                "returned_follow_up",
                r["letter_id"],
                r["department"],
                r["batch_id"],
                r["returned_at"].isoformat(),
                r["reason"],
            ]
        )
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text(buf.getvalue())
    tmp.replace(path)
    return str(path)


def reconcile(conn, directory, day: date) -> dict:
    """The daily reconciliation: the report written under `directory` for `day`, one
    `print_reconciliation` line with the counts per batch, and a `print_follow_up_needed` line per
    returned letter. Returns the counts and the report's path."""
    report = reconciliation(conn)
    path = write_reconciliation_report(report, directory, day)
    by_batch: dict[str, int] = {}
    for row in report["unacknowledged"]:
        by_batch[row["batch_id"]] = by_batch.get(row["batch_id"], 0) + 1
    logfmt.emit(
        "print_reconciliation",
        unacknowledged=len(report["unacknowledged"]),
        returned=len(report["returned"]),
        batches_without_ack=by_batch,
        report=path,
    )
    for row in report["returned"]:
        logfmt.emit(
            "print_follow_up_needed",
            letter_id=row["letter_id"],
            department=row["department"],
            reason=row["reason"],
        )
    return {
        "unacknowledged": len(report["unacknowledged"]),
        "returned": len(report["returned"]),
        "report": path,
    }


def summarise(outcomes: list[FileOutcome]) -> dict:
    out: dict = {"files": len(outcomes)}
    for o in outcomes:
        out[o.outcome] = out.get(o.outcome, 0) + 1
        for k, v in o.counts.items():
            if isinstance(v, int):
                out[k] = out.get(k, 0) + v
    out["refused_files"] = [
        o.file_name for o in outcomes if o.outcome == "refused" or o.counts.get("earlier") == "refused"
    ]
    return json.loads(json.dumps(out))
