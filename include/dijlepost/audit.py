"""The auditor's tools over the hash-chained letter history (`letter_events`, migration 0005).

    trace(conn, letter_id)            a letter's whole life, in chain order, with the task log address
    export_csv(conn, start, end, fp)  the events of a period, with their chain links, for the auditor's tools
    verify(conn)                      recompute the chain; name the first broken link
    privacy_findings(conn)            events whose details hold a recipient's id, name or street

`verify` trusts neither the trigger nor the SQL functions of the migration: it reads the raw columns,
builds the canonical text with its own query and hashes it here. Days are calendar days in
Europe/Brussels. Functions take a DB-API connection (psycopg 3) and never write.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import IO
from urllib.parse import quote
from zoneinfo import ZoneInfo

from include.dijlepost.db.connection import read_rows

TZ = ZoneInfo("Europe/Brussels")
GENESIS = bytes(32)
DEFAULT_AIRFLOW_URL = "http://localhost:8080"

# The canonical text of an event, written here independently of `audit_event_canonical` in the migration
# (same definition; a test holds them together).
_CANONICAL = (
    "jsonb_build_array(chain_seq, event_id, letter_id, event, details, dag_id, run_id, task_id, "
    "map_index, try_number, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))::text"
)

EXPORT_COLUMNS = (
    "chain_seq",
    "event_id",
    "at",
    "letter_id",
    "event",
    "details",
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "try_number",
    "task_log_url",
    "prev_hash",
    "hash",
)


def run_url(base_url: str | None, dag_id: str, run_id: str) -> str:
    """The Airflow 3 UI address of a DAG run (its grid and graph)."""
    base = DEFAULT_AIRFLOW_URL if base_url is None else base_url
    return f"{base.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def task_log_url(
    base_url: str | None,
    dag_id: str | None,
    run_id: str | None,
    task_id: str | None,
    map_index: int | None,
    try_number: int | None,
) -> str | None:
    """The Airflow 3 UI address of a task try's log (the pattern of `TaskInstance.log_url`)."""
    if not (dag_id and run_id and task_id):
        return None
    url = f"{run_url(base_url or DEFAULT_AIRFLOW_URL, dag_id, run_id)}/tasks/{quote(task_id)}"
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    if try_number:
        url += f"?try_number={try_number}"
    return url


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """[start 00:00, the day after end 00:00) in Europe/Brussels: both days included."""
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    return (datetime.combine(start, time(), TZ), datetime.combine(end + timedelta(days=1), time(), TZ))


# --------------------------------------------------------------------------- trace


def trace(conn, letter_id: str, base_url: str | None = None) -> list[dict]:
    """Every event of one letter in chain order, each with the address of the task log that wrote it."""
    rows = read_rows(
        conn,
        "SELECT chain_seq, event_id, at, event, details, dag_id, run_id, task_id, map_index, try_number, "
        "encode(hash, 'hex') AS hash FROM letter_events WHERE letter_id = %s ORDER BY chain_seq",
        (letter_id,),
    )
    return [
        {
            **r,
            "task_log_url": task_log_url(
                base_url, r["dag_id"], r["run_id"], r["task_id"], r["map_index"], r["try_number"]
            ),
        }
        for r in rows
    ]


def format_trace(events: list[dict]) -> Iterator[str]:
    for e in events:
        where = (
            (
                f"{e['dag_id']} / {e['run_id']} / {e['task_id']}"
                + (f"[{e['map_index']}]" if e["map_index"] is not None and e["map_index"] >= 0 else "")
                + f" try {e['try_number']}"
            )
            if e["dag_id"]
            else (e["task_id"] or "outside Airflow")
        )
        yield (
            f"#{e['chain_seq']:<8} {e['at'].astimezone(TZ):%Y-%m-%d %H:%M:%S.%f %Z}  {e['event']:<24} "
            f"{json.dumps(e['details'], ensure_ascii=False, sort_keys=True)}"
        )
        yield f"{'':10}by {where}"
        if isinstance(e["details"], dict) and e["details"].get("expires_at"):  # the eBox's expirationDate
            yield f"{'':10}kept in the eBox until {e['details']['expires_at']}"
        if e["task_log_url"]:
            yield f"{'':10}log {e['task_log_url']}"


# --------------------------------------------------------------------------- export


def export_csv(conn, start: date, end: date, out: IO[str], base_url: str | None = None) -> int:
    """Write the events of [start, end] (whole days, Europe/Brussels) as CSV; return the number of rows."""
    lo, hi = day_bounds(start, end)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    n = 0
    with conn.cursor(name="audit_export") as cur:  # server-side: a year of events never sits in memory
        cur.itersize = 5000
        cur.execute(
            "SELECT chain_seq, event_id, at, letter_id, event, details::text, dag_id, run_id, task_id, "
            "map_index, try_number, encode(prev_hash, 'hex'), encode(hash, 'hex') FROM letter_events "
            "WHERE at >= %s AND at < %s ORDER BY chain_seq",
            (lo, hi),
        )
        for row in cur:
            # the columns as selected, the time in UTC, and the task log's address before the two hashes
            at, coordinates, hashes = row[2], row[6:11], row[11:]
            log_url = task_log_url(base_url, *coordinates) or ""
            writer.writerow(
                (*row[:2], at.astimezone(ZoneInfo("UTC")).isoformat(), *row[3:11], log_url, *hashes)
            )
            n += 1
    conn.commit()
    return n


# --------------------------------------------------------------------------- verify


@dataclass
class Verification:
    checked: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS.hex()
    broken_at: int | None = None  # chain_seq of the first event whose link does not hold
    problem: str | None = None
    anchor_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.broken_at is None and not self.anchor_problems


