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
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

from include.dijlepost import logfmt, outbox
from include.dijlepost.outbox import RunContext, iter_letters_in_claim
from include.dijlepost.recipients import InvalidRecipientId, normalize_recipient_id, pseudonym
from include.dijlepost.states import Status, sql_list
from include.dijlepost.work import ChunkWork

if TYPE_CHECKING:  # for annotations only; the code imports the client where it uses it
    from include.dijlepost.ebox.client import Publication, PublishOutcome

log = logging.getLogger("dijlepost.ebox")


# --------------------------------------------------------------------------- message types


def check_message_types(conn, work: ChunkWork, *, client) -> dict:
    """Every letter type the work's wave may publish has a message type the eBox registers for this
    sender.

    The letter types are the wave's own and those of the department's letters still waiting
    (pending or processing). Each must have a `messageTypeId` in `wave.ebox_message_types`, listed
    by the eBox's `referenceData/messageTypes` (read once a day, `EboxClient.message_types`) for
    this client's organisation and application. Anything else raises EboxConfigurationError naming
    the letter type, before any letter is claimed or published; an unavailable registry raises
    EboxUnavailableError (the task is retried).

    Returns `{"letter_types": {letter_type: message_type_id}, "validity": {message_type_id:
    "5 year" or None}, "registered": number of types in the registry}`."""
    from include.dijlepost.ebox.client import EboxConfigurationError

    wave = work.wave
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


