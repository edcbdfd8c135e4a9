"""The outbox: the letter state machine in PostgreSQL, and the one writer of `letters.status`.

    pending --claim--> processing --mark_delivered_ebox--> delivered_ebox
       ^                  |       --mark_handed_to_print--> handed_to_print --(print house refuses)--> quarantined
       +--release_for_retry--+    --quarantine--> quarantined (with the reason)

Every change of a letter's status, eBox state or print status is one of the named functions below,
each checking the state it expects in its WHERE clause, so a retried or rerun step changes nothing
twice. The moves allowed are those of `include/dijlepost/states.py`; the database refuses any other
(trigger of migration 0012) and writes each move's audit event itself, with the details and Airflow
coordinates the function passes in the same UPDATE (`audit_event`). A run claims letters atomically (`FOR UPDATE
SKIP LOCKED`), so overlapping runs never share one; a claim held by a run that died is taken over
after `lease` by the next run of the department. The functions that take a cursor work in the
caller's transaction; those that take a connection (psycopg 3) commit what they change.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from psycopg.rows import dict_row

from include.dijlepost.states import FINAL_STATUSES as FINAL_STATUSES
from include.dijlepost.states import STATUS_TRANSITIONS, EboxState, PrintStatus, Status
from include.dijlepost.states import allowed as allowed

if TYPE_CHECKING:  # pragma: no cover
    from include.dijlepost.work import ChunkWork

# The letter's status moves and the function that makes each one (states.py: every state column).
TRANSITIONS: dict[tuple[Status, Status], str] = {
    key: move.function for key, move in STATUS_TRANSITIONS.items()
}


@dataclass(frozen=True)
class RunContext:
    """Airflow coordinates of the task acting on letters, written with every event for auditors."""

    dag_id: str | None = None
    run_id: str | None = None  # Airflow's run id (the claim is `dag_id:run_id`)
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None


@dataclass(frozen=True)
class Claim:
    claim_id: str  # the run's claim on its letters (`dag_id:run_id`)
    count: int
    chunks: list[int]
    taken_over: int  # letters whose earlier claim had expired


def record_events(cur, ctx: RunContext, events: Iterable[tuple[str, str, dict]]) -> None:
    """Append (letter_id, event, details) rows to the letter history, in the caller's transaction, for
    what is not a move of a state column (accepted, decided, rendered, ...): the database writes a move's
    event itself and refuses its name here.

    Through `record_letter_event` (migration 0012), the only way a login other than the table's owner
    adds an event; the database chains each row by hash and stamps its time (migration 0005,
    docs/audit.md); rows can never be changed afterwards. `details` must hold keyed pseudonyms only,
    never a recipient's id, name or address (`dijlepost audit verify` reports any it finds)."""
    rows = [
        (
            lid,
            ev,
            json.dumps(details, default=str),
            ctx.dag_id,
            ctx.run_id,
            ctx.task_id,
            ctx.map_index,
            ctx.try_number,
        )
        for lid, ev, details in events
    ]
    if rows:
        cur.executemany(
            "SELECT record_letter_event(%s::text, %s::text, %s::jsonb, %s::text, %s::text, %s::text, "
            "%s::integer, %s::integer)",
            rows,
        )


def audit_event(ctx: RunContext, details: dict | None = None) -> str:
    """The `audit_event` value of an UPDATE that moves a letter: the details and Airflow coordinates of
    the event the database writes for the move (JSON text, for a `%s::jsonb` parameter)."""
    coordinates: dict[str, object] = {
        "dag_id": ctx.dag_id,
        "run_id": ctx.run_id,
        "task_id": ctx.task_id,
        "map_index": ctx.map_index,
        "try_number": ctx.try_number,
    }
    if details is not None:
        coordinates["details"] = details
    return json.dumps(coordinates, default=str)


# A big claim moves many letters into the claim index at once; until autovacuum analyzes the table,
# the planner still believes the claim is empty and may scan the whole claim for one letter.
ANALYZE_AFTER_CLAIMING = 1000


def _refresh_statistics(conn) -> None:
    """ANALYZE letters (a sample, well under a second). Only the table's owner may: for any other role
    PostgreSQL skips it with a warning and the run goes on with the statistics it has."""
    with conn.cursor() as cur:
        cur.execute("ANALYZE letters")
    conn.commit()


