"""What a delivery task did, letter by letter, read back from the audit trail (`letter_events`).

    name_letters(conn, ctx, ...)    log the ids of the letters this task try delivered or handed over,
                                    a compact line per IDS_PER_LINE letters (so that an auditor finds a
                                    letter id in the task log that sent it)
    earlier_tries(conn, ctx, ...)   what earlier tries of the same task (same run, task, chunk) did:
                                    a rerun says "already delivered in try 1: ..." instead of "nothing to do"

Every event carries the coordinates of the task try that wrote it (`outbox.RunContext`); both read
them through the index on (run_id, event). Ids only: letter ids and batch ids, never personal data.
Nothing here imports Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass

from include.dijlepost import logfmt
from include.dijlepost.outbox import RunContext
from include.dijlepost.work import ChunkWork

IDS_PER_LINE = 50
# The events a delivery task writes for a letter it is done with, and the words a user reads for them.
EBOX_EVENTS = {"delivered_ebox": "delivered to the eBox", "rerouted_to_paper": "rerouted to paper"}
PRINT_EVENTS = {"handed_to_print": "handed over"}


@dataclass(frozen=True)
class Done:
    """Letters one try of a task moved with one event (and, for the print house, in one batch)."""

    try_number: int
    event: str
    batch_id: str | None
    letter_ids: tuple[str, ...]


_DONE = (
    "SELECT try_number, event, details->>'batch_id', array_agg(letter_id ORDER BY letter_id) "
    "FROM letter_events WHERE run_id = %s AND event = ANY(%s) AND dag_id = %s AND task_id = %s "
    "AND map_index IS NOT DISTINCT FROM %s AND try_number TRIES %s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
)
_QUERIES = {"this": _DONE.replace("TRIES", "="), "earlier": _DONE.replace("TRIES", "<")}


def _done(conn, ctx: RunContext, events, tries: str) -> list[Done]:
    with conn.cursor() as cur:
        cur.execute(
            _QUERIES[tries],
            (ctx.run_id, list(events), ctx.dag_id, ctx.task_id, ctx.map_index, ctx.try_number),
        )
        rows = cur.fetchall()
    conn.commit()
    return [Done(t, e, b, tuple(ids)) for t, e, b, ids in rows]


def done_in_this_try(conn, ctx: RunContext, events) -> list[Done]:
    return _done(conn, ctx, events, "this")


def earlier_tries(conn, ctx: RunContext, events) -> list[Done]:
    return _done(conn, ctx, events, "earlier")


def name_letters(conn, ctx: RunContext, log_event: str, events, **fields: object) -> int:
    """Log `event=<log_event> ... [batch_id=...] part=i/n letters=ID,ID,...` for what this try did,
    IDS_PER_LINE ids a line; returns the number of letters named."""
    named = 0
    for done in done_in_this_try(conn, ctx, events):
        ids = done.letter_ids
        parts = max(1, -(-len(ids) // IDS_PER_LINE))
        for i in range(parts):
            line = logfmt.line(
                log_event,
                **fields,
                outcome=done.event,
                **({"batch_id": done.batch_id} if done.batch_id else {}),
                part=f"{i + 1}/{parts}",
                letters=",".join(ids[i * IDS_PER_LINE : (i + 1) * IDS_PER_LINE]),
            )
            logfmt.log.info(line)
        named += len(ids)
    return named


def describe(done: list[Done], words: dict[str, str]) -> str:
    """`already handed over in try 1: batch B-1, 12 letters; ...` for a rerun's log and skip message."""
    parts = []
    for d in done:
        what = f"{words.get(d.event, d.event)} in try {d.try_number}: "
        what += f"batch {d.batch_id}, " if d.batch_id else ""
        parts.append(what + f"{len(d.letter_ids)} letter{'s' if len(d.letter_ids) != 1 else ''}")
    return "already " + "; ".join(parts)


def account_for_task(conn, work: ChunkWork, events, log_event: str, earlier_event: str) -> list[Done]:
    """What a delivery task's log says after its work: its letters by id (`log_event` lines, so that an
    auditor finds a letter in the log that sent it) and, on a rerun (a cleared task, a retry), one
    `earlier_event` line with what the earlier tries did. Returns those earlier tries' work."""
    name_letters(conn, work.ctx, log_event, events, department=work.department, chunk=work.chunk)
    earlier = earlier_tries(conn, work.ctx, events)
    if earlier:
        found = describe(earlier, events)
        logfmt.emit(earlier_event, department=work.department, chunk=work.chunk, found=found)
    return earlier


def done_earlier(result: dict, earlier: list[Done]) -> dict:
    """A task's result when an earlier try did its work: the letters that try finished, counted."""
    return {**result, "done_earlier": sum(len(d.letter_ids) for d in earlier)}