def check_activation(conn, work: ChunkWork, *, client, freshness: timedelta) -> dict:
    """Make sure every valid recipient of the claim (or of the work's chunk) has an activation check
    younger than `freshness`. Chunks check their own recipients: a recipient in two chunks is looked up
    by the first and found fresh in the cache by the second (or, at the same moment, looked up twice)."""
    key, claim_id, chunk = work.pseudonym_key, work.claim_id, work.chunk
    wanted: dict[str, tuple[str, str]] = {}
    with conn.cursor() as cur:  # only the recipients, never the letters: memory stays small for big waves
        cur.execute(
            "SELECT DISTINCT recipient_kind, recipient_id FROM letters "
            f"WHERE claim_run_id = %s AND status = {Status.PROCESSING.sql}"
            + (" AND claim_chunk = %s" if chunk is not None else ""),
            (claim_id,) if chunk is None else (claim_id, chunk),
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
    looked_up: Counter[str] = Counter()
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


class _Gate:
    """What the threads of one delivery share: whether to keep sending.

    It stops on a refusal that is not the letters' (EboxConfigurationError), on the circuit
    breaker's giving up (EboxOutageError), and when `repeat_limit` letters in a row got the very
    same refusal (status, code and message) before the eBox accepted any letter of the task: that is
    a refusal of the request (sender, message type, format), not of the letters."""

    def __init__(self, repeat_limit: int):
        self.repeat_limit = repeat_limit
        self._lock = threading.Lock()
        self.error: Exception | None = None
        self.accepted = False
        self._same: Counter = Counter()

    @property
    def stopped(self) -> bool:
        return self.error is not None

    def stop(self, error: Exception) -> None:
        with self._lock:
            if self.error is None:
                self.error = error

    def observe(self, result) -> None:
        from include.dijlepost.ebox.client import EboxConfigurationError

        with self._lock:
            if result.kind in _ACCEPTED:
                self.accepted = True
                return
            if result.kind != "rejected" or self.accepted:
                return
            signature = (result.status, result.code, result.message)
            self._same[signature] += 1
            if self._same[signature] >= self.repeat_limit and self.error is None:
                self.error = EboxConfigurationError(
                    f"the eBox refused {self._same[signature]} letters in a row with the same answer before "
                    f"accepting any (HTTP {result.status} {result.code}: {result.message}): a refusal of the "
                    "request, not of the letters; check the eBox Connection (extras 'sender_organization_id', "
                    "'sender_application_id', the certificate), ebox_message_types in waves.py and the "
                    "request format",
                    "ebox_message_types",
                )


def deliver_chunk_to_ebox(
    conn,
    work: ChunkWork,
    *,
    client,
    renderer=None,
    concurrency: int = 4,
    refusal_repeat_limit: int = 3,
) -> dict:
    """Publish the eBox letters of the work's chunk, `_PUBLISH_PAGE` at a time (memory follows the page, not the
    chunk). A page's `in_flight` is committed before its first call, so that no later decision can
    send a copy on paper of a letter the eBox may already hold.

    Every answer ends where `client.ANSWERS` puts it: accepted letters are delivered (or on paper
    for NO_DIGITAL_USER), refused letters quarantined, 409s settled by the federation search,
    unconfirmed answers published once more with the same key (a 409 then settles them, or they
    wait in flight for the next run). When the task must stop (a refusal of the sender, application,
    credentials or request; the eBox unavailable past the outage budget) no further call leaves,
    every letter of the chunk not finished goes back to `pending` with the reason, none is
    quarantined, and the error is raised: EboxConfigurationError or EboxOutageError.

    The subject and file name come from the rendering; `renderer` (or None: made on demand) is only
    needed for letters rendered before they were stored."""
    delivery = _ChunkDelivery(conn, work, client, renderer, _Gate(refusal_repeat_limit))
    # Keyset pages: what the delivery changes (status, channel) only touches letters already read.
    letters = iter_letters_in_claim(
        conn,
        work.claim_id,
        work.chunk,
        where="channel = 'ebox' AND rendered_at IS NOT NULL",
        page=_PUBLISH_PAGE,
    )
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        try:
            delivery.publish_letters(pool, letters)
            delivery.publish_unconfirmed_again(pool)
        finally:  # what the eBox answered is recorded even when a later call fails the task
            delivery.record_answers()
    error = delivery.gate.error
    if error is not None:
        delivery.give_back_chunk(error)
        raise error
    return delivery.settle_chunk()


class _ChunkDelivery:
    """One chunk's publication: the letters it put in flight and sent, and where each answer goes.

    `publish_letter` runs in the pool's threads; everything else, `take_answer` included, runs in the
    task's own thread, which alone uses the database connection."""

    def __init__(self, conn, work: ChunkWork, client, renderer, gate: _Gate):
        self.conn, self.client, self.renderer, self.gate = conn, client, renderer, gate
        self.wave, self.claim_id, self.ctx, self.chunk = work.wave, work.claim_id, work.ctx, work.chunk
        self.letter_count = 0
        self.outcomes: Counter = Counter()
        self.answered: list[tuple[str, PublishOutcome]] = []
        self.conflicts: list[dict] = []  # answered 409: settled once the chunk is through
        self.unconfirmed: list[tuple[dict, PublishOutcome]] = []  # no contract messageId: published once more
        self.held: list[tuple[str, PublishOutcome]] = []  # refusals seen before the eBox accepted any letter
        self.fresh: set[str] = set()  # letters this task put in flight (not in flight before it)
        self.sent_ids: set[str] = set()

    def publish_letters(self, pool: ThreadPoolExecutor, letters) -> None:
        """Page by page: put the page's letters in flight, publish them, take the answers."""
        while not self.gate.stopped and (page := list(islice(letters, _PUBLISH_PAGE))):
            if self.renderer is None and any(not item["pdf_subject"] for item in page):
                from include.dijlepost.rendering import LetterRenderer

                self.renderer = LetterRenderer()
            for letter, result, sent in pool.map(self.publish_letter, self.put_in_flight(page)):
                self.take_answer(letter, result, sent)

    def put_in_flight(self, page: list[dict]) -> list[dict]:
        """The page's letters still this run's, their `in_flight` committed before any is published."""
        with self.conn.cursor() as cur:
            marked = outbox.mark_ebox_in_flight(
                cur, self.claim_id, [item["letter_id"] for item in page], self.ctx
            )
        self.conn.commit()
        page = [item for item in page if item["letter_id"] in marked]
        self.fresh.update(item["letter_id"] for item in page if item["ebox_state"] is None)
        self.letter_count += len(page)
        return page

    def publish_letter(self, letter: dict) -> tuple[dict, PublishOutcome, bool]:
        """The eBox's answer to the letter's publication, and whether a request may have left."""
        from include.dijlepost.ebox.client import EboxConfigurationError, EboxOutageError, PublishOutcome

        if self.gate.stopped:
            return letter, PublishOutcome("not_sent", message=str(self.gate.error)), False
        message_type_id = (self.wave.ebox_message_types.get(letter["letter_type"]) or "").strip()
        if not message_type_id:  # check_message_types stops such a run before its claim
            error = EboxConfigurationError(
                f"wave {self.wave.department}: letter type {letter['letter_type']!r} has "
                "no eBox message type (ebox_message_types in waves.py)",
                "ebox_message_types",
            )
            self.gate.stop(error)
            return letter, PublishOutcome("not_sent", message=str(error)), False
        try:
            result = self.client.publish(self.publication(letter, message_type_id))
        except (EboxConfigurationError, EboxOutageError) as exc:
            self.gate.stop(exc)
            return letter, PublishOutcome("not_sent", message=str(exc)), exc.sent
        self.gate.observe(result)
        return letter, result, True

    def publication(self, letter: dict, message_type_id: str) -> Publication:
        """The eBox publication of a rendered letter: its PDF, subject and file name."""
        from include.dijlepost.ebox.client import Publication

        pdf = Path(letter["pdf_path"]).read_bytes()
        return Publication(
            letter_id=letter["letter_id"],
            recipient_kind=letter["recipient_kind"],
            recipient_id=normalize_recipient_id(letter["recipient_kind"], letter["recipient_id"]),
            language=letter["language"],
            subject=letter["pdf_subject"] or self.renderer.subject(letter),
            message_type_id=message_type_id,
            registered=letter["registered"],
            pdf=pdf,
            filename=letter["pdf_filename"] or f"{letter['letter_id']}.pdf",
        )

    def take_answer(self, letter: dict, result: PublishOutcome, sent: bool) -> None:
        """Sort the answer to a letter's publication; record the answers every `_RECORD_EVERY`."""
        if sent:
            self.sent_ids.add(letter["letter_id"])
        if result.kind == "already_published":
            self.conflicts.append({k: letter[k] for k in ("letter_id", "recipient_kind", "recipient_id")})
        elif result.kind == "unconfirmed":
            self.unconfirmed.append((letter, result))
        elif result.kind == "not_sent":
            pass  # given back with the reason when the chunk stops
        elif result.kind == "rejected" and not self.gate.accepted:
            self.held.append((letter["letter_id"], result))
        else:
            self.outcomes[result.kind] += 1
            self.answered.append((letter["letter_id"], result))
        if self.gate.accepted and self.held and not self.gate.stopped:
            self.outcomes["rejected"] += len(self.held)
            self.answered += self.held
            self.held.clear()
        if len(self.answered) >= _RECORD_EVERY:
            self.record_answers()

    def record_answers(self) -> None:
        _record_publications(self.conn, self.ctx, self.claim_id, self.answered)
        self.answered = []

    def publish_unconfirmed_again(self, pool: ThreadPoolExecutor) -> None:
        """One more publication with the same Idempotency-Key: a 409 says the eBox holds the letter
        (settled like any 409), a contract 201 that the first never arrived."""
        if not self.unconfirmed:
            return
        _record_unconfirmed(self.conn, self.ctx, self.unconfirmed)
        if self.gate.stopped:
            return
        first = {letter["letter_id"]: result for letter, result in self.unconfirmed}
        again, self.unconfirmed = [letter for letter, _ in self.unconfirmed], []
        for letter, result, sent in pool.map(self.publish_letter, again):
            if result.kind == "unconfirmed" and not result.message_id:
                result = replace(result, message_id=first[letter["letter_id"]].message_id)
            self.take_answer(letter, result, sent)

    def give_back_chunk(self, error: Exception) -> None:
        """The task stops on `error`: every letter of the chunk not finished goes back to `pending`."""
        returned = _give_back(
            self.conn, self.ctx, self.claim_id, self.chunk, error, self.fresh - self.sent_ids
        )
        logfmt.emit(
            "ebox_chunk_stopped",
            chunk=self.chunk,
            returned_to_pending=returned,
            reason=type(error).__name__,
            **dict(self.outcomes),
        )

    def settle_chunk(self) -> dict:
        """Once every letter is published: the held refusals, the letters unconfirmed twice and the 409s."""
        if self.held:  # the eBox accepted none of the chunk, and the refusals were not all the same
            self.outcomes["rejected"] += len(self.held)
            _record_publications(self.conn, self.ctx, self.claim_id, self.held)
        if not self.letter_count:
            return {"chunk": self.chunk, "letters": 0}
        if self.unconfirmed:  # unconfirmed twice: they wait in flight for the next run, which asks again
            self.outcomes["unconfirmed"] += len(self.unconfirmed)
            self.release_unconfirmed()
        if self.conflicts:  # a failed task left them in_flight: its retry reads the same 409s again
            self.settle_conflicts()
        logfmt.emit("ebox_chunk_outcomes", chunk=self.chunk, **dict(self.outcomes))
        return {"chunk": self.chunk, "letters": self.letter_count, **dict(sorted(self.outcomes.items()))}

    def release_unconfirmed(self) -> None:
        with self.conn.cursor() as cur:
            for letter, result in self.unconfirmed:
                outbox.release_for_retry(
                    cur,
                    self.ctx,
                    letter["letter_id"],
                    self.claim_id,
                    f"ebox unconfirmed: {result.message}",
                    details={"ebox": "unconfirmed", "message_id": result.message_id},
                )
        self.conn.commit()

    def settle_conflicts(self) -> None:
        """The 409s, told apart by the federation search (`settle_already_published`)."""
        candidates = _candidate_message_ids(self.conn, [c["letter_id"] for c in self.conflicts])
        for letter in self.conflicts:
            letter["candidate_message_id"] = candidates.get(letter["letter_id"])
        settled = settle_already_published(self.client, self.conflicts)
        self.outcomes.update(result.kind for _, result in settled)
        _record_publications(self.conn, self.ctx, self.claim_id, settled)


def account_for_delivery(conn, work: ChunkWork, result: dict) -> dict | None:
    """The log of a `deliver_to_ebox` task after `deliver_chunk_to_ebox`: its letters by id (so that an
    auditor finds a letter in the log that sent it) and, on a rerun (a cleared task, a retry), what the
    earlier tries did. Returns the task's result, or None when it had nothing to do (a skip)."""
    from include.dijlepost.task_letters import EBOX_EVENTS, account_for_task, done_earlier

    earlier = account_for_task(conn, work, EBOX_EVENTS, "ebox_letters", "ebox_delivered_earlier")
    if not result["letters"]:
        if earlier:
            return done_earlier(result, earlier)
        reason = "no rendered eBox letters in this chunk"
        logfmt.emit("ebox_delivery_skipped", department=work.department, chunk=work.chunk, reason=reason)
        return None
    logfmt.emit("ebox_delivered", department=work.department, **result)
    return result


def _record_unconfirmed(conn, ctx: RunContext, unconfirmed: list[tuple[dict, PublishOutcome]]) -> None:
    """An `ebox_unconfirmed` event per letter: what came back instead of a contract answer."""
    with conn.cursor() as cur:
        outbox.record_events(
            cur,
            ctx,
            (
                (
                    letter["letter_id"],
                    "ebox_unconfirmed",
                    {"status": result.status, "reason": result.message, "message_id": result.message_id},
                )
                for letter, result in unconfirmed
            ),
        )
    conn.commit()
    log.warning(
        "eBox: %d publications answered without a contract messageId (%s); each is published once more "
        "with the same Idempotency-Key",
        len(unconfirmed),
        dict(Counter(f"HTTP {r.status}: {r.message}" for _, r in unconfirmed)),
    )


def _candidate_message_ids(conn, letter_ids: list[str]) -> dict[str, str]:
    """The messageId an unconfirmed answer carried, per letter (its latest `ebox_unconfirmed` event)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT ON (letter_id) letter_id, details->>'message_id' FROM letter_events "
            "WHERE event = 'ebox_unconfirmed' AND letter_id = ANY(%s) ORDER BY letter_id, event_id DESC",
            (letter_ids,),
        )
        found = {lid: mid for lid, mid in cur.fetchall() if mid}
    conn.commit()
    return found


def _give_back(
    conn, ctx: RunContext, claim_id: str, chunk: int | None, error: Exception, never_sent: set[str]
) -> int:
    """Every eBox letter of the chunk (None: of the claim) not finished goes back to `pending` with the
    reason; those whose publication never left (and that were not in flight before) lose their
    `in_flight` too."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT letter_id FROM letters WHERE claim_run_id = %s "
            + ("AND claim_chunk = %s " if chunk is not None else "")
            + f"AND status = {Status.PROCESSING.sql} AND channel = 'ebox' ORDER BY id",
            (claim_id,) if chunk is None else (claim_id, chunk),
        )
        waiting = [r[0] for r in cur.fetchall()]
        reason = f"ebox: {type(error).__name__}: {error}"[:1000]
        for letter_id in waiting:
            outbox.release_for_retry(
                cur, ctx, letter_id, claim_id, reason, never_sent=letter_id in never_sent
            )
    conn.commit()
    log.error("eBox delivery of chunk %s stopped: %s; %d letters back to pending", chunk, error, len(waiting))
    return len(waiting)