def claim(
    conn,
    work: ChunkWork,
    *,
    batch_size: int,
    chunk_size: int,
    lease: timedelta,
    max_chunks: int | None = None,
) -> Claim:
    """Claim up to `batch_size` letters of the work's department for its claim (`work.claim_id`); a
    rerun of the same run keeps what it holds.

    The letters are numbered into chunks of `chunk_size`; with `max_chunks`, a big claim gets bigger
    chunks instead of more of them (at most `max_chunks` per claim): every chunk is four mapped task
    instances the scheduler re-evaluates on each loop, so a 100,000-letter claim at the everyday
    chunk size would cost more in scheduling than it gains in parallelism. The chunks of such a big
    claim shrink linearly (sizes in the ratio max_chunks : ... : 2 : 1, in letter id order): the
    chunks rendered last are small, so the cores run out of work together and the last chunk's
    delivery, which nothing else overlaps, is short (guided self-scheduling)."""
    claim_id, ctx = work.claim_id, work.ctx
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), coalesce(max(claim_chunk), -1) FROM letters "
            f"WHERE claim_run_id = %s AND status = {Status.PROCESSING.sql}",
            (claim_id,),
        )
        held, last_chunk = cur.fetchone()
        room = max(batch_size - held, 0)
        cur.execute(
            f"""
            WITH candidates AS (
                SELECT id, status FROM letters
                 WHERE department = %(dept)s
                   AND (status = {Status.PENDING.sql}
                        OR (status = {Status.PROCESSING.sql} AND claim_run_id IS DISTINCT FROM %(run)s
                            AND print_batch_id IS NULL AND claimed_at < now() - %(lease)s))
                 ORDER BY id
                 LIMIT %(room)s
                 FOR UPDATE SKIP LOCKED
            ), positioned AS (
                SELECT id, status, row_number() OVER (ORDER BY id) - 1 AS pos, count(*) OVER () AS total
                  FROM candidates
            ), numbered AS (
                -- chunk j of k holds the share (k - j) / (k (k + 1) / 2): solve the cumulative share for j
                SELECT id, status,
                       CASE WHEN %(k)s::float8 IS NULL OR total <= %(chunk)s * %(k)s::float8 THEN pos / %(chunk)s
                            ELSE least(%(k)s - 1, floor(((2 * %(k)s + 1)
                                 - sqrt(greatest(0, (2 * %(k)s + 1) ^ 2 - 4 * %(k)s * (%(k)s + 1) * pos / total)))
                                 / 2))
                       END::int AS n
                  FROM positioned
            )
            UPDATE letters l
               SET status = {Status.PROCESSING.sql}, claim_run_id = %(run)s,
                   claim_chunk = %(base)s + numbered.n, claimed_at = now(), attempts = l.attempts + 1,
                   updated_at = now(), audit_event = %(event)s::jsonb || jsonb_build_object('details',
                       jsonb_build_object('taken_over', numbered.status = {Status.PROCESSING.sql})),
                   rollout_phase = NULL, channel = NULL, decision_rule = NULL, decision_reason = NULL,
                   shadow_channel = NULL, decided_at = NULL
              FROM numbered
             WHERE l.id = numbered.id
         RETURNING l.letter_id, numbered.status
            """,
            {
                "dept": work.department,
                "run": claim_id,
                "lease": lease,
                "room": room,
                "chunk": chunk_size,
                # a float, so that PostgreSQL's constant folding of the formula cannot overflow an integer
                "k": float(max_chunks) if max_chunks else None,
                "base": last_chunk + 1,
                "event": audit_event(ctx),
            },
        )
        taken = cur.fetchall()
        cur.execute(
            f"SELECT claim_chunk, count(*) FROM letters WHERE claim_run_id = %s AND status = {Status.PROCESSING.sql} "
            "GROUP BY claim_chunk ORDER BY claim_chunk",
            (claim_id,),
        )
        chunks = cur.fetchall()
    conn.commit()
    if len(taken) >= ANALYZE_AFTER_CLAIMING:
        _refresh_statistics(conn)
    return Claim(
        claim_id=claim_id,
        count=sum(n for _, n in chunks),
        chunks=[c for c, _ in chunks],
        taken_over=sum(1 for _, prev in taken if prev == Status.PROCESSING),
    )