def verify(conn, anchors: dict[int, str] | None = None, batch: int = 5000) -> Verification:
    """Walk the chain from the first event; stop at the first link that does not hold.

    A link holds when the events are numbered 1, 2, 3 ... without a gap, each `prev_hash` is the hash of
    the event before it, and each `hash` is sha256(prev_hash || canonical text). `anchors` are
    {chain_seq: hash hex} recorded earlier outside the database (reports, exports): each must still match.
    """
    anchors = dict(anchors or {})
    v = Verification()
    prev_seq, prev_hash = 0, GENESIS
    with conn.cursor(name="audit_verify") as cur:
        cur.itersize = batch
        cur.execute(
            f"SELECT chain_seq, event_id, letter_id, event, prev_hash, hash, {_CANONICAL} "
            "FROM letter_events ORDER BY chain_seq"
        )
        for seq, event_id, letter_id, event, row_prev, row_hash, canonical in cur:
            row_prev, row_hash = bytes(row_prev), bytes(row_hash)
            what = f"event #{seq} (event_id {event_id}, {event} of {letter_id})"
            if seq != prev_seq + 1:
                v.broken_at, v.problem = (
                    seq,
                    (
                        f"{what}: follows #{prev_seq}; events #{prev_seq + 1}..#{seq - 1} are missing (deleted)"
                        if seq > prev_seq + 1
                        else f"{what}: out of sequence after #{prev_seq}"
                    ),
                )
                break
            if row_prev != prev_hash:
                v.broken_at, v.problem = (
                    seq,
                    (
                        f"{what}: prev_hash {row_prev.hex()[:16]}... is not the hash of event #{prev_seq} "
                        f"({prev_hash.hex()[:16]}...): an event before it was removed, inserted or rehashed"
                    ),
                )
                break
            expected = hashlib.sha256(row_prev + canonical.encode("utf-8")).digest()
            if row_hash != expected:
                v.broken_at, v.problem = seq, f"{what}: its content does not match its hash (edited)"
                break
            if seq in anchors and anchors.pop(seq).lower() != row_hash.hex():
                v.anchor_problems.append(
                    f"event #{seq}: hash differs from the anchor recorded earlier "
                    "(the chain was rewritten from there on)"
                )
            prev_seq, prev_hash = seq, row_hash
            v.checked += 1
    conn.commit()
    v.head_seq, v.head_hash = prev_seq, prev_hash.hex()
    if v.broken_at is None:
        for seq in sorted(anchors):
            v.anchor_problems.append(
                f"event #{seq}: anchored earlier, no longer in the chain (head is #{prev_seq})"
            )
    return v


_ANCHOR = re.compile(r"\s*([0-9]{1,19})\s*:\s*([0-9a-fA-F]{64})\s*")


def parse_anchor(text: str) -> tuple[int, str]:
    """`CHAIN_SEQ:SHA256HEX` in ASCII digits and hex (`str.isdigit` would let `²` through to `int()`)."""
    match = _ANCHOR.fullmatch(text)
    if not match:
        shown = repr(text) if len(text) <= 100 else f"of {len(text)} characters"
        raise ValueError(f"anchor {shown} must be CHAIN_SEQ:SHA256HEX (as printed by `audit verify`)")
    return int(match[1]), match[2].lower()


def chain_head(conn) -> tuple[int, str]:
    """(chain_seq, hash hex) of the newest event: the value to record outside the database as an anchor."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT chain_seq, encode(hash, 'hex') FROM letter_events ORDER BY chain_seq DESC LIMIT 1"
        )
        row = cur.fetchone()
    conn.commit()
    return (row[0], row[1]) if row else (0, GENESIS.hex())


# --------------------------------------------------------------------------- privacy


def privacy_findings(conn, limit: int = 100) -> list[dict]:
    """Events whose details contain their letter's recipient id, name or street, or text shaped like a
    national register number (11 digits, bare or written 85.07.30-033.28). Should always be empty."""
    with conn.cursor() as cur:
        cur.execute(
            r"""
            SELECT e.chain_seq, e.letter_id, e.event,
                   CASE WHEN l.letter_id IS NOT NULL AND strpos(e.details::text, l.recipient_id) > 0 THEN 'recipient id'
                        WHEN l.letter_id IS NOT NULL AND length(btrim(l.recipient_name)) >= 3
                             AND strpos(lower(e.details::text), lower(btrim(l.recipient_name))) > 0 THEN 'recipient name'
                        WHEN l.letter_id IS NOT NULL AND length(btrim(l.street)) >= 5
                             AND strpos(lower(e.details::text), lower(btrim(l.street))) > 0 THEN 'street'
                        ELSE 'national register number pattern' END
              FROM letter_events e LEFT JOIN letters l ON l.letter_id = e.letter_id
             WHERE (l.letter_id IS NOT NULL AND (
                        strpos(e.details::text, l.recipient_id) > 0
                     OR (length(btrim(l.recipient_name)) >= 3
                         AND strpos(lower(e.details::text), lower(btrim(l.recipient_name))) > 0)
                     OR (length(btrim(l.street)) >= 5 AND strpos(lower(e.details::text), lower(btrim(l.street))) > 0)))
                OR e.details::text ~ '\m[0-9]{11}\M'
                OR e.details::text ~ '[0-9]{2}\.[0-9]{2}\.[0-9]{2}-[0-9]{3}\.[0-9]{2}'
             ORDER BY e.chain_seq LIMIT %s
            """,
            (limit,),
        )
        rows = cur.fetchall()
    conn.commit()
    return [{"chain_seq": s, "letter_id": lid, "event": ev, "holds": what} for s, lid, ev, what in rows]
