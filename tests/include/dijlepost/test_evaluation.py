"""The rollout evaluation (`include.dijlepost.evaluation`) on a small data set whose figures are worked out
by hand below, on the real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import pytest

from include.dijlepost.db.migrate import available_migrations
from include.dijlepost.evaluation import Period, compute, evaluate, evaluated_day
from include.dijlepost.outbox import RunContext
from include.dijlepost.tariffs import Tariffs
from tests.support.database import SERVER

pytestmark = pytest.mark.integration

# Round figures so the sums below can be done by hand.
TARIFFS = Tariffs(
    postage=Decimal("1.00"),
    registered_surcharge=Decimal("5.00"),
    print_per_letter=Decimal("0.20"),
    print_per_extra_page=Decimal("0.10"),
    print_per_extra_sheet=Decimal("0.05"),
    source="test",
)
DAY = date(2026, 3, 10)  # a Tuesday; in Brussels (CET) it is [2026-03-09T23:00Z, 2026-03-10T23:00Z)
IN_DAY = "2026-03-10T10:00:00Z"
CTX = RunContext(dag_id="letters_finance", run_id="r", task_id="decide_channels", map_index=-1, try_number=1)


def letter(
    db,
    letter_id,
    department="finance",
    status="pending",
    final_at=None,
    pages=None,
    registered=False,
    reason=None,
    **extra,
):
    row = {
        "letter_id": letter_id,
        "department": department,
        "letter_type": "invoice",
        "recipient_kind": "citizen",
        "recipient_id": "85073003328",
        "recipient_name": "X",
        "street": "Bruul 1",
        "postal_code": "2800",
        "city": "Mechelen",
        "language": "nl",
        "status": status,
        "final_at": final_at,
        "pdf_pages": pages,
        "registered": registered,
        "quarantine_reason": reason,
        **extra,
    }
    db.execute(
        f"INSERT INTO letters ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})", list(row.values())
    )


def decided(db, letter_id, pseudonym, at=IN_DAY):
    db.execute("SELECT set_config('dijlepost.audit_break_glass', 'on', true)")  # to date the event
    db.execute(
        "INSERT INTO letter_events (letter_id, event, details, at) VALUES (%s, 'decided', %s, %s)",
        (letter_id, psycopg.types.json.Jsonb({"rule": "ebox_active", "recipient": pseudonym}), at),
    )


def seed(db, with_followups: bool = True):
    db.execute("DELETE FROM evaluation_figures")
    returned = {}
    if with_followups:
        returned = {
            "print_batch_id": "B1",
            "print_status": "returned",
            "print_reason": "moved",
            "print_acknowledged_at": IN_DAY,
            "print_returned_at": IN_DAY,
        }
    letter(
        db,
        "F1",
        status="delivered_ebox",
        final_at=IN_DAY,
        pages=1,
        **({"ebox_read_at": IN_DAY} if with_followups else {}),
    )
    letter(db, "F2", status="delivered_ebox", final_at=IN_DAY, pages=3)
    letter(db, "F3", status="delivered_ebox", final_at=IN_DAY, pages=1, registered=True)
    letter(db, "F4", status="handed_to_print", final_at=IN_DAY, pages=1, **returned)
    letter(db, "F5", status="handed_to_print", final_at=IN_DAY, pages=2)
    letter(db, "F6", status="quarantined", final_at=IN_DAY, reason="invalid_recipient_id: checksum fails")
    letter(
        db, "F7", status="quarantined", final_at=IN_DAY, reason="render: payload field 'amount' is missing"
    )
    letter(db, "F8", status="delivered_ebox", final_at="2026-03-09T22:59:59Z")  # Monday 23:59:59 in Brussels
    if with_followups:
        letter(db, "F9", pages=2, followup_of="F8", created_at=IN_DAY)  # paper copy of unread F8
    letter(db, "G1", department="gas", status="handed_to_print", final_at="2026-03-10T22:59:59Z")
    letter(db, "G2", department="gas", status="delivered_ebox", final_at="2026-03-10T23:00:00Z")  # Wednesday
    for lid, p in (("F1", "r-p1"), ("F2", "r-p1"), ("F3", "r-p2"), ("F4", "r-p3"), ("G1", "r-p4")):
        decided(db, lid, p)
    decided(db, "F5", "r-p5", at="2026-03-09T12:00:00Z")  # Monday: not this day
    db.execute(
        "INSERT INTO ebox_activation (recipient_pseudonym, recipient_kind, active, checked_at) VALUES "
        "('r-p1', 'citizen', true, now()), ('r-p2', 'citizen', false, now()), "
        "('r-p4', 'citizen', true, now()), ('r-p5', 'citizen', true, now())"
    )
    db.commit()


def by_dept(figures):
    return {f.department: f for f in figures}


def test_day_figures_match_the_hand_computed_ones(db):
    seed(db)
    f = by_dept(compute(db, Period.day(DAY), TARIFFS))
    fin, gas, eh = f["finance"], f["gas"], f["economy_housing"]
    # finance: F1..F7 finished on the day (F8 the evening before, in Brussels time).
    assert (fin.letters_final, fin.ebox, fin.paper, fin.quarantined) == (7, 3, 2, 2)
    assert fin.ebox_share == Decimal("0.6000")  # 3 / (3 + 2)
    assert (fin.recipients_checked, fin.recipients_active) == (2, 1)  # p1 active, p2 not, p3 never checked
    assert fin.activation_rate == Decimal("0.5000")
    assert (fin.ebox_unread, fin.paper_followups, fin.returned_mail) == (2, 1, 1)  # F2, F3; F9; F4
    assert fin.quarantine_reasons == {"invalid_recipient_id": 1, "render": 1}
    # printing avoided: F1 0.20 + F2 (0.20 + 2 pages x 0.10 + 1 sheet x 0.05: 3 pages on 2 sheets) + F3 0.20;
    # postage: 1.00 + 1.00 + (1.00 + 5.00)
    assert (fin.printing_avoided_eur, fin.postage_avoided_eur) == (Decimal("0.85"), Decimal("8.00"))
    assert fin.followup_cost_eur == Decimal("1.30")  # F9: 1.00 + 0.20 + 0.10 (2 pages, 1 sheet)
    assert fin.savings_eur == Decimal("7.55")
    # gas: G1 at 23:59:59 Brussels counts, G2 at midnight belongs to the next day.
    assert (gas.letters_final, gas.ebox, gas.paper, gas.ebox_share) == (1, 0, 1, Decimal("0.0000"))
    assert (gas.recipients_checked, gas.recipients_active, gas.activation_rate) == (1, 1, Decimal("1.0000"))
    assert (gas.ebox_unread, gas.paper_followups, gas.returned_mail, gas.savings_eur) == (
        0,
        0,
        0,
        Decimal("0.00"),
    )
    assert eh.letters_final == 0 and eh.ebox_share is None and eh.activation_rate is None


def test_week_figures_take_the_whole_iso_week(db):
    seed(db)
    week = Period.week_of(DAY)
    assert (week.start, week.end) == (date(2026, 3, 9), date(2026, 3, 16))
    f = by_dept(compute(db, week, TARIFFS))
    fin, gas = f["finance"], f["gas"]
    assert (fin.letters_final, fin.ebox, fin.paper) == (8, 4, 2)  # F8 (Monday) joins
    assert (fin.printing_avoided_eur, fin.postage_avoided_eur, fin.savings_eur) == (
        Decimal("1.05"),
        Decimal("9.00"),
        Decimal("8.75"),
    )  # + F8: 0.20 printing, 1.00 postage
    assert (fin.recipients_checked, fin.recipients_active) == (3, 2)  # + p5 decided on Monday
    assert (gas.ebox, gas.paper, gas.ebox_share) == (1, 1, Decimal("0.5000"))


def test_evaluate_stores_the_period_once_and_writes_its_report(db, tmp_path):
    seed(db)
    summary = evaluate(db, Period.day(DAY), TARIFFS, tmp_path, run_id="run-1")
    assert (summary["letters"], summary["ebox"], summary["savings_eur"]) == (8, 3, "7.55")
    evaluate(db, Period.day(DAY), TARIFFS, tmp_path, run_id="run-2")  # a rerun replaces, never adds
    rows = db.execute(
        "SELECT department, ebox, ebox_share, savings_eur, computed_by_run, report_path, "
        "tariffs->>'postage' FROM evaluation_figures WHERE period_kind = 'day' ORDER BY department"
    ).fetchall()
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("economy_housing", 0, None, Decimal("0.00"), "run-2"),
        ("finance", 3, Decimal("0.6000"), Decimal("7.55"), "run-2"),
        ("gas", 0, Decimal("0.0000"), Decimal("0.00"), "run-2"),
    ]
    assert rows[0][6] == "1.00"
    report = tmp_path / "day" / "2026-03-10" / "report.html"
    assert rows[1][5] == str(report)
    text = report.read_text()
    assert "8 letters finished: 3 to the eBox, 3 on paper" in text and "Saved EUR 7.55" in text
    assert "invalid_recipient_id &times; 1" in text
    head = db.execute(
        "SELECT chain_seq, encode(hash, 'hex') FROM letter_events ORDER BY chain_seq DESC LIMIT 1"
    ).fetchone()
    assert f"{head[0]}:{head[1]}" in text  # the audit anchor
    for png in ("channels.png", "trends.png"):
        assert (report.parent / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Another period gets its own files; the first one is kept.
    evaluate(db, Period.week_of(DAY), TARIFFS, tmp_path)
    assert report.exists() and (tmp_path / "week" / "2026-03-09" / "report.html").exists()


def test_figures_of_features_not_installed_are_not_measured(tmp_path):
    """A database with only the outbox and the audit migrations: read status, follow-ups and returned mail
    are NULL ("not measured"), never 0."""
    name = f"dijlepost_eval_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"{SERVER}/{name}") as conn:
            conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, checksum text NOT NULL)")
            for version, sql in available_migrations():
                if version.startswith(("0001", "0002", "0005")):
                    conn.execute(sql)
            conn.commit()
            seed(conn, with_followups=False)
            fin = by_dept(compute(conn, Period.day(DAY), TARIFFS))["finance"]
            assert (fin.ebox, fin.paper, fin.savings_eur) == (3, 2, Decimal("8.85"))
            assert (fin.ebox_unread, fin.paper_followups, fin.returned_mail) == (None, None, None)
            evaluate(conn, Period.day(DAY), TARIFFS, tmp_path)
            row = conn.execute(
                "SELECT ebox_unread, paper_followups, returned_mail FROM evaluation_figures "
                "WHERE department = 'finance'"
            ).fetchone()
            assert row == (None, None, None)
            assert "not measured" in (tmp_path / "day" / "2026-03-10" / "report.html").read_text()
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_run_evaluates_the_day_before_it_in_brussels():
    assert evaluated_day(datetime(2026, 3, 11, 5, 30, tzinfo=UTC)) == DAY
    assert evaluated_day(datetime(2026, 3, 10, 23, 30, tzinfo=UTC)) == DAY  # already the 11th in Brussels
    assert evaluated_day(datetime(2026, 3, 11, 5, 30, tzinfo=UTC), "2026-02-01") == date(2026, 2, 1)


def test_printing_avoided_follows_each_letters_pages_and_duplex_sheets(db):
    db.execute("DELETE FROM evaluation_figures")
    for i, pages in enumerate((1, 2, 3, 4, 5)):
        letter(db, f"P{i}", department="gas", status="delivered_ebox", final_at=IN_DAY, pages=pages)
    db.commit()
    gas = by_dept(compute(db, Period.day(DAY), TARIFFS))["gas"]
    # pages 1..5 print on 1, 1, 2, 2, 3 sheets: 5 x 0.20 + (0+1+2+3+4) x 0.10 + (0+0+1+1+2) x 0.05
    assert gas.printing_avoided_eur == Decimal("1.00") + Decimal("1.00") + Decimal("0.20")
    assert gas.postage_avoided_eur == Decimal("5.00")
    more_sheets = Tariffs(
        postage=Decimal("1.00"),
        print_per_letter=Decimal("0.20"),
        print_per_extra_page=Decimal("0"),
        print_per_extra_sheet=Decimal("1.00"),
    )
    assert by_dept(compute(db, Period.day(DAY), more_sheets))["gas"].printing_avoided_eur == Decimal("5.00")


def test_the_report_escapes_what_it_shows(db, tmp_path):
    db.execute("DELETE FROM evaluation_figures")
    letter(db, "Q1", status="quarantined", final_at=IN_DAY, reason="<script>alert(1)</script>: bad")
    db.commit()
    tariffs = Tariffs(source="<b>contract</b>")
    path = tmp_path / "day" / "2026-03-10" / "report.html"
    evaluate(db, Period.day(DAY), tariffs, tmp_path)
    text = path.read_text()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt; &times; 1" in text
    assert "<b>contract</b>" not in text and "&lt;b&gt;contract&lt;/b&gt;" in text