LETTER_COLUMNS = (
    "letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name, street, postal_code, "
    "city, country, language, registered, payload, created_at, channel, decision_rule, ebox_state, "
    "pdf_path, pdf_sha256, pdf_pages, pdf_subject, pdf_filename, claim_chunk, attempts, followup_of"
)


def iter_letters_in_claim(
    conn, claim_id: str, chunk: int | None = None, where: str = "", page: int = 500
) -> Iterator[dict]:
    """The letters this run holds (optionally one chunk) in id order, read `page` at a time (keyset on
    the id, each page its own short transaction): a task's memory then does not grow with the size of
    its chunk. `where` must not depend on what the caller changes while iterating, except on letters
    already handed out (a page is read after the letters before it)."""
    sql = (
        f"SELECT id AS _id, {LETTER_COLUMNS} FROM letters WHERE claim_run_id = %s "
        f"AND status = {Status.PROCESSING.sql} "
        + ("AND claim_chunk = %s " if chunk is not None else "")
        + "AND id > %s"
        + (f" AND {where}" if where else "")
        + " ORDER BY id LIMIT %s"
    )
    fixed = (claim_id,) if chunk is None else (claim_id, chunk)
    after = 0
    while True:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, (*fixed, after, page))
            rows = cur.fetchall()
        conn.commit()
        for row in rows:
            after = row.pop("_id")
            yield row
        if len(rows) < page:
            return


def _columns(rows: Sequence[tuple], width: int) -> list[list]:
    """Rows as `width` column lists, for `unnest(%s::type[], ...)` set-based statements."""
    return [list(col) for col in zip(*rows)] if rows else [[] for _ in range(width)]


# --------------------------------------------------------------------------- within processing


def record_decisions(cur, ctx: RunContext, claim_id: str, phase: str, rows: Sequence[tuple]) -> set[str]:
    """Store each letter's channel, rule, reason and shadow channel, rows of
    `(letter_id, channel_or_None, rule, reason, shadow_channel, event_details)`. One set-based
    statement per page: a statement per letter costs a plan and an index probe each, and turns
    quadratic while the planner's statistics still think the claim is empty."""
    cur.execute(
        "UPDATE letters l SET rollout_phase = %s, channel = v.channel, decision_rule = v.rule, "
        "decision_reason = v.reason, shadow_channel = v.shadow, decided_at = now(), updated_at = now() "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
        "AS v(letter_id, channel, rule, reason, shadow) "
        f"WHERE l.letter_id = v.letter_id AND l.claim_run_id = %s AND l.status = {Status.PROCESSING.sql} "
        "RETURNING l.letter_id",
        (phase, *_columns([r[:5] for r in rows], 5), claim_id),
    )
    changed = {r[0] for r in cur.fetchall()}
    record_events(cur, ctx, ((r[0], "decided", r[5]) for r in rows if r[0] in changed))
    return changed


def mark_rendered(cur, ctx: RunContext, claim_id: str, rows: Sequence[tuple]) -> set[str]:
    """Record the durable PDF of each letter, rows of `(letter_id, path, sha256, pages, subject, filename)`."""
    cur.execute(
        "UPDATE letters l SET pdf_path = v.path, pdf_sha256 = v.sha, pdf_pages = v.pages, "
        "pdf_subject = v.subject, pdf_filename = v.filename, rendered_at = now(), updated_at = now() "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::text[], %s::text[]) "
        "AS v(letter_id, path, sha, pages, subject, filename) "
        f"WHERE l.letter_id = v.letter_id AND l.claim_run_id = %s AND l.status = {Status.PROCESSING.sql} "
        "RETURNING l.letter_id",
        (*_columns(rows, 6), claim_id),
    )
    changed = {r[0] for r in cur.fetchall()}
    record_events(
        cur,
        ctx,
        (
            (lid, "rendered", {"sha256": sha, "pages": pages})
            for lid, _, sha, pages, _, _ in rows
            if lid in changed
        ),
    )
    return changed


