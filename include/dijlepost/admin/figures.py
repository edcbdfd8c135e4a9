"""Figures that help an administrator decide on a phase: recent runs per department, and the shadow
report (what share of a department's letters would have gone digital, and what that would have saved).

Pure SQL over `letters`; no personal data leaves these functions (counts and amounts only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from psycopg.rows import dict_row

from include.dijlepost.rollout import check_department
from include.dijlepost.states import Status, sql_list
from include.dijlepost.tariffs import Tariffs


def recent_runs(conn, department: str, limit: int = 5, days: int = 14) -> list[dict]:
    """The department's latest wave runs (by claim), newest first: letters to the eBox, on paper,
    quarantined and not yet finished, with the moment the run started and last finished a letter.

    Only letters decided in the last `days` days are read (index letters_department_decided_idx), so
    the page stays fast on an outbox of years; a run's letters not decided yet are not counted.
    """
    check_department(department)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"""
            SELECT claim_run_id AS run,
                   min(claimed_at) AS started,
                   max(final_at)   AS last_final,
                   count(*) FILTER (WHERE status = {Status.DELIVERED_EBOX.sql})  AS ebox,
                   count(*) FILTER (WHERE status = {Status.HANDED_TO_PRINT.sql}) AS paper,
                   count(*) FILTER (WHERE status = {Status.QUARANTINED.sql})     AS quarantined,
                   count(*) FILTER (WHERE status NOT IN {sql_list(Status.DELIVERED_EBOX, Status.HANDED_TO_PRINT, Status.QUARANTINED)})
                                                                      AS unfinished,
                   count(*) FILTER (WHERE shadow_channel = 'ebox')    AS shadow_ebox,
                   string_agg(DISTINCT rollout_phase, ',')            AS phases
              FROM letters
             WHERE department = %s AND claim_run_id IS NOT NULL
               AND decided_at >= now() - %s * interval '1 day'
             GROUP BY claim_run_id
             ORDER BY max(coalesce(final_at, claimed_at)) DESC NULLS LAST, claim_run_id DESC
             LIMIT %s
            """,
            (department, days, limit),
        )
        rows = cur.fetchall()
    conn.commit()
    return rows


def totals(conn) -> dict[str, dict[str, int]]:
    """Letters per department and status (everything in the outbox)."""
    with conn.cursor() as cur:
        cur.execute("SELECT department, status, count(*) FROM letters GROUP BY 1, 2")
        rows = cur.fetchall()
    conn.commit()
    out: dict[str, dict[str, int]] = {}
    for department, status, n in rows:
        out.setdefault(department, {})[status] = n
    return out


@dataclass(frozen=True)
class ShadowReport:
    department: str
    since: datetime | None
    decided: int  # letters decided while the department was in shadow
    would_be_ebox: int  # ... that live would have sent to the eBox
    would_be_paper: int  # ... that live would have sent on paper as well
    quarantined: int  # ... that could not be sent at all
    pages_estimated: int  # would-be-eBox letters not rendered yet, counted as one page
    postage_saving: Decimal
    printing_saving: Decimal
    tariffs: Tariffs

    @property
    def digital_share(self) -> float | None:
        """Share of the sendable letters (eBox + paper) that would have gone digital."""
        sendable = self.would_be_ebox + self.would_be_paper
        return self.would_be_ebox / sendable if sendable else None

    @property
    def total_saving(self) -> Decimal:
        return self.postage_saving + self.printing_saving

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tariffs"] = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in d["tariffs"].items()}
        for k in ("postage_saving", "printing_saving"):
            d[k] = str(d[k])
        d["since"] = self.since.isoformat() if self.since else None
        d["digital_share"] = self.digital_share
        d["total_saving"] = str(self.total_saving)
        return d


def shadow_report(
    conn, department: str, tariffs: Tariffs | None = None, days: int | None = None
) -> ShadowReport:
    """What the letters decided in phase `shadow` would have done live (`letters.shadow_channel`).

    Savings are counted for the would-be-eBox letters only: postage (plus the registered surcharge for
    registered letters) and printing (`Tariffs.printing_for`: per letter, plus per extra page and per extra
    duplex sheet when the PDF is rendered; an unrendered letter counts as one page). `days` limits the report to letters decided in the last days.
    """
    check_department(department)
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
        from include.dijlepost.rollout import RolloutChangeRefused

        raise RolloutChangeRefused(f"days {days!r} must be a whole number of at least 1")
    tariffs = tariffs or Tariffs.from_env()
    since = None
    with conn.cursor() as cur:
        if days is not None:
            cur.execute("SELECT now() - %s::interval", (timedelta(days=days),))
            since = cur.fetchone()[0]
        cur.execute(
            """
            SELECT shadow_channel, channel IS NULL AS quarantined, registered, pdf_pages, count(*)
              FROM letters
             WHERE department = %(d)s AND rollout_phase = 'shadow' AND decided_at IS NOT NULL
               AND (%(since)s::timestamptz IS NULL OR decided_at >= %(since)s)
             GROUP BY 1, 2, 3, 4
            """,
            {"d": department, "since": since},
        )
        rows = cur.fetchall()
    conn.commit()
    decided = ebox = paper = quarantined = estimated = 0
    postage = printing = Decimal("0")
    for shadow_channel, is_quarantined, registered, pages, n in rows:
        decided += n
        if shadow_channel == "ebox":
            ebox += n
            postage += tariffs.postage_for(registered) * n
            printing += tariffs.printing_for(pages) * n
            estimated += n if pages is None else 0
        elif shadow_channel == "paper":
            paper += n
        elif is_quarantined:
            quarantined += n
    return ShadowReport(
        department,
        since,
        decided,
        ebox,
        paper,
        quarantined,
        estimated,
        postage - tariffs.ebox * ebox,
        printing,
        tariffs,
    )
