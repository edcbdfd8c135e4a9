"""Figures of the admin page and CLI: recent runs and the shadow report, on letters the real pipeline
decided (real PostgreSQL, the eBox sandbox over HTTPS) and on hand-made rows for exact amounts."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from demo import dataset
from include.dijlepost import pipeline
from include.dijlepost.admin.figures import recent_runs, shadow_report, totals
from include.dijlepost.ebox import delivery
from include.dijlepost.ebox.client import EboxClient
from include.dijlepost.intake import import_rows
from include.dijlepost.outbox import RunContext, claim
from include.dijlepost.recipients import normalize_recipient_id
from include.dijlepost.rollout import RolloutChangeRefused, read_state, set_phase
from include.dijlepost.tariffs import Tariffs
from include.dijlepost.waves import WAVES
from tests.support.work import chunk_work

from .conftest import add_letters

pytestmark = pytest.mark.integration
KEY = b"test-pseudonym-key-not-secret"
TARIFFS = Tariffs(
    postage=Decimal("1.00"),
    registered_surcharge=Decimal("5.00"),
    print_per_letter=Decimal("0.20"),
    print_per_extra_page=Decimal("0.10"),
    print_per_extra_sheet=Decimal("0.05"),
    source="test",
)


def test_shadow_report_of_letters_the_pipeline_decided_in_shadow(rollout_db, ebox):
    db = rollout_db
    data = dataset.build(
        seed=11,
        mix={"economy_housing": 60},
        today=date(2026, 3, 2),
        prefix="SH",
        ebox_share=0.6,
        mistakes=False,
    )
    data.no_digital_user.clear()
    data.paper_exempt.clear()
    assert not import_rows(db, enumerate(data.letters, start=1)).errors
    for (kind, rid), exclusive in data.ebox_active.items():
        ebox.state.register_recipient(kind, rid, active=True, exclusively_ebox=exclusive)
    set_phase(db, "economy_housing", "shadow", "measure first", "tester")
    run = "letters_economy_housing:manual__1"
    ctx = RunContext(
        dag_id="letters_economy_housing", run_id="manual__1", task_id="t", map_index=-1, try_number=1
    )
    claim(
        db,
        chunk_work(run, wave="economy_housing", ctx=ctx),
        batch_size=1000,
        chunk_size=1000,
        lease=timedelta(hours=3),
    )
    with EboxClient(ebox.config(backoff_base_seconds=0.01, max_attempts=2, timeout_seconds=5)) as client:
        delivery.check_activation(
            db, chunk_work(run, key=KEY, ctx=ctx), client=client, freshness=timedelta(days=7)
        )
    pipeline.decide_claim(
        db,
        chunk_work(run, wave=WAVES["economy_housing"], key=KEY, ctx=ctx),
        state=read_state(db, "economy_housing"),
    )

    report = shadow_report(db, "economy_housing", TARIFFS)
    active = {(k, normalize_recipient_id(k, r)) for k, r in data.ebox_active}
    letters = db.execute(
        "SELECT recipient_kind, recipient_id, registered, shadow_channel, channel "
        "FROM letters WHERE department = 'economy_housing'"
    ).fetchall()
    db.commit()
    would_be_ebox = [r for r in letters if r[3] == "ebox"]
    assert report.decided == len(letters) == 60
    assert report.would_be_ebox == len(would_be_ebox) > 0
    assert report.would_be_ebox + report.would_be_paper + report.quarantined == 60
    # every would-be-eBox letter has an active eBox, and none of them actually went to the eBox
    assert all((k, normalize_recipient_id(k, rid)) in active for k, rid, *_ in would_be_ebox)
    assert all(r[4] == "paper" for r in would_be_ebox)
    # not rendered yet: one page each
    assert report.pages_estimated == report.would_be_ebox
    registered = sum(1 for r in would_be_ebox if r[2])
    assert report.postage_saving == Decimal("1.00") * len(would_be_ebox) + Decimal("5.00") * registered
    assert report.printing_saving == Decimal("0.20") * len(would_be_ebox)
    assert report.digital_share == pytest.approx(
        report.would_be_ebox / (report.would_be_ebox + report.would_be_paper)
    )

    runs = recent_runs(db, "economy_housing")
    assert [(r["run"], r["unfinished"], r["phases"]) for r in runs] == [(run, 60, "shadow")]
    assert recent_runs(db, "finance") == []


def test_shadow_report_counts_pages_and_registered_letters_exactly(rollout_db):
    db = rollout_db
    common = {"rollout_phase": "shadow", "decision_rule": "r", "decision_reason": "why"}
    add_letters(
        db,
        "gas",
        2,
        prefix="A",
        shadow_channel="ebox",
        channel="paper",
        pdf_pages=1,
        decided_at=_now(db),
        **common,
    )
    add_letters(
        db,
        "gas",
        1,
        prefix="B",
        shadow_channel="ebox",
        channel="paper",
        pdf_pages=4,
        registered=True,
        decided_at=_now(db),
        **common,
    )
    add_letters(
        db,
        "gas",
        1,
        prefix="C",
        shadow_channel="paper",
        channel="paper",
        pdf_pages=2,
        decided_at=_now(db),
        **common,
    )
    add_letters(db, "gas", 1, prefix="D", decided_at=_now(db), **common)  # quarantined
    add_letters(
        db,
        "gas",
        3,
        prefix="E",
        shadow_channel=None,
        channel="ebox",
        pdf_pages=1,
        decided_at=_now(db),
        rollout_phase="live",
        decision_rule="r",
        decision_reason="why",
    )  # not shadow
    r = shadow_report(db, "gas", TARIFFS)
    assert (r.decided, r.would_be_ebox, r.would_be_paper, r.quarantined, r.pages_estimated) == (5, 3, 1, 1, 0)
    # by hand: postage 2 x 1.00 + (1.00 + 5.00); printing 2 x 0.20 + (0.20 + 3 x 0.10 + 1 x 0.05: the
    # 4 pages of B take 2 sheets)
    assert (r.postage_saving, r.printing_saving, r.total_saving) == (
        Decimal("8.00"),
        Decimal("0.95"),
        Decimal("8.95"),
    )
    assert r.digital_share == 0.75
    d = r.to_dict()
    assert d["total_saving"] == "8.95" and d["tariffs"]["postage"] == "1.00" and d["digital_share"] == 0.75


def test_shadow_report_of_recent_days_only(rollout_db):
    db = rollout_db
    common = {
        "rollout_phase": "shadow",
        "decision_rule": "r",
        "decision_reason": "why",
        "shadow_channel": "ebox",
        "channel": "paper",
        "pdf_pages": 1,
    }
    add_letters(db, "gas", 2, prefix="OLD", decided_at=_now(db) - timedelta(days=10), **common)
    add_letters(db, "gas", 1, prefix="NEW", decided_at=_now(db) - timedelta(hours=1), **common)
    assert shadow_report(db, "gas", TARIFFS).would_be_ebox == 3
    assert shadow_report(db, "gas", TARIFFS, days=7).would_be_ebox == 1
    for bad in (0, -1, True):
        with pytest.raises(RolloutChangeRefused, match="days"):
            shadow_report(db, "gas", TARIFFS, days=bad)


def test_shadow_report_without_shadow_letters_has_no_share(rollout_db):
    r = shadow_report(rollout_db, "finance", TARIFFS)
    assert (r.decided, r.digital_share, r.total_saving) == (0, None, Decimal("0"))
    with pytest.raises(RolloutChangeRefused, match="unknown department"):
        shadow_report(rollout_db, "culture", TARIFFS)


def test_recent_runs_newest_first_and_limited(rollout_db):
    db = rollout_db
    for i in range(7):
        add_letters(
            db,
            "finance",
            1,
            prefix=f"R{i}",
            run=f"letters_finance:run-{i}",
            status="delivered_ebox",
            channel="ebox",
        )
        db.execute(
            "UPDATE letters SET final_at = now() + %s * interval '1 minute' WHERE claim_run_id = %s",
            (i, f"letters_finance:run-{i}"),
        )
        db.commit()
    add_letters(db, "finance", 2, prefix="Q", run="letters_finance:run-6", status="quarantined")
    runs = recent_runs(db, "finance", limit=5)
    assert [r["run"] for r in runs] == [f"letters_finance:run-{i}" for i in (6, 5, 4, 3, 2)]
    assert (runs[0]["ebox"], runs[0]["quarantined"], runs[0]["paper"]) == (1, 2, 0)
    assert totals(db)["finance"] == {"delivered_ebox": 7, "quarantined": 2}


def test_recent_runs_read_only_the_last_days(rollout_db):
    db = rollout_db
    add_letters(
        db,
        "gas",
        2,
        prefix="OLD",
        run="letters_gas:old",
        status="handed_to_print",
        channel="paper",
        decided_at=_now(db) - timedelta(days=20),
    )
    add_letters(db, "gas", 1, prefix="NEW", run="letters_gas:new", status="handed_to_print", channel="paper")
    assert [r["run"] for r in recent_runs(db, "gas")] == ["letters_gas:new"]
    assert [r["run"] for r in recent_runs(db, "gas", days=30)] == ["letters_gas:new", "letters_gas:old"]


def _now(db):
    value = db.execute("SELECT now()").fetchone()[0]
    db.commit()
    return value