def mark_ebox_in_flight(
    cur, claim_id: str, letter_ids: Sequence[str], ctx: RunContext | None = None
) -> set[str]:
    """Committed before the first publication call: from here on no decision may put the letter on
    paper while the eBox may hold it (a retry publishes with the same Idempotency-Key). The database
    writes `ebox_publication_started` for each letter that was not in flight yet."""
    cur.execute(
        f"UPDATE letters SET ebox_state = {EboxState.IN_FLIGHT.sql}, updated_at = now(), "
        "audit_event = %s::jsonb "
        f"WHERE letter_id = ANY(%s) AND claim_run_id = %s AND status = {Status.PROCESSING.sql} "
        "RETURNING letter_id",
        (audit_event(ctx or RunContext(), {}), list(letter_ids), claim_id),
    )
    return {r[0] for r in cur.fetchall()}


NO_DIGITAL_USER_RULE = "no_digital_user"  # the routing rule of a letter the eBox will not reach


def reroute_to_paper(cur, ctx: RunContext, claim_id: str, rows: Sequence[tuple]) -> set[str]:
    """The eBox will not reach the recipient (NO_DIGITAL_USER, or a 409 settled that way): the letter
    goes on paper in the same run, rule `no_digital_user`. Rows of `(letter_id, reason, answer)`."""
    cur.execute(
        f"UPDATE letters l SET channel = 'paper', ebox_state = {EboxState.NO_DIGITAL_USER.sql}, "
        "decision_rule = %s, decision_reason = v.reason, updated_at = now(), audit_event = v.event "
        "FROM unnest(%s::text[], %s::text[], %s::jsonb[]) AS v(letter_id, reason, event) "
        f"WHERE l.letter_id = v.letter_id AND l.claim_run_id = %s AND l.status = {Status.PROCESSING.sql} "
        "RETURNING l.letter_id",
        (
            NO_DIGITAL_USER_RULE,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [audit_event(ctx, {"rule": NO_DIGITAL_USER_RULE, "answer": r[2]}) for r in rows],
            claim_id,
        ),
    )
    return {r[0] for r in cur.fetchall()}


def assign_to_print_batch(
    cur, ctx: RunContext, batch_id: str, letter_ids: Sequence[str], hand_over_on: date | None
) -> set[str]:
    """Batch membership, written before the batch's file is built: a letter joins one batch only."""
    cur.execute(
        "UPDATE letters SET print_batch_id = %s, updated_at = now() WHERE letter_id = ANY(%s) "
        f"AND status = {Status.PROCESSING.sql} AND print_batch_id IS NULL RETURNING letter_id",
        (batch_id, list(letter_ids)),
    )
    changed = {r[0] for r in cur.fetchall()}
    details = {"batch_id": batch_id, "hand_over_on": hand_over_on.isoformat() if hand_over_on else None}
    record_events(
        cur, ctx, ((lid, "assigned_to_print_batch", details) for lid in letter_ids if lid in changed)
    )
    return changed


# --------------------------------------------------------------------------- to a final state


def mark_delivered_ebox(cur, ctx: RunContext, claim_id: str, rows: Sequence[tuple]) -> set[str]:
    """processing -> delivered_ebox. Rows of `(letter_id, message_id, answer, expires_at[, details])`;
    `answer` is `published` or `already_published` (a 409 settled as delivered); `expires_at` is the
    eBox's `expirationDate` of the message, or None when the eBox did not say; `details` (optional)
    are added to the event (where the message id came from, or why there is none)."""
    cur.execute(
        f"UPDATE letters l SET status = {Status.DELIVERED_EBOX.sql}, ebox_message_id = v.message_id, "
        "ebox_state = NULL, ebox_expires_at = v.expires_at, final_at = now(), updated_at = now(), "
        "audit_event = v.event "
        "FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::jsonb[]) "
        "AS v(letter_id, message_id, expires_at, event) "
        f"WHERE l.letter_id = v.letter_id AND l.claim_run_id = %s AND l.status = {Status.PROCESSING.sql} "
        "RETURNING l.letter_id",
        (
            [r[0] for r in rows],
            [r[1] for r in rows],
            [_timestamp(r[3]) for r in rows],
            [
                audit_event(
                    ctx,
                    {
                        "message_id": row[1],
                        "answer": row[2],
                        "expires_at": _timestamp(row[3]),
                        **(row[4] if len(row) > 4 and row[4] else {}),
                    },
                )
                for row in rows
            ],
            claim_id,
        ),
    )
    return {r[0] for r in cur.fetchall()}


