"""The stages of a wave run, as plain functions of a database connection and the external clients.

DAG tasks (see `dag_factory.py`) call exactly one of these each and log what it returns. Nothing here
imports Airflow, so every stage is tested directly against PostgreSQL, the eBox sandbox and sshd.
Each stage is idempotent: it only acts on letters still in the state it expects, and every external
side effect is keyed by the letter (eBox Idempotency-Key) or by a batch recorded before upload.
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from pathlib import Path

from include.dijlepost import logfmt
from include.dijlepost.outbox import RunContext, iter_letters_in_claim, quarantine, record_events, release_for_retry
from include.dijlepost.recipients import InvalidRecipientId, normalize_recipient_id, pseudonym
from include.dijlepost.rollout import RolloutState
from include.dijlepost.routing import LetterFacts, decide
from include.dijlepost.waves import Wave

log = logging.getLogger("dijlepost.pipeline")


# --------------------------------------------------------------------------- eBox activation

def check_activation(conn, client, key: bytes, run_id: str, freshness: timedelta, ctx: RunContext,
                     chunk: int | None = None) -> dict:
    """Make sure every valid recipient of the claim (or of one chunk) has an activation check younger
    than `freshness`. Chunks check their own recipients: a recipient in two chunks is looked up by the
    first and found fresh in the cache by the second (or, at the same moment, looked up twice)."""
    wanted: dict[str, tuple[str, str]] = {}
    with conn.cursor() as cur:  # only the recipients, never the letters: memory stays small for big waves
        cur.execute("SELECT DISTINCT recipient_kind, recipient_id FROM letters "
                    "WHERE claim_run_id = %s AND status = 'processing'"
                    + (" AND claim_chunk = %s" if chunk is not None else ""),
                    (run_id,) if chunk is None else (run_id, chunk))
        recipients = cur.fetchall()
    conn.commit()
    for kind, raw_id in recipients:
        try:
            rid = normalize_recipient_id(kind, raw_id)
        except InvalidRecipientId:
            continue
        wanted[pseudonym(key, kind, rid)] = (kind, rid)
    with conn.cursor() as cur:
        cur.execute("SELECT recipient_pseudonym FROM ebox_activation WHERE recipient_pseudonym = ANY(%s) "
                    "AND checked_at >= now() - %s", (list(wanted), freshness))
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
                rows)
        conn.commit()
        looked_up[f"{kind}_checked"] = len(rows)
        looked_up[f"{kind}_active"] = sum(1 for r in rows if r[2])
    return {"recipients": len(wanted), "cached_fresh": len(fresh), **looked_up}


# --------------------------------------------------------------------------- decision

def _address_complete(letter: dict) -> bool:
    from include.dijlepost.intake import KNOWN_COUNTRIES

    return (all((letter.get(f) or "").strip() for f in ("recipient_name", "street", "postal_code", "city"))
            and (letter.get("country") or "") in KNOWN_COUNTRIES)


def decide_claim(conn, wave: Wave, state: RolloutState, key: bytes, run_id: str, ctx: RunContext,
                 chunk: int | None = None) -> dict:
    """Route every undecided letter of the claim (or of one chunk) with the ordered rules; store
    channel, rule, reason. Chunk by chunk and page by page, each page committed on its own, so memory
    grows neither with the size of the wave nor with the size of a chunk."""
    if chunk is None:
        with conn.cursor() as cur:
            cur.execute("SELECT DISTINCT claim_chunk FROM letters WHERE claim_run_id = %s AND status = 'processing' "
                        "AND decided_at IS NULL ORDER BY 1", (run_id,))
            chunks = [r[0] for r in cur.fetchall()]
        conn.commit()
    else:
        chunks = [chunk]
    by_rule: Counter = Counter()
    channels: Counter = Counter()
    for chunk in chunks:
        _decide_chunk(conn, wave, state, key, run_id, chunk, ctx, by_rule, channels)
    return {"decided": sum(channels.values()), "by_channel": dict(sorted(channels.items())),
            "by_rule": dict(sorted(by_rule.items())), "phase": state.phase}


_DECIDE_PAGE = 2000


def _decide_chunk(conn, wave: Wave, state: RolloutState, key: bytes, run_id: str, chunk: int, ctx: RunContext,
                  by_rule: Counter, channels: Counter) -> None:
    """Decide the chunk `_DECIDE_PAGE` letters at a time, each page committed on its own (a page read
    after an earlier page's commit is unaffected by it: pages follow the id)."""
    letters = iter_letters_in_claim(conn, run_id, chunk, where="decided_at IS NULL", page=_DECIDE_PAGE)
    while page := list(islice(letters, _DECIDE_PAGE)):
        _decide_page(conn, wave, state, key, run_id, page, ctx, by_rule, channels)


def _decide_page(conn, wave: Wave, state: RolloutState, key: bytes, run_id: str, letters: list[dict],
                 ctx: RunContext, by_rule: Counter, channels: Counter) -> None:
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
        cur.execute("SELECT recipient_pseudonym FROM paper_exemptions WHERE recipient_pseudonym = ANY(%s)",
                    (list(set(pseudonyms.values())),))
        exempt = {r[0] for r in cur.fetchall()}
        cur.execute("SELECT recipient_pseudonym, active FROM ebox_activation WHERE recipient_pseudonym = ANY(%s)",
                    (list(set(pseudonyms.values())),))
        active = dict(cur.fetchall())
    updates, quarantined, events = [], [], []
    for letter in letters:
        letter_id = letter["letter_id"]
        p = pseudonyms[letter_id]
        facts = LetterFacts(
            letter_id=letter_id, recipient_pseudonym=p, recipient_id_error=id_errors[letter_id],
            address_complete=_address_complete(letter), registered=letter["registered"],
            paper_exempt=p in exempt, ebox_active=active.get(p), ebox_state=letter["ebox_state"],
            registered_via_ebox=wave.registered_via_ebox, followup_of=letter.get("followup_of"))
        d = decide(facts, state)
        by_rule[d.rule] += 1
        events.append((letter_id, "decided", {"channel": d.channel or "quarantine", "rule": d.rule,
                                              "reason": d.reason, "phase": state.phase,
                                              "shadow_channel": d.shadow_channel, "recipient": p}))
        if d.channel is None:
            quarantined.append((letter_id, f"{d.rule}: {d.reason}"))
        updates.append((letter_id, d.channel, d.rule, d.reason, d.shadow_channel))
    with conn.cursor() as cur:
        # One set-based statement per chunk: a statement per letter costs a plan and an index probe
        # each, and turns quadratic while the planner's statistics still think the claim is empty.
        cur.execute(
            "UPDATE letters l SET rollout_phase = %s, channel = v.channel, decision_rule = v.rule, "
            "decision_reason = v.reason, shadow_channel = v.shadow, decided_at = now(), updated_at = now() "
            "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
            "AS v(letter_id, channel, rule, reason, shadow) "
            "WHERE l.letter_id = v.letter_id AND l.claim_run_id = %s AND l.status = 'processing'",
            (state.phase, *_columns(updates, 5), run_id))
        record_events(cur, ctx, events)
        for letter_id, reason in quarantined:
            quarantine(cur, ctx, letter_id, run_id, reason, stage="decide")
    conn.commit()
    channels.update(u[1] or "quarantine" for u in updates)


def _columns(rows: list[tuple], width: int) -> list[list]:
    """Rows as `width` column lists, for `unnest(%s::type[], ...)` set-based statements."""
    return [list(col) for col in zip(*rows)] if rows else [[] for _ in range(width)]


# --------------------------------------------------------------------------- rendering

def document_path(root: Path, letter: dict) -> Path:
    return root / letter["department"] / f"{letter['letter_id']}.pdf"


def _write_atomically(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write `data` to a new temporary file next to `path` and rename it onto `path`: a reader sees
    the old file or the whole new one. `sync=False` leaves the fsync to the caller (`_FileSystemSync`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_syncfs():
    """libc's syncfs(2) (Linux), or None where there is none."""
    import ctypes

    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
    syncfs.argtypes, syncfs.restype = [ctypes.c_int], ctypes.c_int
    return syncfs


_SYNCFS = _load_syncfs()


class _FileSystemSync:
    """Makes the files written under `root` durable in one go: `syncfs(2)` on the file system holding
    `root` instead of one fsync per file.

    Per-file fsync made every PDF its own write-back (and, on a journalled volume, its own journal
    commit) while the letters rendered; one syncfs per chunk writes them back together and waits for
    it. The descriptor is opened before the first file is written, so that syncfs also reports a
    write-back error that happened in the background while the chunk rendered (Linux >= 5.8 reports
    errors since the descriptor was opened). Files in a directory on another file system (a
    department directory that is a mount of its own) are fsynced one by one instead, and so is every
    file with `each_file` (DIJLEPOST_DOCUMENT_SYNC=file) or where libc has no syncfs."""

    def __init__(self, root: Path, each_file: bool = False):
        root.mkdir(parents=True, exist_ok=True)
        use_syncfs = _SYNCFS is not None and not each_file
        self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY) if use_syncfs else None
        self._device = os.fstat(self._fd).st_dev if self._fd is not None else None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def sync(self, paths) -> None:
        paths = [Path(p) for p in paths]
        if self._fd is not None:
            if _SYNCFS(self._fd) != 0:
                import ctypes

                errno = ctypes.get_errno()
                raise OSError(errno, f"syncfs of the document volume failed: {os.strerror(errno)}")
            covered = {d for d in {p.parent for p in paths} if os.stat(d).st_dev == self._device}
            paths = [p for p in paths if p.parent not in covered]
        for path in paths:
            _fsync_path(path)


def _fsync_path(path) -> None:
    """fsync a file or a directory by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directories(paths, root: Path) -> None:
    """fsync the directory of each of `paths` and the directories above it, up to the one holding
    `root`: a file renamed into a directory is only there for good once the directory is synced, and a
    directory created on a department's first run only once its parent is (POSIX; ext4 without a
    journal may lose either). The deepest first."""
    top = Path(root).absolute().parent
    directories: dict[Path, None] = {}
    for path in paths:
        for directory in Path(path).absolute().parents:
            if directory in directories:
                break
            directories[directory] = None
            if directory == top:
                break
    for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
        _fsync_path(directory)


def render_chunk(conn, renderer, document_root: Path, run_id: str, chunk: int, ctx: RunContext,
                 sync_each_file: bool = False) -> dict:
    """Render one PDF per decided letter of the chunk that has none yet; bad data is quarantined.
    The PDFs are durable before anything is recorded: one syncfs of the document volume, or an fsync
    per PDF with `sync_each_file` (see `_FileSystemSync`)."""
    from include.dijlepost.rendering import LetterDataError

    # Read page by page: memory follows the page, not the chunk (rendered_at is only set after the loop).
    letters = iter_letters_in_claim(conn, run_id, chunk, where="channel IS NOT NULL AND rendered_at IS NULL")
    rendered, failed = [], []
    volume = _FileSystemSync(document_root, sync_each_file)    # opened before the first write
    try:
        for letter in letters:
            try:
                doc = renderer.render(letter)
            except LetterDataError as exc:
                failed.append((letter["letter_id"], str(exc)))
                continue
            path = document_path(document_root, letter)
            _write_atomically(path, doc.pdf, sync=False)    # a failed write fails the task here
            rendered.append((letter["letter_id"], str(path), doc.sha256, doc.pages, doc.subject, doc.filename))
        # Nothing is recorded before every PDF of the chunk, and its rename, is on disk.
        volume.sync(path for _, path, *_ in rendered)
    finally:
        volume.close()
    _sync_directories((path for _, path, *_ in rendered), document_root)   # the renames too, before the record
    with conn.cursor() as cur:
        cur.execute(
            "UPDATE letters l SET pdf_path = v.path, pdf_sha256 = v.sha, pdf_pages = v.pages, "
            "pdf_subject = v.subject, pdf_filename = v.filename, rendered_at = now(), updated_at = now() "
            "FROM unnest(%s::text[], %s::text[], %s::text[], %s::int[], %s::text[], %s::text[]) "
            "AS v(letter_id, path, sha, pages, subject, filename) "
            "WHERE l.letter_id = v.letter_id AND l.claim_run_id = %s AND l.status = 'processing'",
            (*_columns(rendered, 6), run_id))
        record_events(cur, ctx, ((lid, "rendered", {"sha256": sha, "pages": pages})
                                 for lid, _, sha, pages, _, _ in rendered))
        for letter_id, reason in failed:
            quarantine(cur, ctx, letter_id, run_id, f"render: {reason}", stage="render")
    conn.commit()
    return {"chunk": chunk, "rendered": len(rendered), "quarantined": len(failed),
            "quarantine_reasons": dict(Counter(r.split(":")[0] for _, r in failed))}


# --------------------------------------------------------------------------- eBox delivery

def deliver_chunk_to_ebox(conn, client, renderer, wave: Wave, key: bytes, run_id: str, chunk: int,
                          ctx: RunContext, concurrency: int = 4) -> dict:
    """Publish the chunk's eBox letters, `_PUBLISH_PAGE` at a time (memory follows the page, not the
    chunk). A page's `in_flight` is committed before its first call, so that no later decision can
    send a copy on paper of a letter the eBox may already hold.

    The subject and file name come from the rendering; `renderer` (or None: made on demand) is only
    needed for letters rendered before they were stored."""
    from include.dijlepost.ebox.client import Publication

    def publish(letter: dict):
        pdf = Path(letter["pdf_path"]).read_bytes()
        pub = Publication(
            letter_id=letter["letter_id"], recipient_kind=letter["recipient_kind"],
            recipient_id=normalize_recipient_id(letter["recipient_kind"], letter["recipient_id"]),
            language=letter["language"], subject=letter["pdf_subject"] or renderer.subject(letter),
            message_type_id=wave.ebox_message_types.get(letter["letter_type"]),
            registered=letter["registered"], pdf=pdf,
            filename=letter["pdf_filename"] or f"{letter['letter_id']}.pdf")
        return letter, client.publish(pub)

    # Keyset pages: what this loop changes (status, channel) only touches letters already read.
    letters = iter_letters_in_claim(conn, run_id, chunk, where="channel = 'ebox' AND rendered_at IS NOT NULL",
                                    page=_PUBLISH_PAGE)
    count = 0
    outcomes: Counter = Counter()
    answered: list[tuple[str, object]] = []
    conflicts: list[dict] = []  # answered 409: settled below, once the chunk is through
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        try:
            while page := list(islice(letters, _PUBLISH_PAGE)):
                if renderer is None and any(not l["pdf_subject"] for l in page):
                    from include.dijlepost.rendering import LetterRenderer

                    renderer = LetterRenderer()
                with conn.cursor() as cur:
                    cur.execute("UPDATE letters SET ebox_state = 'in_flight', updated_at = now() "
                                "WHERE letter_id = ANY(%s) AND claim_run_id = %s AND status = 'processing' "
                                "RETURNING letter_id", ([l["letter_id"] for l in page], run_id))
                    marked = {r[0] for r in cur.fetchall()}
                conn.commit()
                page = [l for l in page if l["letter_id"] in marked]  # still this run's, now in flight
                count += len(page)
                for letter, result in pool.map(publish, page):
                    if result.kind == "already_published":
                        conflicts.append({k: letter[k] for k in ("letter_id", "recipient_kind", "recipient_id")})
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
            letter["recipient_kind"], letter["recipient_id"])
    settled: list[tuple[str, object]] = []
    for kind, recipients in sorted(by_kind.items()):
        try:
            found = client.lookup_activation(kind, sorted(set(recipients.values())))
        except EboxUnavailableError as exc:  # its message names the call and the status, never an id
            reason = f"answered 409 and the activation lookup failed: {exc}"
            settled += [(lid, PublishOutcome("retry_later", code="CONFLICT", message=reason)) for lid in recipients]
            continue
        for letter_id, recipient_id in recipients.items():
            activation = found[recipient_id]         # lookup_activation answers for every id asked
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
        log.warning("eBox 409s settled on paper by the federation search: %s of %d", dict(rerouted), len(settled))
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
    delivered = [(lid, r.message_id, r.kind) for lid, r in answered if r.kind in ("published", "already_published")]
    to_paper = [(lid, r.kind) for lid, r in answered if r.kind in _TO_PAPER]
    with conn.cursor() as cur:
        if delivered:
            cur.execute(
                "UPDATE letters l SET status = 'delivered_ebox', ebox_message_id = v.message_id, ebox_state = NULL, "
                "final_at = now(), updated_at = now() FROM unnest(%s::text[], %s::text[]) AS v(letter_id, message_id) "
                "WHERE l.letter_id = v.letter_id AND l.claim_run_id = %s AND l.status = 'processing' "
                "RETURNING l.letter_id", ([d[0] for d in delivered], [d[1] for d in delivered], run_id))
            changed = {r[0] for r in cur.fetchall()}
            record_events(cur, ctx, [(lid, "delivered_ebox", {"message_id": message_id, "answer": kind})
                                     for lid, message_id, kind in delivered if lid in changed])
        if to_paper:
            cur.execute(
                "UPDATE letters l SET channel = 'paper', ebox_state = 'no_digital_user', decision_rule = "
                "'no_digital_user', decision_reason = v.reason, updated_at = now() "
                "FROM unnest(%s::text[], %s::text[]) AS v(letter_id, reason) "
                "WHERE l.letter_id = v.letter_id AND l.claim_run_id = %s AND l.status = 'processing' "
                "RETURNING l.letter_id",
                ([lid for lid, _ in to_paper], [_TO_PAPER[kind] for _, kind in to_paper], run_id))
            changed = {r[0] for r in cur.fetchall()}
            record_events(cur, ctx, [(lid, "rerouted_to_paper", {"rule": "no_digital_user", "answer": kind})
                                     for lid, kind in to_paper if lid in changed])
        for letter_id, result in answered:
            if result.kind == "rejected":
                cur.execute("UPDATE letters SET ebox_state = 'rejected' WHERE letter_id = %s AND claim_run_id = %s "
                            "AND status = 'processing'", (letter_id, run_id))
                quarantine(cur, ctx, letter_id, run_id, f"ebox rejected {result.code}: {result.message}",
                           stage="ebox")
            elif result.kind not in ("published", "already_published", *_TO_PAPER):
                # retry_later: the eBox did not answer; the letter goes back to the outbox for the next run
                release_for_retry(cur, ctx, letter_id, run_id,
                                  f"ebox: {result.code or ''} {result.message or ''}".strip())
    conn.commit()


# --------------------------------------------------------------------------- print-house handoff

def assign_print_batches(conn, department: str, run_id: str, ctx: RunContext, max_letters: int,
                         max_mb: float | None = None, cutoff: str | None = None,
                         chunk: int | None = None) -> list[str]:
    """Record batch membership for the claim's rendered paper letters *before* any file is built, so a
    retry rebuilds exactly the same batch and no letter can end up in two batches. Batches are cut by
    postage class, print day (the wave's daily cut-off) and size: see `printhouse/handoff.py`."""
    from include.dijlepost.printhouse import handoff

    return handoff.assign_print_batches(conn, department, run_id, ctx, max_letters, max_mb, cutoff, chunk)


def pending_print_batches(conn, department: str, today=None, run_id: str | None = None,
                          chunk: int | None = None) -> list[str]:
    """Recorded, not yet uploaded batches whose print day has come (of the department, or of one chunk)."""
    from include.dijlepost.printhouse import handoff

    return handoff.pending_print_batches(conn, department, today, run_id, chunk)


def upload_print_batch(conn, sftp, remote_dir: str, work_dir: Path, batch_id: str, ctx: RunContext) -> dict:
    """Build the batch's zip from its recorded members, upload it atomically, then mark its letters."""
    from include.dijlepost.printhouse.batch import BatchLetter, address_lines, build_batch_zip, postage_class_for
    from include.dijlepost.printhouse.handoff import upload_checksum
    from include.dijlepost.printhouse.upload import upload_batch

    with conn.cursor() as cur:
        cur.execute("SELECT letter_id, pdf_path, pdf_sha256, pdf_pages, registered, recipient_name, street, "
                    "postal_code, city, country FROM letters WHERE print_batch_id = %s AND status = 'processing' "
                    "ORDER BY letter_id", (batch_id,))
        rows = cur.fetchall()
    conn.commit()
    if not rows:  # every member already final: an earlier attempt finished after the upload
        _mark_batch_uploaded(conn, batch_id, None, ctx, [])
        return {"batch_id": batch_id, "letters": 0}
    members = [BatchLetter(letter_id=r[0], pdf_path=Path(r[1]), pdf_sha256=r[2], pages=r[3],
                           postage_class=postage_class_for(r[4]), registered=r[4],
                           address_lines=address_lines(r[5], r[6], r[7], r[8], r[9]), country=r[9])
               for r in rows]
    built = build_batch_zip(batch_id, members, work_dir)
    result = upload_batch(sftp, built.path, remote_dir)
    # The checksum file goes last: its arrival tells the print house the batch is complete.
    checksum = upload_checksum(sftp, built, remote_dir)
    _mark_batch_uploaded(conn, batch_id, (built, result, checksum), ctx, [m.letter_id for m in members])
    return {"batch_id": batch_id, "letters": len(members), "bytes": built.size, "sha256": built.sha256,
            "already_present": result.already_present, "remote_path": result.remote_path,
            "checksum_path": checksum.remote_path, "local_path": str(built.path)}


def _mark_batch_uploaded(conn, batch_id: str, upload, ctx: RunContext, letter_ids: list[str]) -> None:
    with conn.cursor() as cur:
        if upload is not None:
            built, result, checksum = upload
            cur.execute("UPDATE print_batches SET status = 'uploaded', zip_sha256 = %s, zip_bytes = %s, "
                        "remote_path = %s, zip_sha256_remote_path = %s, uploaded_at = now() WHERE batch_id = %s",
                        (built.sha256, built.size, result.remote_path, checksum.remote_path, batch_id))
        else:
            cur.execute("UPDATE print_batches SET status = 'uploaded', uploaded_at = coalesce(uploaded_at, now()) "
                        "WHERE batch_id = %s", (batch_id,))
        cur.execute("UPDATE letters SET status = 'handed_to_print', final_at = now(), updated_at = now() "
                    "WHERE print_batch_id = %s AND status = 'processing' AND letter_id = ANY(%s)",
                    (batch_id, letter_ids))
        record_events(cur, ctx, ((lid, "handed_to_print",
                                  {"batch_id": batch_id, "batch_sha256": upload[0].sha256 if upload else None})
                                 for lid in letter_ids))
    conn.commit()


# --------------------------------------------------------------------------- summary

@dataclass(frozen=True)
class RunSummary:
    department: str
    run_id: str
    outcome: dict

    def log(self) -> None:
        logfmt.emit("run_summary", department=self.department, run_id=self.run_id,
                    by_status=self.outcome["by_status"], by_rule=self.outcome["by_rule"])
