"""How is the rollout going? Daily and weekly figures per department, a table and a one-page report.

No Airflow here: the DAG in dags/letters_evaluation.py calls `evaluated_day`, `Period` and `evaluate`.

    letters_evaluation  daily at 06:30 Europe/Brussels
        evaluate_day          yesterday (Europe/Brussels): figures -> `evaluation_figures`, report
        week_is_complete      short-circuit: only when yesterday was a Sunday
        evaluate_week         the ISO week that just ended (Monday..Sunday)

Figures of a period [start, end) per department (docs/evaluation.md defines each one):
letters that reached their final state in the period, by channel (eBox, paper, quarantined); the eBox
share of delivered letters; the eBox activation rate among the recipients decided in the period (their
latest check in `ebox_activation`); eBox letters of the period still unread; paper follow-ups and
returned mail of the period; quarantines by reason; printing and postage avoided by the eBox letters
minus what the paper follow-ups cost (`tariffs.Tariffs`). A figure whose feature is not in the
database (no read-status or print-acknowledgement columns) is NULL: "not measured", never 0.

Each period's report goes to `<reports dir>/<day|week>/<start>/report.html` with its charts, and is
kept: a rerun replaces the same period's row and files, never another period's. The report also
records the audit chain head (`audit.chain_head`) as an anchor for `dijlepost audit verify --anchor`.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pendulum
from jinja2 import Environment, select_autoescape
from psycopg.rows import dict_row

from include.dijlepost.settings import PROJECT_ROOT
from include.dijlepost.states import PrintStatus, Status
from include.dijlepost.tariffs import Tariffs
from include.dijlepost.waves import DEPARTMENTS

TZ = ZoneInfo("Europe/Brussels")
DAG_ID = "letters_evaluation"
HISTORY_PERIODS = 12  # periods shown in the trend charts


def reports_dir() -> Path:
    explicit = os.environ.get("DIJLEPOST_REPORTS_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("DIJLEPOST_VAR_DIR", PROJECT_ROOT / "var")) / "reports"


@dataclass(frozen=True)
class Period:
    kind: str  # 'day' or 'week'
    start: date
    end: date  # exclusive

    @classmethod
    def day(cls, d: date) -> Period:
        return cls("day", d, d + timedelta(days=1))

    @classmethod
    def week_of(cls, d: date) -> Period:
        monday = d - timedelta(days=d.weekday())
        return cls("week", monday, monday + timedelta(days=7))

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        return datetime.combine(self.start, time(), TZ), datetime.combine(self.end, time(), TZ)

    @property
    def label(self) -> str:
        if self.kind == "day":
            return f"{self.start:%A %d %B %Y}"
        return (
            f"week {self.start.isocalendar()[1]} of {self.start.isocalendar()[0]} "
            f"({self.start:%d %b} - {self.end - timedelta(days=1):%d %b %Y})"
        )


@dataclass
class Figures:
    department: str
    letters_final: int = 0
    ebox: int = 0
    paper: int = 0
    quarantined: int = 0
    recipients_checked: int = 0
    recipients_active: int = 0
    ebox_unread: int | None = None
    paper_followups: int | None = None
    returned_mail: int | None = None
    quarantine_reasons: dict = field(default_factory=dict)
    printing_avoided_eur: Decimal = Decimal("0.00")
    postage_avoided_eur: Decimal = Decimal("0.00")
    followup_cost_eur: Decimal = Decimal("0.00")

    @property
    def ebox_share(self) -> Decimal | None:
        delivered = self.ebox + self.paper
        return (Decimal(self.ebox) / delivered).quantize(Decimal("0.0001")) if delivered else None

    @property
    def activation_rate(self) -> Decimal | None:
        if not self.recipients_checked:
            return None
        return (Decimal(self.recipients_active) / self.recipients_checked).quantize(Decimal("0.0001"))

    @property
    def savings_eur(self) -> Decimal:
        return self.printing_avoided_eur + self.postage_avoided_eur - self.followup_cost_eur


def _columns(cur) -> set[str]:
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'letters'"
    )
    return {r[0] for r in cur.fetchall()}


def _count_by_department(cur, where: str, params: tuple) -> dict[str, int]:
    """department -> the number of its letters matching `where` (a condition on `letters`)."""
    cur.execute(f"SELECT department, count(*) FROM letters WHERE {where} GROUP BY 1", params)
    return dict(cur.fetchall())


def _fill(figures: dict[str, Figures], name: str, counts: dict[str, int]) -> None:
    """Set the figure `name` of each department to its count in `counts`: 0 where it has none."""
    for dept, f in figures.items():
        setattr(f, name, counts.get(dept, 0))


def _eur(x: Decimal) -> Decimal:
    return Decimal(x).quantize(Decimal("0.01"))


def compute(conn, period: Period, tariffs: Tariffs, departments=DEPARTMENTS) -> list[Figures]:
    """The figures of one period for each department (read only)."""
    lo, hi = period.bounds
    out = {d: Figures(d) for d in departments}
    with conn.cursor() as cur:
        cols = _columns(cur)
        _count_final_letters(cur, out, lo, hi)
        _count_quarantine_reasons(cur, out, lo, hi)
        _count_recipients_checked(cur, out, lo, hi)
        _add_paper_avoided(cur, out, tariffs, lo, hi)
        if "ebox_read_at" in cols:
            unread = _count_by_department(
                cur,
                f"status = {Status.DELIVERED_EBOX.sql} AND final_at >= %s AND final_at < %s AND ebox_read_at IS NULL",
                (lo, hi),
            )
            _fill(out, "ebox_unread", unread)
        if "followup_of" in cols:
            _add_paper_followups(cur, out, tariffs, lo, hi)
        if "print_status" in cols and "print_returned_at" in cols:
            returned = _count_by_department(
                cur,
                f"print_status = {PrintStatus.RETURNED.sql} AND print_returned_at >= %s AND print_returned_at < %s",
                (lo, hi),
            )
            _fill(out, "returned_mail", returned)
    conn.commit()
    for f in out.values():
        f.printing_avoided_eur, f.postage_avoided_eur = (
            _eur(f.printing_avoided_eur),
            _eur(f.postage_avoided_eur),
        )
        f.followup_cost_eur = _eur(f.followup_cost_eur)
    return [out[d] for d in departments]


def _count_final_letters(cur, out: dict[str, Figures], lo, hi) -> None:
    """The letters final in the period, by department and final status."""
    cur.execute(
        "SELECT department, status, count(*) FROM letters WHERE final_at >= %s AND final_at < %s GROUP BY 1, 2",
        (lo, hi),
    )
    for dept, status, n in cur.fetchall():
        if dept not in out:
            continue
        f = out[dept]
        f.letters_final += n
        if status == "delivered_ebox":
            f.ebox = n
        elif status == "handed_to_print":
            f.paper = n
        elif status == "quarantined":
            f.quarantined = n


def _count_quarantine_reasons(cur, out: dict[str, Figures], lo, hi) -> None:
    """The letters quarantined in the period, by department and the first part of their reason."""
    cur.execute(
        "SELECT department, btrim(split_part(quarantine_reason, ':', 1)), count(*) FROM letters "
        f"WHERE status = {Status.QUARANTINED.sql} AND final_at >= %s AND final_at < %s GROUP BY 1, 2 ORDER BY 1, 2",
        (lo, hi),
    )
    for dept, reason, n in cur.fetchall():
        if dept in out:
            out[dept].quarantine_reasons[reason or "unknown"] = n


def _count_recipients_checked(cur, out: dict[str, Figures], lo, hi) -> None:
    """Recipients decided in the period, by keyed pseudonym, against their latest eBox check."""
    cur.execute(
        "SELECT r.department, count(a.recipient_pseudonym), count(*) FILTER (WHERE a.active) FROM ("
        "  SELECT DISTINCT l.department, e.details->>'recipient' AS pseudonym FROM letter_events e "
        "    JOIN letters l ON l.letter_id = e.letter_id "
        "   WHERE e.event = 'decided' AND e.at >= %s AND e.at < %s AND e.details ? 'recipient') r "
        "LEFT JOIN ebox_activation a ON a.recipient_pseudonym = r.pseudonym GROUP BY 1",
        (lo, hi),
    )
    for dept, checked, active in cur.fetchall():
        if dept in out:
            out[dept].recipients_checked, out[dept].recipients_active = checked, active


def _add_paper_avoided(cur, out: dict[str, Figures], tariffs: Tariffs, lo, hi) -> None:
    """Printing and postage the eBox letters delivered in the period avoided."""
    cur.execute(
        "SELECT department, coalesce(pdf_pages, 1), registered, count(*) FROM letters "
        f"WHERE status = {Status.DELIVERED_EBOX.sql} AND final_at >= %s AND final_at < %s GROUP BY 1, 2, 3",
        (lo, hi),
    )
    for dept, pages, registered, n in cur.fetchall():
        if dept in out:
            out[dept].printing_avoided_eur += tariffs.printing_for(pages) * n
            out[dept].postage_avoided_eur += tariffs.postage_for(registered) * n


def _add_paper_followups(cur, out: dict[str, Figures], tariffs: Tariffs, lo, hi) -> None:
    """The paper copies of unread eBox letters created in the period, and what they cost."""
    cur.execute(
        "SELECT department, coalesce(pdf_pages, 1), registered, count(*) FROM letters "
        "WHERE followup_of IS NOT NULL AND created_at >= %s AND created_at < %s GROUP BY 1, 2, 3",
        (lo, hi),
    )
    counts: dict = defaultdict(int)
    for dept, pages, registered, n in cur.fetchall():
        if dept in out:
            counts[dept] += n
            out[dept].followup_cost_eur += tariffs.paper_cost(pages, registered) * n
    _fill(out, "paper_followups", counts)


def _tariffs_json(t: Tariffs) -> str:
    return json.dumps({k: str(v) for k, v in asdict(t).items()}, sort_keys=True)


def store(
    conn,
    period: Period,
    figures: list[Figures],
    tariffs: Tariffs,
    run_id: str | None,
    report_path: str | None,
) -> None:
    """Write (or replace) the period's rows."""
    rows = [
        (
            period.kind,
            period.start,
            period.end,
            f.department,
            f.letters_final,
            f.ebox,
            f.paper,
            f.quarantined,
            f.ebox_share,
            f.recipients_checked,
            f.recipients_active,
            f.activation_rate,
            f.ebox_unread,
            f.paper_followups,
            f.returned_mail,
            json.dumps(f.quarantine_reasons, sort_keys=True),
            f.printing_avoided_eur,
            f.postage_avoided_eur,
            f.followup_cost_eur,
            f.savings_eur,
            _tariffs_json(tariffs),
            report_path,
            run_id,
        )
        for f in figures
    ]
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO evaluation_figures (period_kind, period_start, period_end, department, letters_final, ebox,
                paper, quarantined, ebox_share, recipients_checked, recipients_active, activation_rate, ebox_unread,
                paper_followups, returned_mail, quarantine_reasons, printing_avoided_eur, postage_avoided_eur,
                followup_cost_eur, savings_eur, tariffs, report_path, computed_by_run)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s::jsonb,
                    %s, %s)
            ON CONFLICT (period_kind, period_start, department) DO UPDATE SET
                period_end = EXCLUDED.period_end, letters_final = EXCLUDED.letters_final, ebox = EXCLUDED.ebox,
                paper = EXCLUDED.paper, quarantined = EXCLUDED.quarantined, ebox_share = EXCLUDED.ebox_share,
                recipients_checked = EXCLUDED.recipients_checked, recipients_active = EXCLUDED.recipients_active,
                activation_rate = EXCLUDED.activation_rate, ebox_unread = EXCLUDED.ebox_unread,
                paper_followups = EXCLUDED.paper_followups, returned_mail = EXCLUDED.returned_mail,
                quarantine_reasons = EXCLUDED.quarantine_reasons,
                printing_avoided_eur = EXCLUDED.printing_avoided_eur, postage_avoided_eur = EXCLUDED.postage_avoided_eur,
                followup_cost_eur = EXCLUDED.followup_cost_eur, savings_eur = EXCLUDED.savings_eur,
                tariffs = EXCLUDED.tariffs, report_path = EXCLUDED.report_path, computed_at = now(),
                computed_by_run = EXCLUDED.computed_by_run
            """,
            rows,
        )
    conn.commit()


def history(conn, kind: str, until: date, periods: int = HISTORY_PERIODS) -> list[dict]:
    """Stored rows of the last `periods` periods of a kind up to and including the one starting `until`."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT period_start, department, ebox, paper, quarantined, ebox_share, savings_eur FROM evaluation_figures "
            "WHERE period_kind = %s AND period_start <= %s AND period_start IN (SELECT DISTINCT period_start "
            "FROM evaluation_figures WHERE period_kind = %s AND period_start <= %s ORDER BY period_start DESC "
            "LIMIT %s) ORDER BY period_start, department",
            (kind, until, kind, until, periods),
        )
        rows = cur.fetchall()
    conn.commit()
    return rows


