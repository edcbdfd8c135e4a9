"""Rollout phases per department: the feature flags that decide how far a department is digital.

`off`     nothing is touched; letters wait in the outbox.
`paper`   every letter goes on paper (the department is not live).
`shadow`  decide as if live and record what would have gone to the eBox, but send paper.
`pilot`   eBox only for recipients on the pilot allowlist (keyed pseudonyms); paper for the rest.
`live`    eBox for every recipient with an active eBox.
The phase is read at run time, so a change takes effect at the next run without a deployment.
An unknown phase is an error; it never means live.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from include.dijlepost.waves import DEPARTMENTS

PHASES = ("off", "paper", "shadow", "pilot", "live")


class UnknownRolloutPhase(RuntimeError):
    pass


class RolloutChangeRefused(ValueError):
    pass


@dataclass(frozen=True)
class RolloutState:
    department: str
    phase: str
    pilot_allowlist: frozenset[str] = field(default_factory=frozenset)

    def to_xcom(self) -> dict:
        return {"department": self.department, "phase": self.phase,
                "pilot_allowlist": sorted(self.pilot_allowlist)}

    @classmethod
    def from_xcom(cls, data: dict) -> "RolloutState":
        return cls(data["department"], data["phase"], frozenset(data.get("pilot_allowlist") or ()))


def read_state(conn, department: str) -> RolloutState:
    with conn.cursor() as cur:
        cur.execute("SELECT phase, pilot_allowlist FROM rollout_phases WHERE department = %s", (department,))
        row = cur.fetchone()
    conn.commit()
    if row is None:
        raise UnknownRolloutPhase(f"department {department!r} has no rollout phase configured")
    phase, allowlist = row
    if phase not in PHASES:
        raise UnknownRolloutPhase(
            f"department {department!r} has rollout phase {phase!r}, which is not one of "
            f"{', '.join(PHASES)}; refusing to run rather than guess"
        )
    return RolloutState(department, phase, frozenset(allowlist or ()))


def set_phase(conn, department: str, phase: str, reason: str, changed_by: str,
              pilot_allowlist: list[str] | None = None) -> tuple[str | None, str]:
    """Change a department's phase with a required reason; returns (from_phase, to_phase)."""
    if department not in DEPARTMENTS:
        raise RolloutChangeRefused(f"unknown department {department!r}; expected one of {', '.join(DEPARTMENTS)}")
    if phase not in PHASES:
        raise RolloutChangeRefused(f"unknown phase {phase!r}; expected one of {', '.join(PHASES)}")
    if not reason or not reason.strip():
        raise RolloutChangeRefused("a reason is required for every rollout change")
    if not changed_by or not changed_by.strip():
        raise RolloutChangeRefused("the person making the change must be named")
    with conn.cursor() as cur:
        cur.execute("SELECT phase, pilot_allowlist FROM rollout_phases WHERE department = %s FOR UPDATE",
                    (department,))
        row = cur.fetchone()
        from_phase = row[0] if row else None
        allowlist = pilot_allowlist if pilot_allowlist is not None else (list(row[1]) if row else [])
        cur.execute(
            "INSERT INTO rollout_phases (department, phase, pilot_allowlist, changed_by, reason, changed_at) "
            "VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (department) DO UPDATE SET "
            "phase = EXCLUDED.phase, pilot_allowlist = EXCLUDED.pilot_allowlist, "
            "changed_by = EXCLUDED.changed_by, reason = EXCLUDED.reason, changed_at = now()",
            (department, phase, allowlist, changed_by, reason.strip()),
        )
        cur.execute(
            "INSERT INTO rollout_history (department, from_phase, to_phase, changed_by, reason) "
            "VALUES (%s, %s, %s, %s, %s)", (department, from_phase, phase, changed_by, reason.strip()),
        )
    conn.commit()
    return from_phase, phase


def show(conn) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute("SELECT department, phase, cardinality(pilot_allowlist), changed_by, reason, changed_at "
                    "FROM rollout_phases ORDER BY department")
        rows = cur.fetchall()
    conn.commit()
    return [dict(zip(("department", "phase", "pilot_size", "changed_by", "reason", "changed_at"), r))
            for r in rows]


def add_exemption(conn, recipient_pseudonym: str, reason: str, added_by: str) -> bool:
    if not reason or not reason.strip():
        raise RolloutChangeRefused("a reason is required to register a paper exemption")
    if not added_by or not added_by.strip():
        raise RolloutChangeRefused("the person registering the exemption must be named")
    with conn.cursor() as cur:
        cur.execute("INSERT INTO paper_exemptions (recipient_pseudonym, added_by, reason) VALUES (%s, %s, %s) "
                    "ON CONFLICT DO NOTHING", (recipient_pseudonym, added_by, reason.strip()))
        added = cur.rowcount == 1
    conn.commit()
    return added


def remove_exemption(conn, recipient_pseudonym: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("DELETE FROM paper_exemptions WHERE recipient_pseudonym = %s", (recipient_pseudonym,))
        removed = cur.rowcount == 1
    conn.commit()
    return removed
