"""Behaviour of the ordered routing rules (`include.dijlepost.routing.decide`)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from include.dijlepost.rollout import PHASES, RolloutState, pilot_bucket
from include.dijlepost.routing import EBOX, PAPER, RULES, Decision, LetterFacts, decide

PILOT_MEMBER = "r-pilotmember000000001"
OUTSIDER = "r-outsider00000000000002"
PERCENT_MEMBER = "r-percentmember00000008"  # hash bucket 378: in every pilot of 4 % or more
PILOT_PERCENT = 20
ROUTED_PHASES = tuple(p for p in PHASES if p != "off")


def facts(**overrides) -> LetterFacts:
    """A letter that goes to the eBox when its department is live; tests change one fact at a time."""
    base = {
        "letter_id": "L-1",
        "recipient_pseudonym": PILOT_MEMBER,
        "recipient_id_error": None,
        "address_complete": True,
        "registered": False,
        "paper_exempt": False,
        "ebox_active": True,
        "ebox_state": None,
        "registered_via_ebox": True,
        "followup_of": None,
    }
    base.update(overrides)
    return LetterFacts(**base)


def state(phase: str, allowlist=(PILOT_MEMBER,), percent: int = 0) -> RolloutState:
    return RolloutState("finance", phase, frozenset(allowlist), percent)


def test_the_test_pseudonyms_fall_where_the_tests_need_them():
    assert pilot_bucket(PERCENT_MEMBER) < PILOT_PERCENT * 100
    assert pilot_bucket(PILOT_MEMBER) >= PILOT_PERCENT * 100
    assert pilot_bucket(OUTSIDER) >= PILOT_PERCENT * 100


# --------------------------------------------------------------------------- one rule at a time


def test_live_with_active_ebox_goes_to_ebox():
    d = decide(facts(), state("live"))
    assert (d.channel, d.rule, d.shadow_channel) == (EBOX, "ebox_active", None)
    assert d.reason


@pytest.mark.parametrize("phase", ROUTED_PHASES)
def test_in_flight_publication_beats_every_other_fact_in_every_phase(phase):
    worst = facts(
        ebox_state="in_flight",
        recipient_id_error="not a valid national register or BIS number",
        address_complete=False,
        paper_exempt=True,
        ebox_active=False,
        registered=True,
        registered_via_ebox=False,
        recipient_pseudonym=OUTSIDER,
    )
    d = decide(worst, state(phase))
    assert d.channel == EBOX
    assert d.rule == "ebox_publication_in_flight"


@pytest.mark.parametrize("phase", ROUTED_PHASES)
def test_paper_copy_of_an_unread_ebox_letter_goes_on_paper_whatever_else_holds(phase):
    # Everything else about the recipient says eBox (or would quarantine): the copy is for paper.
    for other in (
        {},
        {"paper_exempt": True},
        {"ebox_active": False},
        {"recipient_pseudonym": OUTSIDER},
        {"registered": True, "registered_via_ebox": False},
        {"ebox_state": "no_digital_user"},
        {"address_complete": False},
        {"recipient_id_error": "x"},
    ):
        d = decide(facts(followup_of="FIN-1", **other), state(phase))
        assert (d.channel, d.rule) == (PAPER, "unread_ebox_followup"), other
        assert "FIN-1" in d.reason


def test_paper_copy_rule_comes_right_after_the_in_flight_rule():
    names = [r.__name__ for r in RULES]
    assert names[:2] == ["ebox_publication_in_flight", "unread_ebox_followup"]
    d = decide(facts(followup_of="FIN-1", ebox_state="in_flight"), state("live"))
    assert d.rule == "ebox_publication_in_flight"


def test_shadow_keeps_the_paper_copy_rule():
    d = decide(facts(followup_of="FIN-1"), state("shadow"))
    assert (d.channel, d.rule, d.shadow_channel) == (PAPER, "unread_ebox_followup", PAPER)


@pytest.mark.parametrize("phase", ROUTED_PHASES)
def test_no_digital_user_answer_sends_paper_even_with_an_active_ebox(phase):
    d = decide(facts(ebox_state="no_digital_user"), state(phase))
    assert (d.channel, d.rule) == (PAPER, "no_digital_user")


@pytest.mark.parametrize("phase", ROUTED_PHASES)
def test_invalid_recipient_id_quarantines_before_any_phase_rule(phase):
    d = decide(
        facts(recipient_id_error="not a valid KBO enterprise number (checksum)", paper_exempt=True),
        state(phase),
    )
    assert d.channel is None
    assert d.rule == "invalid_recipient_id"
    assert "not a valid KBO enterprise number" in d.reason


@pytest.mark.parametrize("phase", ROUTED_PHASES)
def test_incomplete_address_quarantines_before_any_phase_rule(phase):
    d = decide(facts(address_complete=False), state(phase))
    assert (d.channel, d.rule) == (None, "incomplete_address")


def test_invalid_id_is_reported_before_an_incomplete_address():
    d = decide(facts(recipient_id_error="x", address_complete=False), state("live"))
    assert d.rule == "invalid_recipient_id"


def test_paper_phase_sends_paper_although_ebox_is_active():
    d = decide(facts(), state("paper"))
    assert (d.channel, d.rule, d.shadow_channel) == (PAPER, "department_not_live", None)
    assert "finance" in d.reason


def test_paper_phase_is_reported_before_a_paper_exemption():
    d = decide(facts(paper_exempt=True, ebox_active=False), state("paper"))
    assert d.rule == "department_not_live"


@pytest.mark.parametrize("phase", ["live", "pilot"])
def test_paper_exemption_wins_over_an_active_ebox(phase):
    d = decide(facts(paper_exempt=True, ebox_active=True), state(phase))
    assert (d.channel, d.rule) == (PAPER, "paper_preference")


def test_registered_letter_without_registered_e_delivery_goes_on_paper():
    d = decide(facts(registered=True, registered_via_ebox=False), state("live"))
    assert (d.channel, d.rule) == (PAPER, "registered_requires_paper")


def test_registered_letter_with_registered_e_delivery_goes_to_ebox():
    d = decide(facts(registered=True, registered_via_ebox=True), state("live"))
    assert (d.channel, d.rule) == (EBOX, "ebox_active")


def test_unregistered_letter_ignores_registered_via_ebox():
    d = decide(facts(registered=False, registered_via_ebox=False), state("live"))
    assert d.channel == EBOX


@pytest.mark.parametrize("active", [False, None])
def test_no_active_ebox_goes_on_paper(active):
    d = decide(facts(ebox_active=active), state("live"))
    assert (d.channel, d.rule) == (PAPER, "no_ebox")


def test_pilot_outsider_with_active_ebox_goes_on_paper():
    d = decide(facts(recipient_pseudonym=OUTSIDER), state("pilot"))
    assert (d.channel, d.rule) == (PAPER, "not_in_pilot")


def test_pilot_member_with_active_ebox_goes_to_ebox():
    d = decide(facts(recipient_pseudonym=PILOT_MEMBER), state("pilot"))
    assert (d.channel, d.rule) == (EBOX, "ebox_active")


def test_pilot_member_without_ebox_goes_on_paper_as_no_ebox():
    d = decide(facts(ebox_active=False), state("pilot"))
    assert (d.channel, d.rule) == (PAPER, "no_ebox")


def test_pilot_percentage_member_with_active_ebox_goes_to_ebox():
    d = decide(facts(recipient_pseudonym=PERCENT_MEMBER), state("pilot", allowlist=(), percent=PILOT_PERCENT))
    assert (d.channel, d.rule) == (EBOX, "ebox_active")


@pytest.mark.parametrize("percent", [0, 3])
def test_pilot_percentage_too_low_for_the_recipient_goes_on_paper(percent):
    d = decide(facts(recipient_pseudonym=PERCENT_MEMBER), state("pilot", allowlist=(), percent=percent))
    assert (d.channel, d.rule) == (PAPER, "not_in_pilot")


def test_pilot_allowlist_and_percentage_together():
    st = state("pilot", allowlist=(PILOT_MEMBER,), percent=PILOT_PERCENT)
    assert decide(facts(recipient_pseudonym=PILOT_MEMBER), st).channel == EBOX
    assert decide(facts(recipient_pseudonym=PERCENT_MEMBER), st).channel == EBOX
    assert decide(facts(recipient_pseudonym=OUTSIDER), st).rule == "not_in_pilot"


def test_pilot_of_a_hundred_percent_is_everyone_with_an_ebox():
    everyone = state("pilot", allowlist=(), percent=100)
    assert decide(facts(recipient_pseudonym=OUTSIDER), everyone).channel == EBOX


def test_shadow_decides_as_live_whatever_the_pilot_group():
    d = decide(facts(recipient_pseudonym=OUTSIDER), state("shadow", allowlist=(), percent=PILOT_PERCENT))
    assert (d.channel, d.rule, d.shadow_channel) == (PAPER, "shadow_mode", EBOX)


def test_live_ignores_the_pilot_allowlist():
    d = decide(facts(recipient_pseudonym=OUTSIDER), state("live", allowlist=()))
    assert d.channel == EBOX


def test_shadow_sends_a_would_be_ebox_letter_on_paper_and_records_ebox():
    d = decide(facts(recipient_pseudonym=OUTSIDER), state("shadow", allowlist=()))
    assert (d.channel, d.rule, d.shadow_channel) == (PAPER, "shadow_mode", EBOX)
    assert "eBox" in d.reason


@pytest.mark.parametrize(
    "overrides,rule",
    [
        ({"ebox_active": False}, "no_ebox"),
        ({"paper_exempt": True}, "paper_preference"),
        ({"registered": True, "registered_via_ebox": False}, "registered_requires_paper"),
        ({"ebox_state": "no_digital_user"}, "no_digital_user"),
    ],
)
def test_shadow_keeps_the_rule_of_a_would_be_paper_letter(overrides, rule):
    d = decide(facts(**overrides), state("shadow"))
    assert (d.channel, d.rule, d.shadow_channel) == (PAPER, rule, PAPER)


def test_shadow_quarantines_like_live():
    d = decide(facts(address_complete=False), state("shadow"))
    assert d.channel is None and d.rule == "incomplete_address"


def test_shadow_finishes_an_in_flight_publication_on_the_ebox():
    d = decide(facts(ebox_state="in_flight"), state("shadow"))
    assert (d.channel, d.rule) == (EBOX, "ebox_publication_in_flight")


def test_phase_off_is_never_routed():
    with pytest.raises(ValueError, match="off"):
        decide(facts(), state("off"))


def test_decision_is_immutable():
    d = decide(facts(), state("live"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.channel = PAPER  # type: ignore[misc]


# --------------------------------------------------------------------------- every combination

FACT_SPACE = {
    "recipient_id_error": (None, "not a valid national register or BIS number (checksum)"),
    "address_complete": (True, False),
    "registered": (False, True),
    "paper_exempt": (False, True),
    "ebox_active": (True, False, None),
    "ebox_state": (None, "in_flight", "no_digital_user", "rejected"),
    "registered_via_ebox": (True, False),
    "recipient_pseudonym": (PILOT_MEMBER, PERCENT_MEMBER, OUTSIDER),
    "followup_of": (None, "FIN-2026-000001"),
}
ALL_FACTS = [facts(**dict(zip(FACT_SPACE, values))) for values in itertools.product(*FACT_SPACE.values())]
RULE_NAMES = {r.__name__ for r in RULES} | {"shadow_mode"}


# pilot group configurations: (allowlist, percentage)
PILOT_GROUPS = {
    "allowlist": ((PILOT_MEMBER,), 0),
    "percent": ((), PILOT_PERCENT),
    "both": ((PILOT_MEMBER,), PILOT_PERCENT),
}


def _in_pilot_group(pseudonym: str, group: str) -> bool:
    """The policy: on the allowlist, or in the lowest `percent` of the stable hash buckets."""
    allowlist, percent = PILOT_GROUPS[group]
    return pseudonym in allowlist or pilot_bucket(pseudonym) * 100 < percent * 10_000


def _ebox_allowed(f: LetterFacts, phase: str, group: str = "allowlist") -> bool:
    """Written from the rollout policy, not from the rule list."""
    if f.ebox_state == "in_flight":
        return True
    if f.followup_of is not None:  # the paper copy of an unread eBox letter
        return False
    if phase in ("paper", "shadow"):
        return False
    return (
        f.ebox_active is True
        and not f.paper_exempt
        and f.recipient_id_error is None
        and f.address_complete
        and f.ebox_state != "no_digital_user"
        and not (f.registered and not f.registered_via_ebox)
        and (phase == "live" or _in_pilot_group(f.recipient_pseudonym, group))
    )


def test_fact_space_is_complete():
    assert len(ALL_FACTS) == 2 * 2 * 2 * 2 * 3 * 4 * 2 * 3 * 2


@pytest.mark.parametrize("group", sorted(PILOT_GROUPS))
@pytest.mark.parametrize("phase", ROUTED_PHASES)
def test_every_combination_goes_to_ebox_exactly_when_policy_allows(phase, group):
    allowlist, percent = PILOT_GROUPS[group]
    st = state(phase, allowlist=allowlist, percent=percent)
    wrong = []
    for f in ALL_FACTS:
        d = decide(f, st)
        assert isinstance(d, Decision) and d.rule in RULE_NAMES and d.reason
        if (d.channel == EBOX) != _ebox_allowed(f, phase, group):
            wrong.append((f, d))
    assert not wrong, f"{len(wrong)} decisions break the policy, first: {wrong[0]}"


@pytest.mark.parametrize("phase", ["shadow", "paper"])
def test_shadow_and_paper_never_send_ebox_unless_in_flight(phase):
    for f in ALL_FACTS:
        d = decide(f, state(phase))
        if d.channel == EBOX:
            assert f.ebox_state == "in_flight", (f, d)


def test_live_sends_ebox_only_when_active_and_not_exempt():
    for f in ALL_FACTS:
        d = decide(f, state("live"))
        if d.channel == EBOX and f.ebox_state != "in_flight":
            assert f.ebox_active is True and not f.paper_exempt, (f, d)


@pytest.mark.parametrize("phase", ROUTED_PHASES)
def test_quarantine_exactly_for_bad_id_or_address_unless_a_publication_is_in_flight(phase):
    for f in ALL_FACTS:
        d = decide(f, state(phase))
        # A letter the eBox may already hold is finished there; anything else with a bad id or no
        # printable address (even after NO_DIGITAL_USER) cannot be sent and is quarantined.
        # A paper copy of an unread eBox letter was printable when its original was decided.
        expect_quarantine = (
            f.ebox_state != "in_flight"
            and f.followup_of is None
            and (f.recipient_id_error is not None or not f.address_complete)
        )
        assert (d.channel is None) == expect_quarantine, (f, d)


def test_shadow_records_what_live_would_have_done():
    for f in ALL_FACTS:
        live = decide(f, state("live"))
        shadow = decide(f, state("shadow"))
        assert shadow.shadow_channel == live.channel, (f, live, shadow)
        if live.channel == EBOX and f.ebox_state != "in_flight":
            assert (shadow.channel, shadow.rule) == (PAPER, "shadow_mode")
        else:
            assert (shadow.channel, shadow.rule) == (live.channel, live.rule)


@pytest.mark.parametrize("phase", ["paper", "pilot", "live"])
def test_only_shadow_sets_shadow_channel(phase):
    assert all(decide(f, state(phase)).shadow_channel is None for f in ALL_FACTS)


def test_phase_off_raises_for_every_combination():
    for f in ALL_FACTS[:50]:
        with pytest.raises(ValueError):
            decide(f, state("off"))


@pytest.mark.parametrize("phase", ROUTED_PHASES)
def test_every_paper_copy_goes_on_paper_unless_a_publication_is_in_flight(phase):
    for f in ALL_FACTS:
        d = decide(f, state(phase))
        if f.followup_of is not None and f.ebox_state != "in_flight":
            assert (d.channel, d.rule) == (PAPER, "unread_ebox_followup"), (f, d)
        elif f.followup_of is None:
            assert d.rule != "unread_ebox_followup", (f, d)