# --------------------------------------------------------------------------- the report


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _charts(period: Period, figures: list[Figures], past: list[dict], out_dir: Path) -> list[str]:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    depts = [f.department for f in figures]

    def save(fig, name: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        _write(out_dir / name, buf.getvalue())
        names.append(name)

    fig, ax = plt.subplots(figsize=(5.2, 2.8))
    bottom = [0] * len(figures)
    for label, attr, colour in (
        ("eBox", "ebox", "#2a7ab0"),
        ("paper", "paper", "#b0b0b0"),
        ("quarantined", "quarantined", "#d9534f"),
    ):
        values = [getattr(f, attr) for f in figures]
        ax.bar(depts, values, bottom=bottom, label=label, color=colour)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_title("Letters by channel")
    ax.set_ylabel("letters")
    ax.legend(fontsize=8)
    save(fig, "channels.png")

    starts = sorted({r["period_start"] for r in past})
    labels = [s.isoformat()[5:] for s in starts]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 2.8))
    for dept in depts:
        by_start = {r["period_start"]: r for r in past if r["department"] == dept}
        ax1.plot(
            range(len(labels)),
            [
                float(by_start[s]["ebox_share"]) * 100
                if s in by_start and by_start[s]["ebox_share"] is not None
                else float("nan")
                for s in starts
            ],
            marker="o",
            label=dept,
        )
    ax1.set_xticks(range(len(labels)), labels)
    ax1.set_xlim(-0.5, len(labels) - 0.5)
    ax1.set_title(f"eBox share per {period.kind} (%)")
    ax1.set_ylim(0, 100)
    ax1.legend(fontsize=7)
    savings = [sum(float(r["savings_eur"]) for r in past if r["period_start"] == s) for s in starts]
    ax2.bar(labels, savings, color="#3c9d5d")
    ax2.set_title(f"Saved per {period.kind} (EUR)")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelsize=7, rotation=45)
    save(fig, "trends.png")
    return names