def settle_already_published(client, letters: list[dict]) -> list[tuple[str, PublishOutcome]]:
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
    candidates = {x["letter_id"]: x["candidate_message_id"] for x in letters if x.get("candidate_message_id")}
    for letter in letters:
        by_kind.setdefault(letter["recipient_kind"], {})[letter["letter_id"]] = normalize_recipient_id(
            letter["recipient_kind"], letter["recipient_id"]
        )
    settled: list[tuple[str, PublishOutcome]] = []
    for kind, recipients in sorted(by_kind.items()):
        try:
            found = client.lookup_activation(kind, sorted(set(recipients.values())))
        except EboxUnavailableError as exc:  # its message names the call and the status, never an id
            reason = f"answered 409 and the activation lookup failed: {exc}"
            settled += [
                (lid, PublishOutcome("retry_later", code="CONFLICT", message=reason)) for lid in recipients
            ]
            continue
        delivered: list[str] = []
        for letter_id, recipient_id in recipients.items():
            activation = found[recipient_id]  # lookup_activation answers for every id asked
            if not activation.active:
                kind_of = "no_active_ebox"
            elif activation.last_connection:
                kind_of = "already_published"
                delivered.append(letter_id)
                continue
            else:
                kind_of = "never_connected"
            settled.append((letter_id, PublishOutcome(kind_of, code="CONFLICT")))
        settled += _message_ids_of_conflicts(client, kind, recipients, delivered, candidates)
    rerouted = Counter(r.kind for _, r in settled if r.kind in _TO_PAPER)
    if rerouted:
        # Counts only. `lastConnectionDate` of citizenEboxConsents/search is assumed, not verified
        # (docs/ebox.md): a run where every citizen 409 lands here is the sign to look at.
        log.warning(
            "eBox 409s settled on paper by the federation search: %s of %d", dict(rerouted), len(settled)
        )
    return settled