def _timestamp(value) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


def mark_handed_to_print(
    cur, ctx: RunContext, batch_id: str, letter_ids: Sequence[str], batch_sha256: str | None
) -> set[str]:
    """processing -> handed_to_print, for the members of an uploaded batch."""
    cur.execute(
        f"UPDATE letters SET status = {Status.HANDED_TO_PRINT.sql}, final_at = now(), updated_at = now(), "
        "audit_event = %s::jsonb "
        f"WHERE print_batch_id = %s AND status = {Status.PROCESSING.sql} AND letter_id = ANY(%s) "
        "RETURNING letter_id",
        (audit_event(ctx, {"batch_id": batch_id, "batch_sha256": batch_sha256}), batch_id, list(letter_ids)),
    )
    return {r[0] for r in cur.fetchall()}


def quarantine(cur, ctx: RunContext, letter_id: str, claim_id: str, reason: str, stage: str) -> bool:
    """processing -> quarantined, with the reason in words (names a field or an answer, never a value)."""
    cur.execute(
        f"UPDATE letters SET status = {Status.QUARANTINED.sql}, quarantine_reason = %s, final_at = now(), "
        "updated_at = now(), audit_event = %s::jsonb "
        f"WHERE letter_id = %s AND claim_run_id = %s AND status = {Status.PROCESSING.sql}",
        (reason, audit_event(ctx, {"stage": stage, "reason": reason}), letter_id, claim_id),
    )
    return cur.rowcount == 1


def mark_ebox_rejected(cur, ctx: RunContext, letter_id: str, claim_id: str, reason: str) -> bool:
    """The eBox refused the publication for good (4xx other than a conflict): eBox state `rejected`
    and quarantined, stage ebox, in one move."""
    cur.execute(
        f"UPDATE letters SET status = {Status.QUARANTINED.sql}, ebox_state = {EboxState.REJECTED.sql}, "
        "quarantine_reason = %s, final_at = now(), updated_at = now(), audit_event = %s::jsonb "
        f"WHERE letter_id = %s AND claim_run_id = %s AND status = {Status.PROCESSING.sql}",
        (reason, audit_event(ctx, {"stage": "ebox", "reason": reason}), letter_id, claim_id),
    )
    return cur.rowcount == 1


def quarantine_after_print_rejection(
    cur, ctx: RunContext, letter_id: str, batch_id: str, reason: str, details: dict | None = None
) -> bool:
    """handed_to_print -> quarantined: the print house refused the letter, so it was never posted."""
    event = audit_event(
        ctx, {"stage": "print_house", "reason": reason, "batch_id": batch_id, **(details or {})}
    )
    cur.execute(
        f"UPDATE letters SET status = {Status.QUARANTINED.sql}, quarantine_reason = %s, "
        f"print_status = {PrintStatus.REJECTED.sql}, print_reason = %s, print_acknowledged_at = now(), "
        "final_at = now(), updated_at = now(), audit_event = %s::jsonb "
        f"WHERE letter_id = %s AND print_batch_id = %s AND status = {Status.HANDED_TO_PRINT.sql} "
        "AND print_status IS NULL",
        (f"print house rejected: {reason}", reason, event, letter_id, batch_id),
    )
    return cur.rowcount == 1


def release_for_retry(
    cur,
    ctx: RunContext,
    letter_id: str,
    claim_id: str,
    error: str,
    *,
    never_sent: bool = False,
    details: dict | None = None,
) -> bool:
    """processing -> pending: back to the outbox for the next run, keeping its eBox state.

    `never_sent`: the task marked the letter in flight but no publication call for it ever left (the
    task stopped first), and it was not in flight before: its `in_flight` is cleared, so the next run
    decides its channel afresh. `details` are added to the event (e.g. `ebox: unconfirmed`)."""
    cur.execute(
        f"UPDATE letters SET status = {Status.PENDING.sql}, claim_run_id = NULL, claim_chunk = NULL, "
        "claimed_at = NULL, "
        f"ebox_state = CASE WHEN %s AND ebox_state = {EboxState.IN_FLIGHT.sql} THEN NULL ELSE ebox_state END, "
        "last_error = %s, updated_at = now(), audit_event = %s::jsonb "
        f"WHERE letter_id = %s AND claim_run_id = %s AND status = {Status.PROCESSING.sql}",
        (
            never_sent,
            error,
            audit_event(
                ctx, {"error": error, **({"never_sent": True} if never_sent else {}), **(details or {})}
            ),
            letter_id,
            claim_id,
        ),
    )
    return cur.rowcount == 1


