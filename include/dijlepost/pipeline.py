"""The run's own stages: routing a claim's letters, rendering their PDFs, and the run's summary.

The wave DAG's tasks (`dag_factory.py`) call one function each and log what it returns. The eBox side
lives in `ebox/delivery.py`, the print side in `printhouse/handoff.py`, PDF storage in `documents.py`,
and every status change in `outbox.py`. Nothing here imports Airflow, so each stage is tested
directly against PostgreSQL. Each stage only acts on letters still in the state it expects.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from include.dijlepost import documents, logfmt, outbox
from include.dijlepost.outbox import RunContext, iter_letters_in_claim
from include.dijlepost.recipients import InvalidRecipientId, normalize_recipient_id, pseudonym
from include.dijlepost.rollout import RolloutState
from include.dijlepost.routing import LetterFacts, decide
from include.dijlepost.states import Status
from include.dijlepost.waves import Wave
from include.dijlepost.work import ChunkWork

log = logging.getLogger("dijlepost.pipeline")


# --------------------------------------------------------------------------- decision


def _address_complete(letter: dict) -> bool:
    from include.dijlepost.intake import KNOWN_COUNTRIES

    return (
        all((letter.get(f) or "").strip() for f in ("recipient_name", "street", "postal_code", "city"))
        and (letter.get("country") or "") in KNOWN_COUNTRIES
    )


def decide_claim(conn, work: ChunkWork, *, state: RolloutState) -> dict:
    """Route every undecided letter of the claim (or of the work's chunk) with the ordered rules of the
    rollout `state`; store channel, rule, reason. Chunk by chunk and page by page, each page committed
    on its own, so memory grows neither with the size of the wave nor with the size of a chunk."""
    wave, key, claim_id, ctx, chunk = work.wave, work.pseudonym_key, work.claim_id, work.ctx, work.chunk
    if chunk is None:
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT DISTINCT claim_chunk FROM letters WHERE claim_run_id = %s AND status = {Status.PROCESSING.sql} "
                "AND decided_at IS NULL ORDER BY 1",
                (claim_id,),
            )
            chunks = [r[0] for r in cur.fetchall()]
        conn.commit()
    else:
        chunks = [chunk]
    by_rule: Counter = Counter()
    channels: Counter = Counter()
    for chunk in chunks:
        _decide_chunk(conn, wave, state, key, claim_id, chunk, ctx, by_rule, channels)
    return {
        "decided": sum(channels.values()),
        "by_channel": dict(sorted(channels.items())),
        "by_rule": dict(sorted(by_rule.items())),
        "phase": state.phase,
    }


_DECIDE_PAGE = 2000


def _decide_chunk(
    conn,
    wave: Wave,
    state: RolloutState,
    key: bytes,
    claim_id: str,
    chunk: int,
    ctx: RunContext,
    by_rule: Counter,
    channels: Counter,
) -> None:
    """Decide the chunk `_DECIDE_PAGE` letters at a time, each page committed on its own (a page read
    after an earlier page's commit is unaffected by it: pages follow the id)."""
    letters = iter_letters_in_claim(conn, claim_id, chunk, where="decided_at IS NULL", page=_DECIDE_PAGE)
    while page := list(islice(letters, _DECIDE_PAGE)):
        _decide_page(conn, wave, state, key, claim_id, page, ctx, by_rule, channels)


def _decide_page(
    conn,
    wave: Wave,
    state: RolloutState,
    key: bytes,
    claim_id: str,
    letters: list[dict],
    ctx: RunContext,
    by_rule: Counter,
    channels: Counter,
) -> None:
    id_errors: dict[str, str | None] = {}
    pseudonyms: dict[str, str] = {}
    for letter in letters:
        error, rid = None, letter["recipient_id"]
        try:
            rid = normalize_recipient_id(letter["recipient_kind"], rid)
        except InvalidRecipientId as exc:
            error = str(exc)
        pseudonyms[letter["letter_id"]] = pseudonym(key, letter["recipient_kind"], rid)
        id_errors[letter["letter_id"]] = error
    with conn.cursor() as cur:
        cur.execute(
            "SELECT recipient_pseudonym FROM paper_exemptions WHERE recipient_pseudonym = ANY(%s)",
            (list(set(pseudonyms.values())),),
        )
        exempt = {r[0] for r in cur.fetchall()}
        cur.execute(
            "SELECT recipient_pseudonym, active FROM ebox_activation WHERE recipient_pseudonym = ANY(%s)",
            (list(set(pseudonyms.values())),),
        )
        active = dict(cur.fetchall())
    rows, quarantined = [], []
    for letter in letters:
        letter_id = letter["letter_id"]
        p = pseudonyms[letter_id]
        facts = LetterFacts(
            letter_id=letter_id,
            recipient_pseudonym=p,
            recipient_id_error=id_errors[letter_id],
            address_complete=_address_complete(letter),
            registered=letter["registered"],
            paper_exempt=p in exempt,
            ebox_active=active.get(p),
            ebox_state=letter["ebox_state"],
            registered_via_ebox=wave.registered_via_ebox,
            followup_of=letter.get("followup_of"),
        )
        d = decide(facts, state)
        by_rule[d.rule] += 1
        if d.channel is None:
            quarantined.append((letter_id, f"{d.rule}: {d.reason}"))
        rows.append(
            (
                letter_id,
                d.channel,
                d.rule,
                d.reason,
                d.shadow_channel,
                {
                    "channel": d.channel or "quarantine",
                    "rule": d.rule,
                    "reason": d.reason,
                    "phase": state.phase,
                    "shadow_channel": d.shadow_channel,
                    "recipient": p,
                },
            )
        )
    with conn.cursor() as cur:
        outbox.record_decisions(cur, ctx, claim_id, state.phase, rows)
        for letter_id, reason in quarantined:
            outbox.quarantine(cur, ctx, letter_id, claim_id, reason, stage="decide")
    conn.commit()
    channels.update(r[1] or "quarantine" for r in rows)


# --------------------------------------------------------------------------- rendering


def render_chunk(
    conn,
    work: ChunkWork,
    *,
    renderer,
    document_root: Path,
    sync_each_file: bool = False,
    budget_seconds: float | None = None,
) -> dict:
    """Render one PDF per decided letter of the work's chunk that has none yet; bad data is quarantined, and
    so is a letter that cannot be laid out within `budget_seconds`, so one absurd letter never stalls
    its chunk. The PDFs are durable before anything is recorded: one syncfs of the document volume,
    or an fsync per PDF with `sync_each_file` (see `documents.VolumeSync`)."""
    from include.dijlepost.rendering import LetterDataError

    claim_id, chunk, ctx = work.claim_id, work.chunk, work.ctx
    # Read page by page: memory follows the page, not the chunk (rendered_at is only set after the loop).
    letters = iter_letters_in_claim(
        conn, claim_id, chunk, where="channel IS NOT NULL AND rendered_at IS NULL"
    )
    rendered, failed = [], []
    volume = documents.VolumeSync(document_root, sync_each_file)  # opened before the first write
    try:
        for letter in letters:
            deadline = time.monotonic() + budget_seconds if budget_seconds else None
            try:
                doc = renderer.render(letter, deadline=deadline)
            except LetterDataError as exc:
                failed.append((letter["letter_id"], str(exc)))
                continue
            path = documents.document_path(document_root, letter)
            documents.write_atomically(path, doc.pdf, sync=False)  # a failed write fails the task here
            rendered.append(
                (letter["letter_id"], str(path), doc.sha256, doc.pages, doc.subject, doc.filename)
            )
        # Nothing is recorded before every PDF of the chunk, and its rename, is on disk.
        volume.sync(path for _, path, *_ in rendered)
    finally:
        volume.close()
    documents.sync_directories((path for _, path, *_ in rendered), document_root)  # the renames too
    with conn.cursor() as cur:
        outbox.mark_rendered(cur, ctx, claim_id, rendered)
        for letter_id, reason in failed:
            outbox.quarantine(cur, ctx, letter_id, claim_id, f"render: {reason}", stage="render")
    conn.commit()
    return {
        "chunk": chunk,
        "rendered": len(rendered),
        "quarantined": len(failed),
        "quarantine_reasons": dict(Counter(r.split(":")[0] for _, r in failed)),
    }


# --------------------------------------------------------------------------- delivery branch


def letters_to_deliver(conn, work: ChunkWork) -> dict:
    """How many of the work chunk's rendered letters still wait for each channel (the wave DAG's branch)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE channel = 'ebox'), count(*) FILTER (WHERE channel = 'paper') "
            f"FROM letters WHERE claim_run_id = %s AND claim_chunk = %s AND status = {Status.PROCESSING.sql} "
            "AND rendered_at IS NOT NULL",
            (work.claim_id, work.chunk),
        )
        ebox, paper = cur.fetchone()
    conn.commit()
    return {"ebox": ebox, "paper": paper}


# --------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class RunSummary:
    department: str
    run_id: str  # Airflow's run id
    outcome: dict

    def log(self) -> None:
        logfmt.emit(
            "run_summary",
            department=self.department,
            run_id=self.run_id,
            by_status=self.outcome["by_status"],
            by_rule=self.outcome["by_rule"],
        )


def summarize_run(conn, work: ChunkWork) -> RunSummary:
    """The states and rules now of the letters the work's DAG run claimed (`outbox.outcome_counts`
    by Airflow's dag and run id)."""
    ctx = work.ctx
    return RunSummary(work.department, ctx.run_id or "", outbox.outcome_counts(conn, ctx.dag_id, ctx.run_id))
