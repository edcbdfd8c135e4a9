"""Read status of eBox publications, and one paper copy of an important letter left unread.

The daily DAG `letters_ebox_followup` (built by `build_followup_dag`, wired in
`dags/letters_ebox_followup.py`) runs two steps, each a plain function of a DB connection tested
without Airflow:

1. `fetch_read_status`: for letters `delivered_ebox` with a `messageId`, published within the
   horizon and not yet known to be read, ask `searchMessageStatus` in batches of at most 1000 and
   store `ebox_status_checked_at` (every answered batch) and `ebox_read_at` (the first check that
   found the message opened). Each batch is committed on its own, so a crash keeps what was done.
2. `create_paper_copies`: for the letter types each wave lists in `followup_letter_types`, a letter
   whose message was still unread at a check made *after* `followup_after_days` gets a new outbox
   row `<letter_id>-P` with `followup_of = <letter_id>` and the same content. The wave DAG of its
   department claims it like any other letter; routing sends it to paper with rule
   `unread_ebox_followup`, so it goes through the normal render and print-house path.
   "Once" is a unique index on `followup_of`: reruns and concurrent runs insert nothing twice.

A letter settled from a 409 (already published) has no messageId unless an unconfirmed answer
carried one, so its read status cannot be asked: its first answer was lost. (A lost NO_DIGITAL_USER
answer does not get here: the 409 is settled by the federation search and the letter goes on paper
in the same run, docs/ebox.md.) What happens to such a letter of an important type is the wave's
setting per letter type, `Wave.followup_without_message_id`: `paper_copy` (the default) counts it as
unread and gives it its paper copy after the period; `no_copy` trusts the eBox and records an
`ebox_followup_not_created` event saying why, once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from include.dijlepost import outbox
from include.dijlepost.outbox import RunContext, record_events
from include.dijlepost.recipients import InvalidRecipientId, normalize_recipient_id
from include.dijlepost.states import Status
from include.dijlepost.waves import WAVES, Wave

log = logging.getLogger("dijlepost.ebox_followup")

DAG_ID = "letters_ebox_followup"
SCHEDULE = "0 5 * * *"  # daily, before the first wave run of the day
# Letters published longer ago than this are no longer followed (their copy would come too late).
STATUS_HORIZON = timedelta(days=int(os.environ.get("DIJLEPOST_EBOX_FOLLOWUP_HORIZON_DAYS", "60")))
# A message checked more recently than this is not asked again (a rerun the same day asks nothing).
RECHECK_AFTER = timedelta(hours=12)
STATUS_BATCH = 1000  # ids per searchMessageStatus call (the eBox's lookup limit)
MAX_CHECKS_PER_RUN = 50_000  # bounded work per run; the rest waits for the next day, oldest check first
COPY_SUFFIX = "-P"
MAX_LETTER_ID = 64  # the letters.letter_id CHECK


WITHOUT_MESSAGE_ID_CHOICES = ("paper_copy", "no_copy")


@dataclass(frozen=True)
class FollowupPolicy:
    department: str
    letter_types: tuple[str, ...]
    after: timedelta
    # letter type -> "paper_copy" | "no_copy" for a letter delivered without a message id
    without_message_id: tuple[tuple[str, str], ...] = ()

    def choice_without_message_id(self, letter_type: str) -> str:
        return dict(self.without_message_id).get(letter_type, "paper_copy")


def policies(waves: Iterable[Wave] | None = None) -> list[FollowupPolicy]:
    """The follow-up rule of every wave that has important letter types; a misconfiguration raises."""
    out = []
    for wave in WAVES.values() if waves is None else waves:
        if not wave.followup_letter_types:
            continue
        unknown = set(wave.followup_letter_types) - set(wave.letter_types)
        if unknown:
            raise ValueError(
                f"wave {wave.department}: followup_letter_types {sorted(unknown)} are not "
                f"letter types of the wave"
            )
        if not isinstance(wave.followup_after_days, int) or wave.followup_after_days < 1:
            raise ValueError(f"wave {wave.department}: followup_after_days must be a whole number >= 1")
        choices = dict(wave.followup_without_message_id)
        if set(choices) - set(wave.followup_letter_types) or not set(choices.values()) <= set(
            WITHOUT_MESSAGE_ID_CHOICES
        ):
            raise ValueError(
                f"wave {wave.department}: followup_without_message_id maps followup_letter_types to "
                f"one of {WITHOUT_MESSAGE_ID_CHOICES}"
            )
        out.append(
            FollowupPolicy(
                wave.department,
                tuple(wave.followup_letter_types),
                timedelta(days=wave.followup_after_days),
                tuple(sorted(choices.items())),
            )
        )
    return out


def copy_letter_id(letter_id: str, attempt: int = 0) -> str:
    """`<letter_id>-P`; when that is too long or already taken by another letter, a shortened id
    with a digest of the original, so every letter can have its copy."""
    if attempt == 0 and len(letter_id) + len(COPY_SUFFIX) <= MAX_LETTER_ID:
        return letter_id + COPY_SUFFIX
    digest = hashlib.sha256(f"{letter_id}\0{attempt}".encode()).hexdigest()[:10]
    return f"{letter_id[: MAX_LETTER_ID - len(COPY_SUFFIX) - 11]}{COPY_SUFFIX}-{digest}"


# --------------------------------------------------------------------------- read status


def fetch_read_status(
    conn,
    client,
    ctx: RunContext,
    *,
    horizon: timedelta = STATUS_HORIZON,
    batch_size: int = STATUS_BATCH,
    max_letters: int = MAX_CHECKS_PER_RUN,
    recheck_after: timedelta = RECHECK_AFTER,
) -> dict:
    """Ask the eBox whether the published, not-yet-read messages were opened; store the answers."""
    if not 1 <= batch_size <= STATUS_BATCH:
        raise ValueError(f"batch_size must be within 1..{STATUS_BATCH}")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT letter_id, ebox_message_id, recipient_kind, recipient_id FROM letters "
            f"WHERE status = {Status.DELIVERED_EBOX.sql} AND ebox_read_at IS NULL AND ebox_message_id IS NOT NULL "
            "AND final_at >= now() - %s "
            "AND (ebox_status_checked_at IS NULL OR ebox_status_checked_at < now() - %s) "
            "ORDER BY ebox_status_checked_at NULLS FIRST, final_at, letter_id LIMIT %s",
            (horizon, recheck_after, max_letters),
        )
        rows = cur.fetchall()
    conn.commit()
    counts: Counter = Counter()
    for start in range(0, len(rows), batch_size):
        batch = []
        for letter_id, message_id, kind, recipient_id in rows[start : start + batch_size]:
            try:
                rid = normalize_recipient_id(kind, recipient_id)  # as it was published
            except InvalidRecipientId:
                counts["invalid_recipient"] += 1
                continue
            batch.append((letter_id, message_id, kind, rid))
        if not batch:
            continue
        answers = client.search_message_status([(m, k, r) for _, m, k, r in batch])
        by_message = {a.get("messageId"): a for a in answers if isinstance(a, dict)}
        read = [lid for lid, mid, _, _ in batch if by_message.get(mid, {}).get("readStatus") is True]
        unknown = [lid for lid, mid, _, _ in batch if mid not in by_message]
        with conn.cursor() as cur:
            outbox.mark_ebox_status_checked(cur, [b[0] for b in batch])
            newly_read = outbox.mark_ebox_read(cur, ctx, read)
        conn.commit()
        counts["checked"] += len(batch)
        counts["read"] += len(newly_read)
        counts["not_found"] += len(unknown)
        counts["calls"] += 1
    counts["unread"] = counts["checked"] - counts["read"]
    return {
        "candidates": len(rows),
        **{k: counts[k] for k in ("calls", "checked", "read", "unread", "not_found", "invalid_recipient")},
    }


# --------------------------------------------------------------------------- paper copies

_DUE_SQL = f"""
SELECT o.letter_id, o.ebox_message_id, o.letter_type
  FROM letters o
 WHERE o.status = {Status.DELIVERED_EBOX.sql} AND o.department = %(dept)s AND o.letter_type = ANY(%(types)s)
   AND o.followup_of IS NULL AND o.ebox_read_at IS NULL
   AND o.final_at <= now() - %(after)s AND o.final_at >= now() - %(horizon)s
   -- unread at a check made after the period ended; without a messageId nothing can be checked
   AND (o.ebox_message_id IS NULL OR o.ebox_status_checked_at >= o.final_at + %(after)s)
   AND NOT EXISTS (SELECT 1 FROM letters c WHERE c.followup_of = o.letter_id)
   AND (o.ebox_message_id IS NOT NULL OR NOT EXISTS (
        SELECT 1 FROM letter_events e WHERE e.letter_id = o.letter_id AND e.event = 'ebox_followup_not_created'))
 ORDER BY o.final_at, o.letter_id