# Why a letter settled from a 409 has no message id (its `delivered_ebox` event says it).
NO_MESSAGE_ID = (
    "a 409 repeats no messageId and searchMessageStatus needs one: the read status cannot be asked; "
    "the follow-up of its letter type decides (Wave.followup_without_message_id)"
)


def _message_ids_of_conflicts(
    client, kind: str, recipients: dict[str, str], delivered: list[str], candidates: dict[str, str]
) -> list[tuple[str, PublishOutcome]]:
    """The 409s settled as delivered, each with its message id where the published searches give it.

    None of the published searches finds a message by its Idempotency-Key or recipient for a sender
    (`searchMessageStatus` needs the messageId; `ebox/messages` is the recipient's own view), so a
    message id is only known when an unconfirmed answer carried one: `searchMessageStatus` then
    confirms it for this recipient. Otherwise the letter is delivered without one, and says why."""
    from include.dijlepost.ebox.client import EboxUnavailableError, PublishOutcome

    asked = [(lid, candidates[lid]) for lid in delivered if lid in candidates]
    confirmed: dict[str, dict] = {}
    if asked:
        try:
            answers = client.search_message_status([(mid, kind, recipients[lid]) for lid, mid in asked])
        except EboxUnavailableError:
            answers = []
        by_message = {a.get("messageId"): a for a in answers if isinstance(a, dict)}
        confirmed = {lid: by_message[mid] for lid, mid in asked if mid in by_message}
    out = []
    for letter_id in delivered:
        status = confirmed.get(letter_id)
        if status is not None:
            out.append(
                (
                    letter_id,
                    PublishOutcome(
                        "already_published",
                        message_id=status["messageId"],
                        code="CONFLICT",
                        message="messageId of an unconfirmed answer, confirmed by searchMessageStatus",
                        expires_at=status.get("expirationDate"),
                    ),
                )
            )
        else:
            out.append(
                (letter_id, PublishOutcome("already_published", code="CONFLICT", message=NO_MESSAGE_ID))
            )
    return out


