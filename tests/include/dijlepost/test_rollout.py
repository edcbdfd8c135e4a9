"""Rollout phases and paper exemptions (`include.dijlepost.rollout`) against a real PostgreSQL."""
from __future__ import annotations

import pytest

from include.dijlepost.rollout import (PHASES, RolloutChangeRefused, RolloutState, UnknownRolloutPhase,
                                       add_exemption, read_state, remove_exemption, set_phase, show)
from include.dijlepost.waves import DEPARTMENTS

pytestmark = pytest.mark.integration


def phases(db) -> dict[str, tuple]:
    rows = db.execute("SELECT department, phase, pilot_allowlist, changed_by, reason FROM rollout_phases").fetchall()
    db.commit()
    return {r[0]: r[1:] for r in rows}


def history(db) -> list[tuple]:
    rows = db.execute("SELECT department, from_phase, to_phase, changed_by, reason FROM rollout_history "
                      "ORDER BY id").fetchall()
    db.commit()
    return rows


def exemptions(db) -> dict[str, tuple]:
    rows = db.execute("SELECT recipient_pseudonym, added_by, reason FROM paper_exemptions").fetchall()
    db.commit()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.parametrize("phase", PHASES)
def test_read_state_returns_each_phase_and_the_allowlist(db, phase):
    db.execute("UPDATE rollout_phases SET phase = %s, pilot_allowlist = %s WHERE department = 'gas'",
               (phase, ["r-aaa", "r-bbb"]))
    db.commit()
    st = read_state(db, "gas")
    assert st == RolloutState("gas", phase, frozenset({"r-aaa", "r-bbb"}))
    assert read_state(db, "finance").phase == "live"      # the fixture's reset, untouched by the update


def test_read_state_does_not_leave_a_transaction_open(db):
    read_state(db, "finance")
    assert db.info.transaction_status.name == "IDLE"


@pytest.mark.parametrize("bad", ["LIVE", "liv", "", "on", "live "])
def test_unknown_phase_in_the_table_is_an_error_never_live(db, bad):
    db.execute("UPDATE rollout_phases SET phase = %s WHERE department = 'economy_housing'", (bad,))
    db.commit()
    with pytest.raises(UnknownRolloutPhase) as info:
        read_state(db, "economy_housing")
    message = str(info.value)
    assert repr(bad) in message and "economy_housing" in message
    assert all(p in message for p in PHASES) and "refusing" in message


def test_department_without_a_row_is_an_error(db):
    saved = db.execute("SELECT department, phase, pilot_allowlist, changed_by, reason FROM rollout_phases "
                       "WHERE department = 'gas'").fetchone()
    db.execute("DELETE FROM rollout_phases WHERE department = 'gas'")
    db.commit()
    try:
        with pytest.raises(UnknownRolloutPhase, match="no rollout phase configured"):
            read_state(db, "gas")
        # set_phase creates the missing row, with from_phase None in the history
        assert set_phase(db, "gas", "paper", "restore", "tester") == (None, "paper")
        assert history(db)[-1] == ("gas", None, "paper", "tester", "restore")
    finally:
        db.rollback()
        db.execute("INSERT INTO rollout_phases (department, phase, pilot_allowlist, changed_by, reason) "
                   "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (department) DO NOTHING", saved)
        db.commit()


def test_xcom_round_trip():
    st = RolloutState("finance", "pilot", frozenset({"r-2", "r-1"}))
    data = st.to_xcom()
    assert data["pilot_allowlist"] == ["r-1", "r-2"]
    assert RolloutState.from_xcom(data) == st
    assert RolloutState.from_xcom({"department": "gas", "phase": "paper"}).pilot_allowlist == frozenset()


def test_set_phase_changes_the_phase_and_records_history(db):
    assert set_phase(db, "finance", "shadow", "  first shadow week  ", "an.admin") == ("live", "shadow")
    assert set_phase(db, "finance", "pilot", "pilot group ready", "an.admin", ["r-1", "r-2"]) == ("shadow", "pilot")
    assert set_phase(db, "finance", "live", "pilot went fine", "other.admin") == ("pilot", "live")

    assert phases(db)["finance"] == ("live", ["r-1", "r-2"], "other.admin", "pilot went fine")
    assert history(db) == [
        ("finance", "live", "shadow", "an.admin", "first shadow week"),
        ("finance", "shadow", "pilot", "an.admin", "pilot group ready"),
        ("finance", "pilot", "live", "other.admin", "pilot went fine"),
    ]
    assert read_state(db, "finance") == RolloutState("finance", "live", frozenset({"r-1", "r-2"}))


def test_set_phase_replaces_the_allowlist_only_when_given(db):
    set_phase(db, "gas", "pilot", "start", "a", ["r-1"])
    set_phase(db, "gas", "pilot", "keep", "a")
    assert read_state(db, "gas").pilot_allowlist == {"r-1"}
    set_phase(db, "gas", "pilot", "empty it", "a", [])
    assert read_state(db, "gas").pilot_allowlist == frozenset()


@pytest.mark.parametrize("department,phase,reason,by,match", [
    ("culture", "live", "why", "me", "unknown department"),
    ("finance", "liv", "why", "me", "unknown phase"),
    ("finance", "LIVE", "why", "me", "unknown phase"),
    ("finance", "paper", "", "me", "reason is required"),
    ("finance", "paper", "   \t", "me", "reason is required"),
    ("finance", "paper", None, "me", "reason is required"),
    ("finance", "paper", "why", "", "must be named"),
    ("finance", "paper", "why", "  ", "must be named"),
])
def test_set_phase_refuses_and_leaves_the_database_unchanged(db, department, phase, reason, by, match):
    before_phases, before_history = phases(db), history(db)
    with pytest.raises(RolloutChangeRefused, match=match):
        set_phase(db, department, phase, reason, by)
    assert phases(db) == before_phases
    assert history(db) == before_history


def test_show_lists_every_department(db):
    set_phase(db, "gas", "pilot", "pilot starts", "tester", ["r-1", "r-2", "r-3"])
    rows = {r["department"]: r for r in show(db)}
    assert sorted(rows) == sorted(DEPARTMENTS)
    assert (rows["gas"]["phase"], rows["gas"]["pilot_size"], rows["gas"]["changed_by"], rows["gas"]["reason"]) == \
        ("pilot", 3, "tester", "pilot starts")
    assert rows["finance"]["phase"] == "live" and rows["finance"]["pilot_size"] == 0


def test_exemptions_are_added_once_and_removed_once(db):
    assert add_exemption(db, "r-abc", " digipunt request ", "desk.clerk") is True
    assert add_exemption(db, "r-abc", "second request", "other.clerk") is False
    assert exemptions(db) == {"r-abc": ("desk.clerk", "digipunt request")}
    assert add_exemption(db, "r-def", "social service", "desk.clerk") is True

    assert remove_exemption(db, "r-abc") is True
    assert remove_exemption(db, "r-abc") is False
    assert remove_exemption(db, "r-never") is False
    assert exemptions(db) == {"r-def": ("desk.clerk", "social service")}


@pytest.mark.parametrize("reason", ["", "  ", None])
def test_an_exemption_needs_a_reason(db, reason):
    with pytest.raises(RolloutChangeRefused, match="reason"):
        add_exemption(db, "r-abc", reason, "desk.clerk")
    assert exemptions(db) == {}


@pytest.mark.parametrize("added_by", ["", "  ", None])
def test_an_exemption_names_who_added_it(db, added_by):
    with pytest.raises(RolloutChangeRefused, match="named"):
        add_exemption(db, "r-abc", "digipunt", added_by)
    assert exemptions(db) == {}
