"""eBox delivery: the message types of a wave, the activation check of a chunk's recipients and the
publication of its eBox letters.

Plain functions of a database connection (psycopg 3) and an `EboxClient`; the wave DAG's tasks call
them (before the claim -> `check_message_types`, `decide_channels` -> `check_activation`,
`deliver_to_ebox` -> `deliver_chunk_to_ebox`). Status
changes go through `outbox`. A publication is keyed by the letter (Idempotency-Key), and a page's
`in_flight` is committed before its first call, so a retry after a crash is answered 409 and settled
without a second publication (`settle_already_published`).
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from itertools import islice
from pathlib import Path

from include.dijlepost import logfmt, outbox
from include.dijlepost.outbox import RunContext, iter_letters_in_claim
from include.dijlepost.recipients import InvalidRecipientId, normalize_recipient_id, pseudonym
from include.dijlepost.states import Status, sql_list
from include.dijlepost.waves import Wave

log = logging.getLogger("dijlepost.ebox")


# --------------------------------------------------------------------------- message types


def check_message_types(conn, client, wave: Wave) -> dict:
    """Every letter type the wave may publish has a message type the eBox registers for this sender.

    The letter types are the wave's own and those of the department's letters still waiting
    (pending or processing). Each must have a `messageTypeId` in `wave.ebox_message_types`, listed
    by the eBox's `referenceData/messageTypes` (read once a day, `EboxClient.message_types`) for
    this client's organisation and application. Anything else raises EboxConfigurationError naming
    the letter type, before any letter is claimed or published; an unavailable registry raises
    EboxUnavailableError (the task is retried).

    Returns `{"letter_types": {letter_type: message_type_id}, "validity": {message_type_id:
    "5 year" or None}, "registered": number of types in the registry}`."""
    from include.dijlepost.ebox.client import EboxConfigurationError

    with conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT letter_type FROM letters WHERE department = %s "
            f"AND status IN {sql_list(Status.PENDING, Status.PROCESSING)}",
            (wave.department,),
        )
        waiting = {r[0] for r in cur.fetchall()}
    conn.commit()
    registry = client.message_types()
    config = client.config
    chosen: dict[str, str] = {}
    for letter_type in sorted(set(wave.letter_types) | waiting):
        type_id = (wave.ebox_message_types.get(letter_type) or "").strip()
        where = f"wave {wave.department}: letter type {letter_type!r}"
        if not type_id:
            raise EboxConfigurationError(
                f"{where} has no eBox message type (ebox_message_types in waves.py)", "ebox_message_types"
            )
        found = registry.get(type_id)
        if found is None:
            raise EboxConfigurationError(
                f"{where} uses eBox message type {type_id!r}, which the eBox's referenceData/messageTypes "
                f"does not list ({len(registry)} types registered)",
                "ebox_message_types",
            )
        if not found.allows(config.sender_organization_id, config.sender_application_id):
            raise EboxConfigurationError(
                f"{where} uses eBox message type {type_id!r}, which sender application "
                f"{config.sender_application_id!r} of organisation {config.sender_organization_id} may not "
                "publish",
                "ebox_message_types",
            )
        chosen[letter_type] = type_id
    validity = {type_id: registry[type_id].validity for type_id in sorted(set(chosen.values()))}
    log.info(
        "eBox message types of wave %s checked: %d letter types, %d message types",
        wave.department,
        len(chosen),
        len(validity),
    )
    return {"letter_types": chosen, "validity": validity, "registered": len(registry)}


# --------------------------------------------------------------------------- activation


def check_activation(
    conn, client, key: bytes, run_id: str, freshness: timedelta, ctx: RunContext, chunk: int | None = None
) -> dict:
    """Make sure every valid recipient of the claim (or of one chunk) has an activation check younger
    than `freshness`. Chunks check their own recipients: a recipient in two chunks is looked up by the
    first and found fresh in the cache by the second (or, at the same moment, looked up twice)."""
    wanted: dict[str, tuple[str, str]] = {}
    with conn.cursor() as cur:  # only the recipients, never the letters: memory stays small for big waves
        cur.execute(
            "SELECT DISTINCT recipient_kind, recipient_id FROM letters "
            f"WHERE claim_run_id = %s AND status = {Status.PROCESSING.sql}"
            + (" AND claim_chunk = %s" if chunk is not None else ""),
            (run_id,) if chunk is None else (run_id, chunk),
        )
        recipients = cur.fetchall()
    conn.commit()
    for kind, raw_id in recipients:
        try:
            rid = normalize_recipient_id(kind, raw_id)
        except InvalidRecipientId:
            continue
        wanted[pseudonym(key, kind, rid)] = (kind, rid)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT recipient_pseudonym FROM ebox_activation WHERE recipient_pseudonym = ANY(%s) "
            "AND checked_at >= now() - %s",
            (list(wanted), freshness),
        )
        fresh = {r[0] for r in cur.fetchall()}
    conn.commit()
    stale = {p: v for p, v in wanted.items() if p not in fresh}
    looked_up = Counter()
    for kind in ("citizen", "enterprise"):
        ids = {rid: p for p, (k, rid) in stale.items() if k == kind}
        if not ids:
            continue
        answers = client.lookup_activation(kind, sorted(ids))
        rows = [(ids[rid], kind, a.active, a.exclusively_ebox) for rid, a in answers.items() if rid in ids]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ebox_activation (recipient_pseudonym, recipient_kind, active, exclusively_ebox, "
                "checked_at) VALUES (%s, %s, %s, %s, now()) ON CONFLICT (recipient_pseudonym) DO UPDATE SET "
                "active = EXCLUDED.active, exclusively_ebox = EXCLUDED.exclusively_ebox, checked_at = now()",
                rows,
            )
        conn.commit()
        looked_up[f"{kind}_checked"] = len(rows)
        looked_up[f"{kind}_active"] = sum(1 for r in rows if r[2])
    return {"recipients": len(wanted), "cached_fresh": len(fresh), **looked_up}


# --------------------------------------------------------------------------- publication


def deliver_chunk_to_ebox(
    conn,
    client,
    renderer,
    wave: Wave,
    key: bytes,
    run_id: str,
    chunk: int,
    ctx: RunContext,
    concurrency: int = 4,
) -> dict:
    """Publish the chunk's eBox letters, `_PUBLISH_PAGE` at a time (memory follows the page, not the
    chunk). A page's `in_flight` is committed before its first call, so that no later decision can
    send a copy on paper of a letter the eBox may already hold.

    The subject and file name come from the rendering; `renderer` (or None: made on demand) is only
    needed for letters rendered before they were stored."""
    from include.dijlepost.ebox.client import EboxConfigurationError, Publication

    def publish(letter: dict):
        message_type_id = (wave.ebox_message_types.get(letter["letter_type"]) or "").strip()
        if not message_type_id:  # check_message_types stops such a run before its claim
            raise EboxConfigurationError(
                f"wave {wave.department}: letter type {letter['letter_type']!r} has "
                "no eBox message type (ebox_message_types in waves.py)",
                "ebox_message_types",
            )
        pdf = Path(letter["pdf_path"]).read_bytes()
        pub = Publication(
            letter_id=letter["letter_id"],
            recipient_kind=letter["recipient_kind"],
            recipient_id=normalize_recipient_id(letter["recipient_kind"], letter["recipient_id"]),
            language=letter["language"],
            subject=letter["pdf_subject"] or renderer.subject(letter),
            message_type_id=message_type_id,
            registered=letter["registered"],
            pdf=pdf,
            filename=letter["pdf_filename"] or f"{letter['letter_id']}.pdf",
        )
        return letter, client.publish(pub)

    # Keyset pages: what this loop changes (status, channel) only touches letters already read.
    letters = iter_letters_in_claim(
        conn, run_id, chunk, where="channel = 'ebox' AND rendered_at IS NOT NULL", page=_PUBLISH_PAGE
    )
    count = 0
    outcomes: Counter = Counter()
    answered: list[tuple[str, object]] = []
    conflicts: list[dict] = []  # answered 409: settled below, once the chunk is through
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        try:
            while page := list(islice(letters, _PUBLISH_PAGE)):
                if renderer is None and any(not letter["pdf_subject"] for letter in page):
                    from include.dijlepost.rendering import LetterRenderer

                    renderer = LetterRenderer()
                with conn.cursor() as cur:
                    marked = outbox.mark_ebox_in_flight(
                        cur, run_id, [letter["letter_id"] for letter in page], ctx
                    )
                conn.commit()
                page = [
                    letter for letter in page if letter["letter_id"] in marked
                ]  # still this run's, now in flight
                count += len(page)
                for letter, result in pool.map(publish, page):
                    if result.kind == "already_published":
                        conflicts.append(
                            {k: letter[k] for k in ("letter_id", "recipient_kind", "recipient_id")}
                        )
                        continue
                    outcomes[result.kind] += 1
                    answered.append((letter["letter_id"], result))
                    if len(answered) >= _RECORD_EVERY:
                        _record_publications(conn, ctx, run_id, answered)
                        answered = []
        finally:  # what the eBox answered is recorded even when a later call fails the task
            _record_publications(conn, ctx, run_id, answered)
    if not count:
        return {"chunk": chunk, "letters": 0}
    if conflicts:  # a failed task left them in_flight: its retry reads the same 409s again
        settled = settle_already_published(client, conflicts)
        outcomes.update(result.kind for _, result in settled)
        _record_publications(conn, ctx, run_id, settled)
    logfmt.emit("ebox_chunk_outcomes", chunk=chunk, **dict(outcomes))
    return {"chunk": chunk, "letters": count, **dict(sorted(outcomes.items()))}


def settle_already_published(client, letters: list[dict]) -> list[tuple[str, object]]:
    """What a 409 meant, letter by letter.

    A 409 says the eBox holds the letter (its Idempotency-Key was used before), not what it answered
    the first time, and that first answer may have been lost: a `201 NO_DIGITAL_USER` lost that way
    would leave the letter "delivered" to someone who never opens the eBox. The federation search
    tells them apart without a second publication:
      - active eBox with a `lastConnectionDate`: `already_published` (delivered);
      - active eBox, no `lastConnectionDate`: the recipient NO_DIGITAL_USER describes,
        `never_connected`, rerouted to paper in the same run;
      - no active eBox any more: `no_active_ebox`, also on paper (nobody will read it there).
    When the search is unavailable the letter is given back to the outbox (`retry_later`, still
    `in_flight`) and the next run asks again; any other eBox error fails the task, as in the
    activation check."""
    from include.dijlepost.ebox.client import EboxUnavailableError, PublishOutcome

    by_kind: dict[str, dict[str, str]] = {}
    for letter in letters:
        by_kind.setdefault(letter["recipient_kind"], {})[letter["letter_id"]] = normalize_recipient_id(
            letter["recipient_kind"], letter["recipient_id"]
        )
    settled: list[tuple[str, object]] = []
    for kind, recipients in sorted(by_kind.items()):
        try:
            found = client.lookup_activation(kind, sorted(set(recipients.values())))
        except EboxUnavailableError as exc:  # its message names the call and the status, never an id
            reason = f"answered 409 and the activation lookup failed: {exc}"
            settled += [
                (lid, PublishOutcome("retry_later", code="CONFLICT", message=reason)) for lid in recipients
            ]
            continue
        for letter_id, recipient_id in recipients.items():
            activation = found[recipient_id]  # lookup_activation answers for every id asked
            if not activation.active:
                kind_of = "no_active_ebox"
            elif activation.last_connection:
                kind_of = "already_published"
            else:
                kind_of = "never_connected"
            settled.append((letter_id, PublishOutcome(kind_of, code="CONFLICT")))
    rerouted = Counter(r.kind for _, r in settled if r.kind in _TO_PAPER)
    if rerouted:
        # Counts only. `lastConnectionDate` of citizenEboxConsents/search is assumed, not verified
        # (docs/ebox.md): a run where every citizen 409 lands here is the sign to look at.
        log.warning(
            "eBox 409s settled on paper by the federation search: %s of %d", dict(rerouted), len(settled)
        )
    return settled


# Answers are recorded in groups, one transaction each: a letter the eBox accepted but whose answer
# was not recorded yet stays `in_flight`, and its retry gets 409 for the same Idempotency-Key.
_RECORD_EVERY = 100
_PUBLISH_PAGE = 500

# The answers that put a letter on paper because the eBox will not reach its recipient, and why.
_TO_PAPER = {
    "no_digital_user": "the eBox answered NO_DIGITAL_USER: the recipient never opened the eBox",
    "never_connected": "the eBox answered 409 (published before, the first answer lost) and the "
    "federation search shows no lastConnectionDate: the recipient never opened the eBox",
    "no_active_ebox": "the eBox answered 409 (published before, the first answer lost) and the "
    "federation search finds no active eBox for the recipient any more",
}


def _record_publications(conn, ctx: RunContext, run_id: str, answered: list[tuple[str, object]]) -> None:
    if not answered:
        return
    with conn.cursor() as cur:
        # A 409 settled as delivered has no expirationDate of its own: the first answer was lost.
        delivered = [
            (lid, r.message_id, r.kind, r.expires_at)
            for lid, r in answered
            if r.kind in ("published", "already_published")
        ]
        if delivered:
            outbox.mark_delivered_ebox(cur, ctx, run_id, delivered)
        to_paper = [(lid, _TO_PAPER[r.kind], r.kind) for lid, r in answered if r.kind in _TO_PAPER]
        if to_paper:
            outbox.reroute_to_paper(cur, ctx, run_id, to_paper)
        for letter_id, result in answered:
            if result.kind == "rejected":  # a 400, or a 413 for a message larger than the eBox accepts
                outbox.mark_ebox_rejected(
                    cur, ctx, letter_id, run_id, f"ebox rejected {result.code}: {result.message}"
                )
            elif result.kind not in ("published", "already_published", *_TO_PAPER):
                # retry_later: the eBox did not answer; the letter goes back to the outbox for the next run
                outbox.release_for_retry(
                    cur, ctx, letter_id, run_id, f"ebox: {result.code or ''} {result.message or ''}".strip()
                )
    conn.commit()
