"""Rollout phases and paper exemptions (`include.dijlepost.rollout`) against a real PostgreSQL."""

from __future__ import annotations

import pytest

from include.dijlepost.rollout import (
    MAX_REASON,
    PHASES,
    PILOT_BUCKETS,
    RolloutChangeRefused,
    RolloutState,
    RolloutUnchanged,
    UnknownRolloutPhase,
    add_exemption,
    exemption_history,
    exemptions,
    pilot_bucket,
    read_state,
    remove_exemption,
    set_phase,
    show,
)
from include.dijlepost.rollout import history as phase_history
from include.dijlepost.waves import DEPARTMENTS

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _reset_rollout_admin(request):
    """The shared `db` fixture predates migration 0006: clear the pilot percentage and the exemption
    history before and after each test that uses the database, so no other test sees them."""
    if "db" not in request.fixturenames:
        yield
        return
    db = request.getfixturevalue("db")

    def reset():
        db.rollback()
        db.execute("UPDATE rollout_phases SET pilot_percent = 0")
        db.execute("TRUNCATE paper_exemption_history RESTART IDENTITY")
        db.commit()

    reset()
    yield
    reset()


def phases(db) -> dict[str, tuple]:
    rows = db.execute(
        "SELECT department, phase, pilot_allowlist, changed_by, reason, pilot_percent FROM rollout_phases"
    ).fetchall()
    db.commit()
    return {r[0]: r[1:] for r in rows}


def history(db) -> list[tuple]:
    rows = db.execute(
        "SELECT department, from_phase, to_phase, changed_by, reason FROM rollout_history ORDER BY id"
    ).fetchall()
    db.commit()
    return rows


def exempt_rows(db) -> dict[str, tuple]:
    rows = db.execute("SELECT recipient_pseudonym, added_by, reason FROM paper_exemptions").fetchall()
    db.commit()
    return {r[0]: r[1:] for r in rows}


@pytest.mark.parametrize("phase", PHASES)
def test_read_state_returns_each_phase_and_the_allowlist(db, phase):
    db.execute(
        "UPDATE rollout_phases SET phase = %s, pilot_allowlist = %s WHERE department = 'gas'",
        (phase, ["r-aaa", "r-bbb"]),
    )
    db.commit()
    st = read_state(db, "gas")
    assert st == RolloutState("gas", phase, frozenset({"r-aaa", "r-bbb"}))
    assert read_state(db, "finance").phase == "live"  # the fixture's reset, untouched by the update


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
    saved = db.execute(
        "SELECT department, phase, pilot_allowlist, changed_by, reason FROM rollout_phases "
        "WHERE department = 'gas'"
    ).fetchone()
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
        db.execute(
            "INSERT INTO rollout_phases (department, phase, pilot_allowlist, changed_by, reason) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (department) DO NOTHING",
            saved,
        )
        db.commit()


@pytest.mark.parametrize("percent", [0, 1, 37, 100])
def test_xcom_round_trip(percent):
    st = RolloutState("finance", "pilot", frozenset({"r-2", "r-1"}), percent)
    data = st.to_xcom()
    assert data["pilot_allowlist"] == ["r-1", "r-2"] and data["pilot_percent"] == percent
    assert RolloutState.from_xcom(data) == st
    old = RolloutState.from_xcom({"department": "gas", "phase": "paper"})  # an XCom from before 0006
    assert old.pilot_allowlist == frozenset() and old.pilot_percent == 0


def test_read_state_returns_the_pilot_percentage(db):
    set_phase(db, "gas", "pilot", "a quarter", "tester", pilot_percent=25)
    assert read_state(db, "gas") == RolloutState("gas", "pilot", frozenset(), 25)