# Answers are recorded in groups, one transaction each: a letter the eBox accepted but whose answer
# was not recorded yet stays `in_flight`, and its retry gets 409 for the same Idempotency-Key.
_RECORD_EVERY = 100
_PUBLISH_PAGE = 500
# The answers that show the eBox takes this task's publications.
_ACCEPTED = ("published", "no_digital_user", "already_published")

# The answers that put a letter on paper because the eBox will not reach its recipient, and why.
_TO_PAPER = {
    "no_digital_user": "the eBox answered NO_DIGITAL_USER: the recipient never opened the eBox",
    "never_connected": "the eBox answered 409 (published before, the first answer lost) and the "
    "federation search shows no lastConnectionDate: the recipient never opened the eBox",
    "no_active_ebox": "the eBox answered 409 (published before, the first answer lost) and the "
    "federation search finds no active eBox for the recipient any more",
}


def _record_publications(
    conn, ctx: RunContext, claim_id: str, answered: list[tuple[str, PublishOutcome]]
) -> None:
    if not answered:
        return
    with conn.cursor() as cur:
        # A 409 settled as delivered has no expirationDate of its own: the first answer was lost.
        delivered = [
            (
                lid,
                r.message_id,
                r.kind,
                r.expires_at,
                {"message_id_source": "searchMessageStatus"}
                if r.kind == "already_published" and r.message_id
                else {"no_message_id": r.message}
                if r.kind == "already_published"
                else None,
            )
            for lid, r in answered
            if r.kind in ("published", "already_published")
        ]
        if delivered:
            outbox.mark_delivered_ebox(cur, ctx, claim_id, delivered)
        to_paper = [(lid, _TO_PAPER[r.kind], r.kind) for lid, r in answered if r.kind in _TO_PAPER]
        if to_paper:
            outbox.reroute_to_paper(cur, ctx, claim_id, to_paper)
        for letter_id, result in answered:
            if result.kind == "rejected":  # a 400, or a 413 for a message larger than the eBox accepts
                outbox.mark_ebox_rejected(
                    cur, ctx, letter_id, claim_id, f"ebox rejected {result.code}: {result.message}"
                )
            elif result.kind not in ("published", "already_published", *_TO_PAPER):
                # retry_later: the eBox did not answer; the letter goes back to the outbox for the next run
                outbox.release_for_retry(
                    cur, ctx, letter_id, claim_id, f"ebox: {result.code or ''} {result.message or ''}".strip()
                )
    conn.commit()
