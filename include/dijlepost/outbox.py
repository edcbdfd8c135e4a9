"""The outbox state machine in PostgreSQL.

    pending --claim--> processing --(decide, render, deliver)--> delivered_ebox | handed_to_print
                                                              \-> quarantined (with the reason)
A run claims letters atomically (`FOR UPDATE SKIP LOCKED`), so overlapping runs never share one.
Every write is guarded by the state it expects, so a retried or rerun step changes nothing twice.
A claim held by a run that died is taken over after `lease` by the next run of the department.
Functions take a DB-API connection (psycopg 2 or 3) and commit what they change.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta

FINAL_STATUSES = ("delivered_ebox", "handed_to_print", "quarantined")


@dataclass(frozen=True)
class RunContext:
    """Airflow coordinates of the task acting on letters, written with every event for auditors."""
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None


@dataclass(frozen=True)
class Claim:
    run_id: str
    count: int
    chunks: list[int]
    taken_over: int        # letters whose earlier claim had expired


def _dicts(cur) -> list[dict]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def record_events(cur, ctx: RunContext, events: Iterable[tuple[str, str, dict]]) -> None:
    """Append (letter_id, event, details) rows to the letter history, in the caller's transaction.

    The database chains each row by hash and stamps its time (trigger of migration 0005, docs/audit.md);
    rows can never be changed afterwards. `details` must hold keyed pseudonyms only, never a recipient's
    id, name or address (`dijlepost audit verify` reports any it finds)."""
    rows = [(lid, ev, json.dumps(details, default=str), ctx.dag_id, ctx.run_id, ctx.task_id,
             ctx.map_index, ctx.try_number) for lid, ev, details in events]
    if rows:
        cur.executemany(
            "INSERT INTO letter_events (letter_id, event, details, dag_id, run_id, task_id, map_index, "
            "try_number) VALUES (%s, %s, %s::jsonb, %s, %s, %s, %s, %s)", rows)


# A big claim moves many letters into the claim index at once; until autovacuum analyzes the table,
# the planner still believes the claim is empty and may scan the whole claim for one letter.
ANALYZE_AFTER_CLAIMING = 1000


def _refresh_statistics(conn) -> None:
    """ANALYZE letters (a sample, well under a second). Only the table's owner may: for any other role
    PostgreSQL skips it with a warning and the run goes on with the statistics it has."""
    with conn.cursor() as cur:
        cur.execute("ANALYZE letters")
    conn.commit()


def claim(conn, department: str, run_id: str, batch_size: int, chunk_size: int,
          lease: timedelta, ctx: RunContext, max_chunks: int | None = None) -> Claim:
    """Claim up to `batch_size` letters for this run; a rerun of the same run keeps what it holds.

    The letters are numbered into chunks of `chunk_size`; with `max_chunks`, a big claim gets bigger
    chunks instead of more of them (at most `max_chunks` per claim): every chunk is four mapped task
    instances the scheduler re-evaluates on each loop, so a 100,000-letter claim at the everyday
    chunk size would cost more in scheduling than it gains in parallelism. The chunks of such a big
    claim shrink linearly (sizes in the ratio max_chunks : ... : 2 : 1, in letter id order): the
    chunks rendered last are small, so the cores run out of work together and the last chunk's
    delivery, which nothing else overlaps, is short (guided self-scheduling)."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*), coalesce(max(claim_chunk), -1) FROM letters "
                    "WHERE claim_run_id = %s AND status = 'processing'", (run_id,))
        held, last_chunk = cur.fetchone()
        room = max(batch_size - held, 0)
        cur.execute(
            """
            WITH candidates AS (
                SELECT id, status FROM letters
                 WHERE department = %(dept)s
                   AND (status = 'pending'
                        OR (status = 'processing' AND claim_run_id IS DISTINCT FROM %(run)s
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
               SET status = 'processing', claim_run_id = %(run)s, claim_chunk = %(base)s + numbered.n,
                   claimed_at = now(), attempts = l.attempts + 1, updated_at = now(),
                   rollout_phase = NULL, channel = NULL, decision_rule = NULL, decision_reason = NULL,
                   shadow_channel = NULL, decided_at = NULL
              FROM numbered
             WHERE l.id = numbered.id
         RETURNING l.letter_id, numbered.status
            """,
            {"dept": department, "run": run_id, "lease": lease, "room": room, "chunk": chunk_size,
             # a float, so that PostgreSQL's constant folding of the formula cannot overflow an integer
             "k": float(max_chunks) if max_chunks else None,
             "base": last_chunk + 1},
        )
        taken = cur.fetchall()
        record_events(cur, ctx, ((lid, "claimed", {"taken_over": prev == "processing"}) for lid, prev in taken))
        cur.execute("SELECT claim_chunk, count(*) FROM letters WHERE claim_run_id = %s AND status = 'processing' "
                    "GROUP BY claim_chunk ORDER BY claim_chunk", (run_id,))
        chunks = cur.fetchall()
    conn.commit()
    if len(taken) >= ANALYZE_AFTER_CLAIMING:
        _refresh_statistics(conn)
    return Claim(run_id=run_id, count=sum(n for _, n in chunks), chunks=[c for c, _ in chunks],
                 taken_over=sum(1 for _, prev in taken if prev == "processing"))