REPORT_TEMPLATE = r"""{% macro figure(v, pct=False) -%}
{% if v is none %}<span class=na>not measured</span>{% elif pct %}{{ "%.1f%%" | format(v * 100) }}{% else %}{{ v }}{% endif %}
{%- endmacro -%}
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dijlepost rollout: {{ period.label }}</title>
<style>body{font-family:sans-serif;max-width:60em;margin:1em auto;font-size:14px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}
td:first-child{text-align:left}.na{color:#999}.big{font-size:20px}</style></head><body>
<h1>How is the rollout going? {{ period.label }}</h1>
<p class=big>{{ total.letters_final }} letters finished: {{ total.ebox }} to the eBox, {{ total.paper }} on paper,
{{ total.quarantined }} quarantined. eBox share {{ figure(total.ebox_share, pct=True) }}. Saved EUR {{ total.savings_eur }}.</p>
{% for chart, alt in charts %}<img src="{{ chart }}" alt="{{ alt }}"> {% endfor %}
<table><tr><th></th>{% for f in figures %}<th>{{ f.department }}</th>{% endfor %}</tr>
{% for label, attr, pct in rows %}<tr><td>{{ label }}</td>{% for f in figures %}<td>
{%- if attr is none %}{{ f.recipients_checked }} / {{ f.recipients_active }}
{%- else %}{{ figure(f[attr], pct=pct) }}{% endif %}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Quarantines by reason</h2><ul>
{% for f in figures %}{% for reason, n in f.quarantine_reasons | dictsort %}<li>{{ f.department }}: {{ reason }} &times; {{ n }}</li>
{% endfor %}{% endfor %}{% if not reasons %}<li>none</li>{% endif %}</ul>
<p><small>Period [{{ period.start }}, {{ period.end }}) Europe/Brussels. Savings: printing and postage a paper letter
would have cost, minus paper follow-ups; tariffs: postage EUR {{ tariffs.postage }}, registered surcharge
EUR {{ tariffs.registered_surcharge }}, printing EUR {{ tariffs.print_per_letter }} per letter + EUR
{{ tariffs.print_per_extra_page }} per extra page + EUR {{ tariffs.print_per_extra_sheet }} per extra sheet (printed
duplex, two pages a sheet; pages from each letter's rendered PDF) ({{ tariffs.source }}). "not measured": the feature
behind the figure is not installed. Audit anchor: <code>{{ anchor[0] }}:{{ anchor[1] }}</code>
(check with <code>dijlepost audit verify --anchor {{ anchor[0] }}:{{ anchor[1] }}</code>).
Definitions: docs/evaluation.md.</small></p>
</body></html>
"""

