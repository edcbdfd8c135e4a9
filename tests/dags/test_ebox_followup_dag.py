"""End to end: the finance wave publishes to the eBox, letters_ebox_followup makes one paper copy of
each important letter left unread, and the next finance run prints it. Real PostgreSQL, the eBox
sandbox over HTTPS and OpenSSH's sshd; DAGs run with `dag.test()` in a subprocess."""

from __future__ import annotations

from datetime import date

import pytest

from demo import dataset
from include.dijlepost.intake import import_rows
from include.dijlepost.waves import WAVES

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def rows(db) -> dict[str, dict]:
    cur = db.execute(
        "SELECT letter_id, letter_type, status, decision_rule, ebox_message_id, ebox_read_at, "
        "followup_of FROM letters"
    )
    names = [d[0] for d in cur.description]
    out = {r[0]: dict(zip(names, r)) for r in cur.fetchall()}
    db.commit()
    return out


def test_unread_important_letters_are_printed_once_after_the_period(db, ebox, run_wave):
    data = dataset.build(
        seed=81, mix={"finance": 10}, today=date(2026, 3, 2), prefix="E81", ebox_share=1.0, mistakes=False
    )
    assert not import_rows(db, enumerate(data.letters, start=1)).errors
    for kind, rid in data.ebox_active:
        ebox.state.register_recipient(kind, rid, active=True)
    run_wave("letters_finance")
    first = rows(db)
    assert {r["status"] for r in first.values()} == {"delivered_ebox"}
    important = {
        lid for lid, r in first.items() if r["letter_type"] in WAVES["finance"].followup_letter_types
    }
    assert important
    read = sorted(important)[0]
    ebox.state.mark_read(first[read]["ebox_message_id"])
    db.execute("UPDATE letters SET final_at = final_at - interval '15 days'")
    db.commit()

    log = run_wave("letters_ebox_followup")
    assert "event=ebox_read_status_fetched" in log and "event=ebox_followup_copies_created" in log
    after = rows(db)
    assert after[read]["ebox_read_at"] is not None
    copies = {r["followup_of"]: lid for lid, r in after.items() if r["followup_of"]}
    assert set(copies) == important - {read}

    run_wave("letters_finance")
    run_wave("letters_ebox_followup")  # a second follow-up run copies nothing again
    final = rows(db)
    assert {final[c]["status"] for c in copies.values()} == {"handed_to_print"}
    assert {final[c]["decision_rule"] for c in copies.values()} == {"unread_ebox_followup"}
    assert sum(1 for r in final.values() if r["followup_of"]) == len(copies)
