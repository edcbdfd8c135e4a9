"""Writing checked rows into the outbox: in transactions of `IMPORT_BATCH`, a letter already there
reported as a duplicate (identical or not), a row the database refuses reported by line, every letter
inserted with its `accepted` event."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import psycopg

from include.dijlepost.db.connection import describe_db_error, is_row_error
from include.dijlepost.intake.checking import validate_row
from include.dijlepost.intake.contract import (
    COMPARED,
    IMPORT_BATCH,
    IMPORT_LOCK_ID,
    ImportFailed,
    ImportInterrupted,
    ImportReport,
    RowError,
)
from include.dijlepost.intake.reading import Unreadable, read_rows
from include.dijlepost.outbox import RunContext, record_events

_COLUMNS = ("letter_id", *COMPARED)
_INSERT = (
    f"INSERT INTO letters ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * (len(_COLUMNS) - 1))}, "
    "%s::jsonb) ON CONFLICT (letter_id) DO NOTHING"
)


def import_rows(
    conn,
    rows: Iterable[tuple[int, Mapping | Unreadable]],
    ctx: RunContext | None = None,
    batch_size: int = IMPORT_BATCH,
) -> ImportReport:
    """Check the rows and insert the good ones, committing every `batch_size` checked rows, so memory
    stays flat whatever the file's size and a crash loses at most the batch being written.

    A rerun after a crash, or of the same file, finds the letters already in the outbox and reports them
    as duplicates (identical or not), so it imports exactly the rest. A row the database still refuses
    (a constraint added after this code, say) is refused by line with the field or constraint name; the
    database's own message, which may quote the row, is never passed on.

    FileRefused (from reading), ImportFailed and the renderer's TemplateError propagate; the batches
    before the one they interrupt stay committed, and the exception's `report` says what they imported."""
    from include.dijlepost.rendering.errors import TemplateError

    report = ImportReport()
    batch: dict[str, tuple[int, dict]] = {}
    try:
        for line_no, raw in rows:
            try:
                row = validate_row(raw)
            except RowError as exc:
                report.errors.append((line_no, str(exc)))
                continue
            except TemplateError:
                raise  # the templates cannot be loaded: no row can be checked
            except Exception as exc:
                raise ImportFailed(
                    f"line {line_no}: checking the row failed unexpectedly "
                    f"({type(exc).__name__}); please report it"
                ) from None
            if row["letter_id"] in batch:
                same = _same(batch[row["letter_id"]][1], row)
                report.duplicates.append((line_no, row["letter_id"], same))
                continue
            batch[row["letter_id"]] = (line_no, row)
            if len(batch) >= batch_size:
                _write_batch(conn, batch, ctx, report)
                batch = {}
        _write_batch(conn, batch, ctx, report)
    except ImportInterrupted as exc:  # FileRefused, ImportFailed
        conn.rollback()
        report.duplicates.sort()
        report.errors.sort()
        exc.report = report  # what the committed batches imported
        raise
    report.duplicates.sort()
    report.errors.sort()
    return report


def _write_batch(
    conn, batch: dict[str, tuple[int, dict]], ctx: RunContext | None, report: ImportReport
) -> None:
    """Insert one batch of checked rows in one transaction: those already in the outbox become duplicates,
    those the database refuses become errors, the rest are inserted with their `accepted` event."""
    if not batch:
        return
    clean = dict(batch)
    with conn.cursor() as cur:
        # Serialise imports: without it, two imports of the same file both see "not yet in the outbox", the
        # second INSERT silently does nothing (ON CONFLICT), yet both report and record the letters as accepted.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (IMPORT_LOCK_ID,))
        cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM letters WHERE letter_id = ANY(%s)", (list(clean),))
        existing = {r[0]: dict(zip(_COLUMNS, r)) for r in cur.fetchall()}
        for letter_id, (line_no, row) in list(clean.items()):
            if letter_id in existing:
                report.duplicates.append((line_no, letter_id, _same(existing[letter_id], row)))
                del clean[letter_id]
        for letter_id, line_no, message in _insert(conn, cur, clean):
            report.errors.append((line_no, message))
            del clean[letter_id]
        record_events(
            cur,
            ctx or RunContext(task_id="letters_import"),
            (
                (lid, "accepted", {"department": r["department"], "letter_type": r["letter_type"]})
                for lid, (_, r) in clean.items()
            ),
        )
    conn.commit()
    report.inserted.extend(clean)


def _insert(conn, cur, clean: dict[str, tuple[int, dict]]) -> list[tuple[str, int, str]]:
    """Insert the rows; return (letter_id, line, refusal) of those the database refused. All rows go in one
    statement; only when the database refuses one are they tried one by one, each in a savepoint."""
    params = {
        lid: tuple(r["payload_json"] if c == "payload" else r[c] for c in _COLUMNS)
        for lid, (_, r) in clean.items()
    }
    try:
        with conn.transaction():
            cur.executemany(_INSERT, list(params.values()))
        return []
    except psycopg.Error as exc:
        if not is_row_error(exc):
            raise
    refused = []
    for lid, values in params.items():
        try:
            with conn.transaction():
                cur.execute(_INSERT, values)
        except psycopg.Error as exc:
            if not is_row_error(exc):
                raise
            refused.append((lid, clean[lid][0], describe_db_error(exc)))
    return refused


def import_file(conn, path: Path, ctx: RunContext | None = None) -> ImportReport:
    return import_rows(conn, read_rows(path), ctx)


def _same(a: Mapping, b: Mapping) -> bool:
    return all(a.get(k) == b.get(k) for k in COMPARED)