"""

_COPY_SQL = """
INSERT INTO letters (letter_id, department, letter_type, recipient_kind, recipient_id, recipient_name,
                     street, postal_code, city, country, language, registered, payload, followup_of)
SELECT %(copy_id)s, department, letter_type, recipient_kind, recipient_id, recipient_name, street,
       postal_code, city, country, language, registered, payload, letter_id
  FROM letters WHERE letter_id = %(original)s
ON CONFLICT DO NOTHING
RETURNING letter_id
"""


def create_paper_copies(
    conn,
    ctx: RunContext,
    rules: Iterable[FollowupPolicy] | None = None,
    *,
    horizon: timedelta = STATUS_HORIZON,
) -> dict:
    """Insert one paper copy per important letter whose eBox message stayed unread; never two."""
    by_department: dict[str, int] = {}
    reasons: Counter = Counter()
    created_ids: list[str] = []
    for policy in policies() if rules is None else rules:
        with conn.cursor() as cur:
            cur.execute(
                _DUE_SQL,
                {
                    "dept": policy.department,
                    "types": list(policy.letter_types),
                    "after": policy.after,
                    "horizon": horizon,
                },
            )
            due = cur.fetchall()
            made = 0
            for original, message_id, letter_type in due:
                choice = policy.choice_without_message_id(letter_type)
                if message_id is None and choice == "no_copy":
                    _record_no_copy(cur, ctx, original, letter_type)
                    reasons["no_message_id_no_copy"] += 1
                    continue
                copy_id = _insert_copy(cur, original)
                if copy_id is None:
                    continue  # a concurrent run made it: it recorded the events
                reason = _record_copy_created(cur, ctx, policy, original, copy_id, message_id, letter_type)
                reasons[reason] += 1
                created_ids.append(copy_id)
                made += 1
        conn.commit()
        by_department[policy.department] = made
    return {
        "created": len(created_ids),
        "by_department": by_department,
        "by_reason": dict(sorted(reasons.items())),
        "copies": created_ids,
    }


def _record_no_copy(cur, ctx: RunContext, original: str, letter_type: str) -> None:
    """The letter's `ebox_followup_not_created` event: delivered without a message id, and its letter type
    trusts the eBox (`followup_without_message_id` is `no_copy`)."""
    record_events(
        cur,
        ctx,
        [
            (
                original,
                "ebox_followup_not_created",
                {
                    "reason": "no_message_id",
                    "setting": f"followup_without_message_id[{letter_type}] = no_copy",
                    "why": "delivered from a 409 whose first answer was lost: its read "
                    "status cannot be asked, and this letter type trusts the eBox",
                },
            )
        ],
    )


def _record_copy_created(
    cur,
    ctx: RunContext,
    policy: FollowupPolicy,
    original: str,
    copy_id: str,
    message_id: str | None,
    letter_type: str,
) -> str:
    """The events of a paper copy made: `ebox_followup_copy_created` on the letter, `created_as_followup` on
    the copy. Returns the reason: `unread`, or `no_message_id` (its read status cannot be asked)."""
    reason = "unread" if message_id else "no_message_id"
    text = (
        f"eBox message not opened within {policy.after.days} days"
        if message_id
        else "the eBox answered 409 (already published) so its message id and read status are "
        f"unknown; treated as not opened within {policy.after.days} days"
    )
    record_events(
        cur,
        ctx,
        [
            (
                original,
                "ebox_followup_copy_created",
                {
                    "copy_letter_id": copy_id,
                    "reason": reason,
                    "message_id": message_id,
                    "after_days": policy.after.days,
                    **(
                        {"setting": f"followup_without_message_id[{letter_type}] = paper_copy"}
                        if message_id is None
                        else {}
                    ),
                },
            ),
            (copy_id, "created_as_followup", {"followup_of": original, "reason": text}),
        ],
    )
    return reason


def _insert_copy(cur, original: str) -> str | None:
    """Insert the copy of `original`; None when a copy exists already (made by a concurrent run)."""
    for attempt in range(3):
        copy_id = copy_letter_id(original, attempt)
        cur.execute(_COPY_SQL, {"copy_id": copy_id, "original": original})
        if cur.fetchone():
            return copy_id
        # Nothing inserted: either the copy exists (unique followup_of) or the id is another letter's.
        cur.execute("SELECT letter_id FROM letters WHERE followup_of = %s", (original,))
        if cur.fetchone():
            return None
    raise RuntimeError(f"no free letter id for the paper copy of {original}")