def test_set_phase_changes_the_phase_and_records_history(db):
    assert set_phase(db, "finance", "shadow", "  first shadow week  ", "an.admin") == ("live", "shadow")
    assert set_phase(db, "finance", "pilot", "pilot group ready", "an.admin", ["r-1", "r-2"]) == (
        "shadow",
        "pilot",
    )
    assert set_phase(db, "finance", "live", "pilot went fine", "other.admin") == ("pilot", "live")

    assert phases(db)["finance"] == ("live", ["r-1", "r-2"], "other.admin", "pilot went fine", 0)
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
    set_phase(db, "gas", "pilot", "percentage instead", "a", [], pilot_percent=10)
    assert read_state(db, "gas") == RolloutState("gas", "pilot", frozenset(), 10)
    set_phase(db, "gas", "pilot", "keep the percentage", "a", ["r-9", "r-9", "r-8"])
    assert read_state(db, "gas") == RolloutState("gas", "pilot", frozenset({"r-8", "r-9"}), 10)
    set_phase(db, "gas", "live", "everyone", "a")
    assert read_state(db, "gas") == RolloutState("gas", "live", frozenset({"r-8", "r-9"}), 10)


def test_history_records_the_pilot_group_with_each_change(db):
    set_phase(db, "gas", "pilot", "ten percent", "a", ["r-1", "r-2"], pilot_percent="10")
    set_phase(db, "gas", "pilot", "twenty percent", "b", pilot_percent=" 20 % ")
    set_phase(db, "finance", "paper", "printer test", "c")
    rows = phase_history(db, "gas")
    assert [
        (r["from_phase"], r["to_phase"], r["changed_by"], r["reason"], r["pilot_percent"], r["pilot_size"])
        for r in rows
    ] == [("pilot", "pilot", "b", "twenty percent", 20, 2), ("live", "pilot", "a", "ten percent", 10, 2)]
    assert [r["department"] for r in phase_history(db)] == ["finance", "gas", "gas"]
    assert len(phase_history(db, limit=1)) == 1
    with pytest.raises(RolloutChangeRefused, match="unknown department"):
        phase_history(db, "culture")


@pytest.mark.parametrize(
    "percent,allowlist,match",
    [
        (0, [], "needs a pilot group"),
        (None, None, "needs a pilot group"),  # the fixture leaves no allowlist and 0 %
        (101, None, "outside 0..100"),
        (-1, None, "outside 0..100"),
        ("150", None, "outside 0..100"),
        ("ten", None, "not a whole number"),
        ("12.5", None, "not a whole number"),
        (12.5, None, "outside 0..100"),
        (True, None, "not a whole number"),
        ("²", None, "digits 0-9 only"),  # str.isdigit() says yes, int() says no
        ("１０", None, "digits 0-9 only"),  # int() would read 10
        ("٣٠", None, "digits 0-9 only"),
        ("1_0", None, "digits 0-9 only"),
        ("+10", None, "digits 0-9 only"),
        ("0010", None, "digits 0-9 only"),
        ("9" * 10_000, None, "of 10000 characters"),
        (10, ["85073003328"], "not recipient pseudonyms"),
    ],
)
def test_bad_pilot_group_is_refused_and_changes_nothing(db, percent, allowlist, match):
    before_phases, before_history = phases(db), history(db)
    with pytest.raises(RolloutChangeRefused, match=match):
        set_phase(db, "gas", "pilot", "try", "tester", allowlist, pilot_percent=percent)
    assert phases(db) == before_phases
    assert history(db) == before_history
    assert db.info.transaction_status.name == "IDLE"


def test_pilot_bucket_is_stable_and_spread_evenly():
    people = [f"r-{i:020x}" for i in range(20_000)]
    buckets = [pilot_bucket(p) for p in people]
    assert buckets == [pilot_bucket(p) for p in people]  # same person, same bucket
    assert all(0 <= b < PILOT_BUCKETS for b in buckets)
    for percent in (1, 10, 25, 50, 90):
        share = sum(RolloutState("gas", "pilot", pilot_percent=percent).in_pilot(p) for p in people) / len(
            people
        )
        assert abs(share - percent / 100) < 0.015, (percent, share)


