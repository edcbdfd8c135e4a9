"""Rollout phases per department: the feature flags that decide how far a department is digital.

`off`     nothing is touched; letters wait in the outbox.
`paper`   every letter goes on paper (the department is not live).
`shadow`  decide as if live and record what would have gone to the eBox, but send paper.
`pilot`   eBox only for the pilot group: recipients on the allowlist (keyed pseudonyms) and/or a
          percentage of all recipients chosen by a stable hash of the pseudonym (`pilot_bucket`),
          so the same person stays in or out from run to run and raising the percentage only adds
          people; paper for the rest.
`live`    eBox for every recipient with an active eBox.
The phase is read at run time, so a change takes effect at the next run without a deployment.
An unknown phase is an error; it never means live.

Every way in (CLI, REST API, the admin page in Airflow) calls the functions below, which hold all the
validation: a refused change raises `RolloutChangeRefused` with the reason and changes nothing. A
reason is one line of at most `MAX_REASON` characters; a pilot percentage is a whole number 0..100
written in ASCII digits; a "change" to the phase and pilot group a department already has is no
change: it is refused where a person asks for it (`refuse_unchanged=True`: CLI, API, page) and
otherwise returns without writing, so setting up a known state is idempotent.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from include.dijlepost.db.connection import read_rows
from include.dijlepost.waves import DEPARTMENTS

PHASES = ("off", "paper", "shadow", "pilot", "live")


class UnknownRolloutPhase(RuntimeError):
    pass


class RolloutChangeRefused(ValueError):
    pass


class RolloutUnchanged(RolloutChangeRefused):
    """The department already has the phase and pilot group asked for."""


MAX_REASON = 500  # characters of a reason (phase change, paper exemption)
MAX_NAME = 200  # characters of the name of who made a change
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PERCENT = re.compile(r"[0-9]{1,3}")


PILOT_BUCKETS = 10_000  # hash buckets: each is 0.01 % of the recipients


def pilot_bucket(recipient_pseudonym: str) -> int:
    """A stable bucket 0..9999 for a recipient: in the pilot at P % iff bucket < P * 100.

    Derived from the keyed pseudonym only (no personal data), independent of the department, so a
    person in a 10 % pilot of one department is also in the 10 % of another, and in every larger one.
    """
    digest = hashlib.sha256(b"dijlepost-pilot\x00" + recipient_pseudonym.encode()).digest()
    return int.from_bytes(digest[:8], "big") % PILOT_BUCKETS


@dataclass(frozen=True)
class RolloutState:
    department: str
    phase: str
    pilot_allowlist: frozenset[str] = field(default_factory=frozenset)
    pilot_percent: int = 0

    def in_pilot(self, recipient_pseudonym: str) -> bool:
        """Whether a recipient belongs to the pilot group (allowlist or percentage)."""
        if recipient_pseudonym in self.pilot_allowlist:
            return True
        return pilot_bucket(recipient_pseudonym) < self.pilot_percent * (PILOT_BUCKETS // 100)

    def to_xcom(self) -> dict:
        return {
            "department": self.department,
            "phase": self.phase,
            "pilot_allowlist": sorted(self.pilot_allowlist),
            "pilot_percent": self.pilot_percent,
        }

    @classmethod
    def from_xcom(cls, data: dict) -> RolloutState:
        return cls(
            data["department"],
            data["phase"],
            frozenset(data.get("pilot_allowlist") or ()),
            int(data.get("pilot_percent") or 0),
        )


def read_state(conn, department: str) -> RolloutState:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT phase, pilot_allowlist, pilot_percent FROM rollout_phases WHERE department = %s",
            (department,),
        )
        row = cur.fetchone()
    conn.commit()
    if row is None:
        raise UnknownRolloutPhase(f"department {department!r} has no rollout phase configured")
    phase, allowlist, percent = row
    if phase not in PHASES:
        raise UnknownRolloutPhase(
            f"department {department!r} has rollout phase {phase!r}, which is not one of "
            f"{', '.join(PHASES)}; refusing to run rather than guess"
        )
    return RolloutState(department, phase, frozenset(allowlist or ()), int(percent))


def _require(value, what: str, field: str = "reason", limit: int = MAX_REASON) -> str:
    """A required one-line text of at most `limit` characters, stripped (never echoed when refused)."""
    if not isinstance(value, str) or not value.strip():
        raise RolloutChangeRefused(what)
    value = value.strip()
    if len(value) > limit:
        raise RolloutChangeRefused(f"the {field} is {len(value)} characters long; at most {limit} are kept")
    if _CONTROL.search(value):
        raise RolloutChangeRefused(f"the {field} must be one line of text without control characters")
    return value


def check_department(department) -> str:
    if department not in DEPARTMENTS:
        raise RolloutChangeRefused(
            f"unknown department {department!r}; expected one of {', '.join(DEPARTMENTS)}"
        )
    return department


def check_pilot_percent(value) -> int:
    """A whole percentage 0..100; accepts an int or a string of ASCII digits, an optional "%" (forms, CLI).

    Other digits (`²`, `١٠`, full-width `１０`), signs, decimals and underscores are refused: `str.isdigit`
    and `int()` accept some of them, the form and the CLI do not."""
    if isinstance(value, bool):
        raise RolloutChangeRefused(f"pilot percentage {value!r} is not a whole number from 0 to 100")
    if isinstance(value, str):
        text = value.strip().removesuffix("%").strip()
        if not _PERCENT.fullmatch(text):
            shown = repr(value) if len(value) <= 20 else f"of {len(value)} characters"
            raise RolloutChangeRefused(
                f"pilot percentage {shown} is not a whole number from 0 to 100 (digits 0-9 only)"
            )
        value = int(text)
    if not isinstance(value, int) or not 0 <= value <= 100:
        raise RolloutChangeRefused(f"pilot percentage {value!r} is outside 0..100")
    return value


def set_phase(
    conn,
    department: str,
    phase: str,
    reason: str,
    changed_by: str,
    pilot_allowlist: list[str] | None = None,
    pilot_percent: int | str | None = None,
    *,
    refuse_unchanged: bool = False,
) -> tuple[str | None, str]:
    """Change a department's phase with a required reason; returns (from_phase, to_phase).

    `pilot_allowlist` / `pilot_percent` replace the stored pilot group when given and keep it when
    None. Switching to `pilot` with an empty group (no allowlist, 0 %) is refused: it would be paper
    under another name. Everything is checked before anything is written. When the phase and the pilot
    group are already what is asked, nothing is written and no history recorded: with
    `refuse_unchanged` (a person asking) that raises `RolloutUnchanged`, else it returns (phase, phase).
    """
    check_department(department)
    if not isinstance(phase, str) or phase not in PHASES:
        shown = repr(phase) if len(str(phase)) <= 20 else "given"
        raise RolloutChangeRefused(f"unknown phase {shown}; expected one of {', '.join(PHASES)}")
    reason = _require(reason, "a reason is required for every rollout change")
    changed_by = _require(changed_by, "the person making the change must be named", "name", MAX_NAME)
    if pilot_percent is not None:
        pilot_percent = check_pilot_percent(pilot_percent)
    if pilot_allowlist is not None:
        bad = [p for p in pilot_allowlist if not isinstance(p, str) or not p.startswith("r-")]
        if bad:
            raise RolloutChangeRefused(
                f"the pilot allowlist holds {len(bad)} value(s) that are not recipient pseudonyms (r-...)"
            )
        pilot_allowlist = sorted(set(pilot_allowlist))
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT phase, pilot_allowlist, pilot_percent FROM rollout_phases "
                "WHERE department = %s FOR UPDATE",
                (department,),
            )
            row = cur.fetchone()
            from_phase = row[0] if row else None
            allowlist = pilot_allowlist if pilot_allowlist is not None else (list(row[1]) if row else [])
            percent = pilot_percent if pilot_percent is not None else (row[2] if row else 0)
            if phase == "pilot" and not allowlist and percent == 0:
                raise RolloutChangeRefused(
                    "a pilot needs a pilot group: an allowlist of recipients and/or a percentage above 0"
                )
            if row and (phase, sorted(allowlist), percent) == (row[0], sorted(row[1] or ()), row[2]):
                if refuse_unchanged:
                    raise RolloutUnchanged(
                        f"{department} is already in phase {phase} with this pilot group "
                        f"({len(allowlist)} on the allowlist, {percent} %); nothing to change"
                    )
                conn.rollback()
                return phase, phase
            cur.execute(
                "INSERT INTO rollout_phases (department, phase, pilot_allowlist, pilot_percent, changed_by, "
                "reason, changed_at) VALUES (%s, %s, %s, %s, %s, %s, now()) "
                "ON CONFLICT (department) DO UPDATE "
                "SET phase = EXCLUDED.phase, pilot_allowlist = EXCLUDED.pilot_allowlist, "
                "pilot_percent = EXCLUDED.pilot_percent, changed_by = EXCLUDED.changed_by, "
                "reason = EXCLUDED.reason, changed_at = now()",
                (department, phase, allowlist, percent, changed_by, reason),
            )
            cur.execute(
                "INSERT INTO rollout_history (department, from_phase, to_phase, changed_by, reason, "
                "pilot_percent, pilot_size) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (department, from_phase, phase, changed_by, reason, percent, len(allowlist)),
            )
    except BaseException:
        conn.rollback()
        raise
    conn.commit()
    return from_phase, phase


def show(conn) -> list[dict]:
    return read_rows(
        conn,
        "SELECT department, phase, cardinality(pilot_allowlist) AS pilot_size, pilot_percent, changed_by, "
        "reason, changed_at FROM rollout_phases ORDER BY department",
    )


def history(conn, department: str | None = None, limit: int = 100) -> list[dict]:
    """Phase changes, newest first: who, when, from which phase to which, why, and the pilot group."""
    if department is not None:
        check_department(department)
    return read_rows(
        conn,
        "SELECT id, department, from_phase, to_phase, changed_by, reason, changed_at, pilot_percent, "
        "pilot_size FROM rollout_history WHERE %(d)s::text IS NULL OR department = %(d)s "
        "ORDER BY id DESC LIMIT %(n)s",
        {"d": department, "n": limit},
    )


def _check_pseudonym(recipient_pseudonym) -> str:
    if (
        not isinstance(recipient_pseudonym, str)
        or not recipient_pseudonym.startswith("r-")
        or len(recipient_pseudonym) > 64
    ):
        # never echo the value: it may be a national register or KBO number typed in the wrong field
        raise RolloutChangeRefused(
            "the recipient given is not a recipient pseudonym (r-...); give the "
            "pseudonym, or the kind and id so that it is computed"
        )
    return recipient_pseudonym


_EXEMPTION_CHANGE = {
    "add": "INSERT INTO paper_exemptions (recipient_pseudonym, added_by, reason) VALUES (%s, %s, %s) "
    "ON CONFLICT DO NOTHING",
    "remove": "DELETE FROM paper_exemptions WHERE recipient_pseudonym = %s",
}


def _change_exemption(conn, action: str, recipient_pseudonym: str, reason: str, by: str) -> bool:
    """Add or remove a paper exemption and, when that changed anything, its history row, in one
    transaction; False when nothing changed (already there, or none to remove)."""
    _check_pseudonym(recipient_pseudonym)
    params = (recipient_pseudonym, by, reason) if action == "add" else (recipient_pseudonym,)
    with conn.cursor() as cur:
        cur.execute(_EXEMPTION_CHANGE[action], params)
        changed = cur.rowcount == 1
        if changed:
            cur.execute(
                "INSERT INTO paper_exemption_history (recipient_pseudonym, action, changed_by, reason) "
                "VALUES (%s, %s, %s, %s)",
                (recipient_pseudonym, action, by, reason),
            )
    conn.commit()
    return changed


def add_exemption(conn, recipient_pseudonym: str, reason: str, added_by: str) -> bool:
    """Register a recipient to keep paper; False if already registered (nothing changes then)."""
    reason = _require(reason, "a reason is required to register a paper exemption")
    added_by = _require(added_by, "the person registering the exemption must be named", "name", MAX_NAME)
    return _change_exemption(conn, "add", recipient_pseudonym, reason, added_by)


def remove_exemption(conn, recipient_pseudonym: str, reason: str, removed_by: str) -> bool:
    """End a paper exemption, with a reason; False if there was none (nothing changes then)."""
    reason = _require(reason, "a reason is required to remove a paper exemption")
    removed_by = _require(removed_by, "the person removing the exemption must be named", "name", MAX_NAME)
    return _change_exemption(conn, "remove", recipient_pseudonym, reason, removed_by)


def exemptions(conn, limit: int = 500) -> list[dict]:
    return read_rows(
        conn,
        "SELECT recipient_pseudonym, added_by, reason, added_at FROM paper_exemptions "
        "ORDER BY added_at DESC, recipient_pseudonym LIMIT %s",
        (limit,),
    )


def exemption_history(conn, recipient_pseudonym: str | None = None, limit: int = 100) -> list[dict]:
    return read_rows(
        conn,
        "SELECT id, recipient_pseudonym, action, changed_by, reason, changed_at "
        "FROM paper_exemption_history WHERE %(p)s::text IS NULL OR recipient_pseudonym = %(p)s "
        "ORDER BY id DESC LIMIT %(n)s",
        {"p": recipient_pseudonym, "n": limit},
    )
