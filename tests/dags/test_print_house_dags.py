"""End-to-end runs of the print house's DAGs after a wave run: real PostgreSQL, OpenSSH's sshd, the
print house simulated on sshd's tree. The acknowledgements DAG moves letters on and refuses a corrupt
file (the run fails, with an alert line, and nothing changes)."""

from __future__ import annotations

from datetime import date

import pytest

from demo import dataset
from include.dijlepost.intake import import_rows
from include.dijlepost.rollout import set_phase
from sandboxes.printhouse.simulator import PrinterBehaviour, process_inbox

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def states(db) -> dict[str, tuple]:
    rows = db.execute("SELECT letter_id, status, print_status FROM letters").fetchall()
    db.commit()
    return {r[0]: r[1:] for r in rows}


def test_wave_then_acknowledgements_then_a_corrupt_file(db, run_wave, sshd):
    db.execute("TRUNCATE print_house_files")
    data = dataset.build(seed=71, mix={"finance": 9}, today=date(2026, 3, 2), prefix="E71", mistakes=False)
    assert not import_rows(db, enumerate(data.letters, start=1)).errors
    set_phase(db, "finance", "paper", "print only", "test")
    run_wave("letters_finance")
    assert {s[0] for s in states(db).values()} == {"handed_to_print"}

    done = process_inbox(sshd.root, PrinterBehaviour(reject_every=3, return_every=2))
    log = run_wave("print_house_acknowledgements")
    assert "event=print_house_files_collected" in log and "alert_" not in log
    after = states(db)
    rejected = sum(b["rejected"] for b in done["batches"].values())
    returned = sum(b["returned"] for b in done["batches"].values())
    assert sum(1 for s in after.values() if s == ("quarantined", "rejected")) == rejected > 0
    assert sum(1 for s in after.values() if s == ("handed_to_print", "returned")) == returned > 0
    assert sum(1 for s in after.values() if s == ("handed_to_print", "posted")) == 9 - rejected - returned

    (sshd.root / "outbox" / "finance-prior-0123456789abcdef.ack.csv").write_bytes(b"not,an\x00ack")
    log = run_wave(
        "print_house_acknowledgements",
        expect_success=False,
        DIJLEPOST_TASK_RETRIES="1",
        DIJLEPOST_RETRY_DELAY_SECONDS="1",
    )
    assert "event=alert_print_house_file_refused" in log and "finance-prior-0123456789abcdef.ack.csv" in log
    assert states(db) == after
    assert (sshd.root / "outbox" / "refused" / "finance-prior-0123456789abcdef.ack.csv").exists()