# (label, Figures attribute or None for "checked / active", shown as a percentage)
REPORT_ROWS = (
    ("Letters finished", "letters_final", False),
    ("to the eBox", "ebox", False),
    ("on paper", "paper", False),
    ("quarantined", "quarantined", False),
    ("eBox share", "ebox_share", True),
    ("eBox activation among recipients", "activation_rate", True),
    ("recipients checked / active", None, False),
    ("eBox letters still unread", "ebox_unread", False),
    ("paper follow-ups of unread eBox letters", "paper_followups", False),
    ("returned mail", "returned_mail", False),
    ("printing avoided (EUR)", "printing_avoided_eur", False),
    ("postage avoided (EUR)", "postage_avoided_eur", False),
    ("cost of paper follow-ups (EUR)", "followup_cost_eur", False),
    ("saved (EUR)", "savings_eur", False),
)


_report_env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_report_template = _report_env.from_string(REPORT_TEMPLATE)


def render_report(
    period: Period,
    figures: list[Figures],
    past: list[dict],
    tariffs: Tariffs,
    anchor: tuple[int, str],
    out_root: Path,
) -> Path:
    """Write the period's one-page HTML report and its charts; return the report's path."""
    out_dir = out_root / period.kind / period.start.isoformat()
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = _charts(period, figures, past, out_dir)
    total = Figures("all")
    for f in figures:
        for name in ("letters_final", "ebox", "paper", "quarantined"):
            setattr(total, name, getattr(total, name) + getattr(f, name))
        total.printing_avoided_eur += f.printing_avoided_eur
        total.postage_avoided_eur += f.postage_avoided_eur
        total.followup_cost_eur += f.followup_cost_eur
    doc = _report_template.render(
        period=period,
        figures=figures,
        total=total,
        tariffs=tariffs,
        anchor=anchor,
        rows=REPORT_ROWS,
        charts=list(zip(charts, ("letters by channel", "trends"))),
        reasons=any(f.quarantine_reasons for f in figures),
    )
    path = out_dir / "report.html"
    _write(path, doc.encode("utf-8"))
    return path