def test_raising_the_percentage_only_adds_people():
    people = [f"r-{i:020x}" for i in range(5_000)]
    previous: set[str] = set()
    for percent in range(0, 101, 5):
        group = {p for p in people if RolloutState("gas", "pilot", pilot_percent=percent).in_pilot(p)}
        assert previous <= group, percent
        previous = group
    assert previous == set(people)  # 100 % is everyone
    assert not any(RolloutState("gas", "pilot").in_pilot(p) for p in people)  # 0 % and no allowlist


def test_the_allowlist_is_in_the_pilot_whatever_the_percentage():
    outsider = next(f"r-{i:020x}" for i in range(1000) if pilot_bucket(f"r-{i:020x}") >= 5_000)
    assert not RolloutState("gas", "pilot", pilot_percent=50).in_pilot(outsider)
    assert RolloutState("gas", "pilot", frozenset({outsider}), 50).in_pilot(outsider)


@pytest.mark.parametrize(
    "department,phase,reason,by,match",
    [
        ("culture", "live", "why", "me", "unknown department"),
        ("finance", "liv", "why", "me", "unknown phase"),
        ("finance", "LIVE", "why", "me", "unknown phase"),
        ("finance", "paper", "", "me", "reason is required"),
        ("finance", "paper", "   \t", "me", "reason is required"),
        ("finance", "paper", None, "me", "reason is required"),
        ("finance", "paper", "why", "", "must be named"),
        ("finance", "paper", "why", "  ", "must be named"),
        ("finance", "paper", "why", None, "must be named"),
        (None, "paper", "why", "me", "unknown department"),
    ],
)
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
    assert (
        rows["gas"]["phase"],
        rows["gas"]["pilot_size"],
        rows["gas"]["changed_by"],
        rows["gas"]["reason"],
    ) == ("pilot", 3, "tester", "pilot starts")
    assert rows["finance"]["phase"] == "live" and rows["finance"]["pilot_size"] == 0
    assert rows["gas"]["pilot_percent"] == 0


def test_exemptions_are_added_once_and_removed_once_with_their_history(db):
    assert add_exemption(db, "r-abc", " digipunt request ", "desk.clerk") is True
    assert add_exemption(db, "r-abc", "second request", "other.clerk") is False
    assert exempt_rows(db) == {"r-abc": ("desk.clerk", "digipunt request")}
    assert add_exemption(db, "r-def", "social service", "desk.clerk") is True

    assert remove_exemption(db, "r-abc", "has internet at home now", "other.clerk") is True
    assert remove_exemption(db, "r-abc", "again", "other.clerk") is False
    assert remove_exemption(db, "r-never", "never there", "other.clerk") is False
    assert exempt_rows(db) == {"r-def": ("desk.clerk", "social service")}
    assert [e["recipient_pseudonym"] for e in exemptions(db)] == ["r-def"]

    assert [
        (h["recipient_pseudonym"], h["action"], h["changed_by"], h["reason"]) for h in exemption_history(db)
    ] == [
        ("r-abc", "remove", "other.clerk", "has internet at home now"),
        ("r-def", "add", "desk.clerk", "social service"),
        ("r-abc", "add", "desk.clerk", "digipunt request"),
    ]
    assert [h["action"] for h in exemption_history(db, "r-abc")] == ["remove", "add"]


@pytest.mark.parametrize("reason", ["", "  ", None])
def test_an_exemption_needs_a_reason(db, reason):
    with pytest.raises(RolloutChangeRefused, match="reason"):
        add_exemption(db, "r-abc", reason, "desk.clerk")
    assert exempt_rows(db) == {}
    assert exemption_history(db) == []


@pytest.mark.parametrize("added_by", ["", "  ", None])
def test_an_exemption_names_who_added_it(db, added_by):
    with pytest.raises(RolloutChangeRefused, match="named"):
        add_exemption(db, "r-abc", "digipunt", added_by)
    assert exempt_rows(db) == {}


@pytest.mark.parametrize(
    "reason,by,match",
    [("", "clerk", "reason"), ("   ", "clerk", "reason"), (None, "clerk", "reason"), ("moved", "", "named")],
)
def test_removing_an_exemption_needs_a_reason_and_a_name_and_changes_nothing_without(db, reason, by, match):
    add_exemption(db, "r-abc", "digipunt", "desk.clerk")
    with pytest.raises(RolloutChangeRefused, match=match):
        remove_exemption(db, "r-abc", reason, by)
    assert exempt_rows(db) == {"r-abc": ("desk.clerk", "digipunt")}
    assert len(exemption_history(db)) == 1