LETTER_COLUMNS = (
    "letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name, street, postal_code, "
    "city, country, language, registered, payload, created_at, channel, decision_rule, ebox_state, "
    "pdf_path, pdf_sha256, pdf_pages, pdf_subject, pdf_filename, claim_chunk, attempts, followup_of"
)


def iter_letters_in_claim(conn, run_id: str, chunk: int | None = None, where: str = "",
                          page: int = 500) -> Iterator[dict]:
    """The letters this run holds (optionally one chunk) in id order, read `page` at a time (keyset on
    the id, each page its own short transaction): a task's memory then does not grow with the size of
    its chunk. `where` must not depend on what the caller changes while iterating, except on letters
    already handed out (a page is read after the letters before it)."""
    sql = (f"SELECT id AS _id, {LETTER_COLUMNS} FROM letters WHERE claim_run_id = %s AND status = 'processing' "
           + ("AND claim_chunk = %s " if chunk is not None else "") + "AND id > %s"
           + (f" AND {where}" if where else "") + " ORDER BY id LIMIT %s")
    fixed = (run_id,) if chunk is None else (run_id, chunk)
    after = 0
    while True:
        with conn.cursor() as cur:
            cur.execute(sql, (*fixed, after, page))
            rows = _dicts(cur)
        conn.commit()
        for row in rows:
            after = row.pop("_id")
            yield row
        if len(rows) < page:
            return


def quarantine(cur, ctx: RunContext, letter_id: str, run_id: str, reason: str, stage: str) -> bool:
    cur.execute(
        "UPDATE letters SET status = 'quarantined', quarantine_reason = %s, final_at = now(), updated_at = now() "
        "WHERE letter_id = %s AND claim_run_id = %s AND status = 'processing'", (reason, letter_id, run_id))
    if cur.rowcount == 1:
        record_events(cur, ctx, [(letter_id, "quarantined", {"stage": stage, "reason": reason})])
        return True
    return False


def release_for_retry(cur, ctx: RunContext, letter_id: str, run_id: str, error: str) -> bool:
    """Give a letter back to the outbox (status pending) for the next run, keeping its eBox state."""
    cur.execute(
        "UPDATE letters SET status = 'pending', claim_run_id = NULL, claim_chunk = NULL, claimed_at = NULL, "
        "last_error = %s, updated_at = now() WHERE letter_id = %s AND claim_run_id = %s AND status = 'processing'",
        (error, letter_id, run_id))
    if cur.rowcount == 1:
        record_events(cur, ctx, [(letter_id, "released_for_retry", {"error": error})])
        return True
    return False


def outcome_counts(conn, dag_id: str, run_id: str) -> dict:
    """Current states and rules of the letters this DAG run claimed (from their `claimed` events)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT l.status, coalesce(l.channel, '-'), coalesce(l.decision_rule, '-'), count(*) "
            "FROM letters l WHERE l.letter_id IN (SELECT letter_id FROM letter_events "
            "WHERE dag_id = %s AND run_id = %s AND event = 'claimed') GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            (dag_id, run_id))
        rows = cur.fetchall()
    conn.commit()
    return {"by_status": _sum(rows, 0), "by_rule": _sum(rows, 2),
            "rows": [{"status": s, "channel": c, "rule": r, "letters": n} for s, c, r, n in rows]}


def _sum(rows: Sequence[tuple], idx: int) -> dict:
    out: dict[str, int] = {}
    for row in rows:
        out[row[idx]] = out.get(row[idx], 0) + row[-1]
    return dict(sorted(out.items()))


def as_dict(obj) -> dict:
    return asdict(obj)