def evaluate(
    conn,
    period: Period,
    tariffs: Tariffs | None = None,
    out_root: Path | None = None,
    run_id: str | None = None,
) -> dict:
    """Compute, store and report one period; the summary is what the task logs."""
    from include.dijlepost.audit import chain_head

    tariffs = tariffs or Tariffs.from_env()
    out_root = out_root or reports_dir()
    figures = compute(conn, period, tariffs)
    store(conn, period, figures, tariffs, run_id, None)  # the trend chart includes this period
    past = history(conn, period.kind, period.start)
    path = render_report(period, figures, past, tariffs, chain_head(conn), out_root)
    store(conn, period, figures, tariffs, run_id, str(path))
    return {
        "period": period.kind,
        "start": period.start.isoformat(),
        "letters": sum(f.letters_final for f in figures),
        "ebox": sum(f.ebox for f in figures),
        "paper": sum(f.paper for f in figures),
        "quarantined": sum(f.quarantined for f in figures),
        "savings_eur": str(sum((f.savings_eur for f in figures), Decimal("0.00"))),
        "report": str(path),
    }


def evaluated_day(run_after, override: str | None = None) -> date:
    """The day a run evaluates: `override` (YYYY-MM-DD) or the day before the run, in Europe/Brussels."""
    if override:
        return date.fromisoformat(override)
    return (pendulum.instance(run_after).in_timezone("Europe/Brussels") - timedelta(days=1)).date()
