"""The wave DAG through every answer a production eBox, its gateway or its operators can give.

Each test seeds a small finance outbox whose recipients all have an active eBox, sets one fault mode
of the eBox sandbox, runs `letters_finance` with `dag.test()` in a subprocess and reads the outcome
from the outside: the outbox, the letter events, the sandbox's publications and the task log.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date

import pytest

from demo import dataset
from include.dijlepost.ebox.client import idempotency_key
from include.dijlepost.intake import import_rows

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
RETRY_FAST = {"DIJLEPOST_TASK_RETRIES": "1", "DIJLEPOST_RETRY_DELAY_SECONDS": "1"}


def seed(db, ebox, n: int, seed_no: int) -> list[str]:
    data = dataset.build(
        seed=seed_no,
        mix={"finance": n},
        today=date(2026, 3, 2),
        prefix=f"A{seed_no}",
        ebox_share=1.0,
        mistakes=False,
    )
    report = import_rows(db, enumerate(data.letters, start=1))
    assert not report.errors
    for kind, rid in data.ebox_active:
        ebox.state.register_recipient(kind, rid, active=True)
    return [row["letter_id"] for row in data.letters]


def outbox(db) -> dict[str, tuple]:
    rows = db.execute(
        "SELECT letter_id, status, ebox_state, ebox_message_id, quarantine_reason, last_error FROM letters"
    ).fetchall()
    db.commit()
    return {r[0]: r[1:] for r in rows}


def events(db, event: str) -> dict[str, dict]:
    rows = db.execute("SELECT letter_id, details FROM letter_events WHERE event = %s", (event,)).fetchall()
    db.commit()
    return {r[0]: r[1] for r in rows}


def published_once(ebox, ids) -> None:
    keys = Counter(p["idempotency_key"] for p in ebox.state.publications())
    assert set(keys.values()) == {1} and set(keys) == {idempotency_key(i) for i in ids}


def with_connection_extra(ebox, **extra) -> dict:
    conn = ebox.airflow_connection()
    conn["extra"].update(extra)
    return {"AIRFLOW_CONN_EBOX_DEFAULT": json.dumps(conn)}


@pytest.mark.parametrize("fault", ["html_200_next", "empty_201_next"])
def test_a_gateway_answer_is_settled_by_its_409_never_counted_without_proof(db, ebox, run_wave, fault):
    ids = seed(db, ebox, 8, 31)
    ebox.state.set_faults(**{fault: 3})
    run_wave("letters_finance")
    after = outbox(db)
    assert {s[0] for s in after.values()} == {"delivered_ebox"}
    unconfirmed = events(db, "ebox_unconfirmed")
    assert len(unconfirmed) == 3
    delivered = events(db, "delivered_ebox")
    assert {delivered[i]["answer"] for i in unconfirmed} == {"already_published"}
    assert all(after[i][2] for i in set(ids) - set(unconfirmed))  # the others kept their messageId
    published_once(ebox, ids)


@pytest.mark.parametrize(
    "faults, setting",
    [
        ({"invalid_sender": True}, "sender_organization_id"),
        ({"forbidden": True}, "client_id"),
    ],
)
def test_a_refusal_of_the_sender_or_application_fails_the_run_once_and_quarantines_nothing(
    db, ebox, run_wave, faults, setting
):
    ids = seed(db, ebox, 8, 32)
    ebox.state.set_faults(**faults)
    log = run_wave("letters_finance", expect_success=False, **RETRY_FAST)
    after = outbox(db)
    assert not [i for i, s in after.items() if s[0] == "quarantined"]
    assert setting in log
    if faults.get("forbidden"):
        # 403 already for the message-type registry: the run stops before it claims anything.
        assert {s[0] for s in after.values()} == {"pending"}
    else:
        assert {s[0] for s in after.values()} == {"pending"}
        assert log.count("event=alert_ebox_configuration") == 1  # one chunk, one alert, no retry
    ebox.state.set_faults()
    run_wave("letters_finance")
    assert {s[0] for s in outbox(db).values()} == {"delivered_ebox"}
    published_once(ebox, ids)


@pytest.mark.parametrize(
    "faults",
    [
        {"fail_next": 4, "error_status": 408},
        {"outage_seconds": 4, "error_status": 429, "retry_after_seconds": 2},  # a 429 storm
        {"outage_seconds": 5, "error_status": 503},
        {"clock_skew_seconds": 20},  # within the assertion's leeway (30 s)
    ],
)
def test_transient_answers_and_a_short_outage_are_waited_out_in_the_same_run(db, ebox, run_wave, faults):
    ids = seed(db, ebox, 8, 33)
    ebox.state.set_faults(**faults)
    run_wave("letters_finance")
    assert {s[0] for s in outbox(db).values()} == {"delivered_ebox"}
    published_once(ebox, ids)


def test_an_outage_past_the_budget_fails_the_run_with_nothing_quarantined_and_the_next_run_delivers(
    db, ebox, run_wave
):
    ids = seed(db, ebox, 8, 34)
    ebox.state.set_faults(outage_seconds=120, error_status=503, retry_after_seconds=1)
    log = run_wave(
        "letters_finance",
        expect_success=False,
        **RETRY_FAST,
        **with_connection_extra(ebox, outage_budget_seconds=3),
    )
    assert {s[0] for s in outbox(db).values()} == {"pending"}
    assert "event=alert_ebox_unavailable" in log
    assert ebox.state.fault_injector.outage_answers < 40  # probes, not a storm
    ebox.state.set_faults()
    run_wave("letters_finance")
    assert {s[0] for s in outbox(db).values()} == {"delivered_ebox"}
    published_once(ebox, ids)


def test_a_clock_refused_by_the_token_endpoint_is_named(db, ebox, run_wave):
    seed(db, ebox, 4, 35)
    ebox.state.set_faults(clock_skew_seconds=120)
    log = run_wave("letters_finance", expect_success=False, **RETRY_FAST)
    assert "clock" in log and "assertion_leeway_seconds" in log
    assert {s[0] for s in outbox(db).values()} == {"pending"}