@pytest.mark.parametrize("value", ["85073003328", "", None, "r-" + "a" * 80])
def test_an_exemption_is_keyed_by_a_pseudonym_never_a_raw_id(db, value):
    with pytest.raises(RolloutChangeRefused, match="not a recipient pseudonym"):
        add_exemption(db, value, "digipunt", "desk.clerk")
    assert exempt_rows(db) == {}


@pytest.mark.parametrize("percent,expected", [("0%", 0), (" 7 ", 7), ("100 %", 100), ("050", 50), (42, 42)])
def test_a_pilot_percentage_in_ascii_digits_is_read(percent, expected):
    from include.dijlepost.rollout import check_pilot_percent

    assert check_pilot_percent(percent) == expected


def test_a_change_to_the_phase_and_pilot_group_it_already_has_is_no_change(db):
    set_phase(db, "gas", "pilot", "a tenth", "tester", ["r-1"], pilot_percent=10)
    before_phases, before_history = phases(db), history(db)
    for allowlist, percent in ((None, None), (["r-1"], None), (["r-1", "r-1"], "10"), (None, 10)):
        with pytest.raises(RolloutUnchanged, match="gas is already in phase pilot with this pilot group"):
            set_phase(db, "gas", "pilot", "again", "other", allowlist, percent, refuse_unchanged=True)
        # code that sets up a known state gets the same answer without an error, and nothing written
        assert set_phase(db, "gas", "pilot", "again", "other", allowlist, percent) == ("pilot", "pilot")
    assert (phases(db), history(db)) == (before_phases, before_history)
    assert issubclass(RolloutUnchanged, RolloutChangeRefused)
    # a different pilot group in the same phase is a change
    assert set_phase(db, "gas", "pilot", "a fifth", "tester", pilot_percent=20, refuse_unchanged=True) == (
        "pilot",
        "pilot",
    )
    assert len(history(db)) == len(before_history) + 1


@pytest.mark.parametrize(
    "reason,match",
    [
        ("x" * (MAX_REASON + 1), f"the reason is {MAX_REASON + 1} characters long; at most {MAX_REASON}"),
        ("x" * 1_000_000, "1000000 characters long"),
        ("line one\nline two", "one line of text without control characters"),
        ("nul\x00byte", "without control characters"),
        ("one\u2028two", "without control characters"),
    ],
)
def test_reasons_are_bounded_one_line_texts_and_never_echoed(db, reason, match):
    before_phases, before_history = phases(db), history(db)
    with pytest.raises(RolloutChangeRefused, match=match) as refused:
        set_phase(db, "gas", "paper", reason, "tester")
    assert "xxxxxxxxxx" not in str(refused.value)
    with pytest.raises(RolloutChangeRefused, match=match):
        add_exemption(db, "r-abc", reason, "desk.clerk")
    add_exemption(db, "r-abc", "digipunt", "desk.clerk")
    with pytest.raises(RolloutChangeRefused, match=match):
        remove_exemption(db, "r-abc", reason, "desk.clerk")
    assert (phases(db), history(db)) == (before_phases, before_history)
    assert exempt_rows(db) == {"r-abc": ("desk.clerk", "digipunt")}


def test_a_reason_of_exactly_the_limit_is_kept(db):
    set_phase(db, "gas", "paper", "é" * MAX_REASON, "tester")
    assert phases(db)["gas"][3] == "é" * MAX_REASON


def test_the_name_of_who_changes_is_bounded(db):
    with pytest.raises(RolloutChangeRefused, match="the name is 201 characters long"):
        set_phase(db, "gas", "paper", "why", "n" * 201)
    with pytest.raises(RolloutChangeRefused, match="the name is 201 characters long"):
        add_exemption(db, "r-abc", "why", "n" * 201)
