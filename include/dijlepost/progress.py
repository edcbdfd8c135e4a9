"""How far a wave run is, read from the outbox while it works (the demo and the scale benchmark show it).

    run_progress(conn, claim_id)   chunks claimed and done, letters by where they are now
    describe(progress)              one line for a person watching

A chunk is done when each of its letters is in a final state. The figures come from `letters`
alone (index on claim_run_id), so watching costs the run nothing it would notice.
"""

from __future__ import annotations

from dataclasses import dataclass

from include.dijlepost.states import FINAL_STATUSES, Status, sql_list


@dataclass(frozen=True)
class Progress:
    chunks: int = 0
    chunks_done: int = 0
    letters: int = 0
    delivered_ebox: int = 0
    handed_to_print: int = 0
    quarantined: int = 0

    @property
    def in_progress(self) -> int:
        return self.letters - self.delivered_ebox - self.handed_to_print - self.quarantined


def run_progress(conn, claim_id: str) -> Progress:
    """The progress of the run holding the claim `claim_id` (`dag_id:run_id`)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(*) FILTER (WHERE done), sum(n), sum(ebox), sum(paper), sum(quarantined) "
            f"FROM (SELECT claim_chunk, bool_and(status IN {sql_list(*FINAL_STATUSES)}) AS done, count(*) AS n, "
            f"count(*) FILTER (WHERE status = {Status.DELIVERED_EBOX.sql}) AS ebox, "
            f"count(*) FILTER (WHERE status = {Status.HANDED_TO_PRINT.sql}) AS paper, "
            f"count(*) FILTER (WHERE status = {Status.QUARANTINED.sql}) AS quarantined "
            "FROM letters WHERE claim_run_id = %s GROUP BY claim_chunk) AS chunks",
            (claim_id,),
        )
        row = cur.fetchone()
    conn.commit()
    return Progress(*(int(v or 0) for v in row))


def describe(p: Progress) -> str:
    if not p.chunks:
        return "waiting for its claim"
    return (
        f"{p.chunks_done}/{p.chunks} chunks done; {p.delivered_ebox} delivered to the eBox, "
        f"{p.handed_to_print} handed over to print, {p.quarantined} quarantined, {p.in_progress} in progress"
    )