# --------------------------------------------------------------------------- after the final state
# What happens to a letter after it left: posted or returned by post, opened in the eBox. These
# change no status, only the print status or read marks; they are written here so that the outbox
# stays the one writer of `letters`.


def mark_posted(cur, ctx: RunContext, batch_id: str, letter_ids: Sequence[str], ack_file: str) -> list[str]:
    """The print house acknowledged these letters of the batch as printed and posted."""
    cur.execute(
        f"UPDATE letters SET print_status = {PrintStatus.POSTED.sql}, print_acknowledged_at = now(), "
        "updated_at = now(), audit_event = %s::jsonb "
        f"WHERE letter_id = ANY(%s) AND print_batch_id = %s AND status = {Status.HANDED_TO_PRINT.sql} "
        "AND print_status IS NULL RETURNING letter_id",
        (audit_event(ctx, {"batch_id": batch_id, "ack_file": ack_file}), list(letter_ids), batch_id),
    )
    return [r[0] for r in cur.fetchall()]


def mark_returned(cur, ctx: RunContext, letter_id: str, reason: str, returns_file: str) -> bool:
    """bpost returned the letter (unknown address, refused): it needs a follow-up by its department."""
    event = audit_event(ctx, {"reason": reason, "file": returns_file, "follow_up": True})
    cur.execute(
        f"UPDATE letters SET print_status = {PrintStatus.RETURNED.sql}, print_reason = %s, "
        "print_returned_at = now(), print_acknowledged_at = coalesce(print_acknowledged_at, now()), "
        "updated_at = now(), audit_event = %s::jsonb "
        f"WHERE letter_id = %s AND status = {Status.HANDED_TO_PRINT.sql} "
        f"AND print_status IS DISTINCT FROM {PrintStatus.RETURNED.sql}",
        (reason, event, letter_id),
    )
    return cur.rowcount == 1


def mark_ebox_status_checked(cur, letter_ids: Sequence[str]) -> None:
    """The eBox was asked for these letters' read status (answered or not)."""
    cur.execute(
        "UPDATE letters SET ebox_status_checked_at = now() "
        f"WHERE letter_id = ANY(%s) AND status = {Status.DELIVERED_EBOX.sql}",
        (list(letter_ids),),
    )


def mark_ebox_read(cur, ctx: RunContext, letter_ids: Sequence[str]) -> list[str]:
    """The recipient opened these letters in the eBox (the first check that saw it counts)."""
    cur.execute(
        "UPDATE letters SET ebox_read_at = now(), updated_at = now() "
        f"WHERE letter_id = ANY(%s) AND ebox_read_at IS NULL AND status = {Status.DELIVERED_EBOX.sql} "
        "RETURNING letter_id",
        (list(letter_ids),),
    )
    newly_read = [r[0] for r in cur.fetchall()]
    record_events(cur, ctx, ((lid, "ebox_read", {}) for lid in newly_read))
    return newly_read


# --------------------------------------------------------------------------- reading


def outcome_counts(conn, dag_id: str | None, run_id: str | None) -> dict:
    """Current states and rules of the letters this DAG run claimed (from their `claimed` events)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT l.status, coalesce(l.channel, '-'), coalesce(l.decision_rule, '-'), count(*) "
            "FROM letters l WHERE l.letter_id IN (SELECT letter_id FROM letter_events "
            "WHERE dag_id = %s AND run_id = %s AND event = 'claimed') GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (dag_id, run_id),
        )
        rows = cur.fetchall()
    conn.commit()
    return {
        "by_status": _sum(rows, 0),
        "by_rule": _sum(rows, 2),
        "rows": [{"status": s, "channel": c, "rule": r, "letters": n} for s, c, r, n in rows],
    }


def _sum(rows: Sequence[tuple], idx: int) -> dict:
    out: dict[str, int] = {}
    for row in rows:
        out[row[idx]] = out.get(row[idx], 0) + row[-1]
    return dict(sorted(out.items()))
