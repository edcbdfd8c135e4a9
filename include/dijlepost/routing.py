"""Channel choice: an ordered list of small rules, each returning a channel, its own name and a reason.

The first rule that applies decides. `channel=None` means the letter cannot be sent at all and is
quarantined with the reason. The rule name and reason are stored with every letter and appear in the
task log, so an auditor can read why a letter went where it went.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from include.dijlepost.rollout import RolloutState
from include.dijlepost.states import EboxState

EBOX = "ebox"
PAPER = "paper"


@dataclass(frozen=True)
class LetterFacts:
    """What the rules may know about one letter; no personal data beyond the pseudonym."""

    letter_id: str
    recipient_pseudonym: str
    recipient_id_error: str | None  # why the id is invalid, or None
    address_complete: bool
    registered: bool
    paper_exempt: bool
    ebox_active: bool | None  # None: not checked (phase needs no check)
    ebox_state: str | None  # see migration 0002
    registered_via_ebox: bool = True
    followup_of: str | None = None  # a paper copy of this letter, whose eBox message stayed unread


@dataclass(frozen=True)
class Decision:
    channel: str | None  # "ebox" | "paper" | None (quarantine)
    rule: str
    reason: str
    shadow_channel: str | None = None  # shadow phase: where the letter would have gone if live


Rule = Callable[[LetterFacts, RolloutState], Decision | None]


def ebox_publication_in_flight(f: LetterFacts, r: RolloutState) -> Decision | None:
    if f.ebox_state == EboxState.IN_FLIGHT:
        return Decision(
            EBOX,
            "ebox_publication_in_flight",
            "an earlier attempt started the eBox publication; it is finished with the same "
            "idempotency key so that the letter is never sent twice",
        )
    return None


def unread_ebox_followup(f: LetterFacts, r: RolloutState) -> Decision | None:
    if f.followup_of is not None:
        return Decision(
            PAPER,
            "unread_ebox_followup",
            f"paper copy of letter {f.followup_of}: its eBox message was not opened within the "
            "follow-up period of its letter type",
        )
    return None


def no_digital_user(f: LetterFacts, r: RolloutState) -> Decision | None:
    if f.ebox_state == EboxState.NO_DIGITAL_USER:
        return Decision(
            PAPER,
            "no_digital_user",
            "the eBox will not reach the recipient: it answered "
            "NO_DIGITAL_USER, or a 409 whose recipient never opened "
            "the eBox or has none any more (letter_events say which)",
        )
    return None


def invalid_recipient_id(f: LetterFacts, r: RolloutState) -> Decision | None:
    if f.recipient_id_error:
        return Decision(None, "invalid_recipient_id", f"recipient id is {f.recipient_id_error}")
    return None


def incomplete_address(f: LetterFacts, r: RolloutState) -> Decision | None:
    if not f.address_complete:
        return Decision(
            None,
            "incomplete_address",
            "the postal address is incomplete, so paper (and paper fallback) is impossible",
        )
    return None


def department_not_live(f: LetterFacts, r: RolloutState) -> Decision | None:
    if r.phase == "paper":
        return Decision(PAPER, "department_not_live", f"department {r.department} is in rollout phase paper")
    return None


def paper_preference(f: LetterFacts, r: RolloutState) -> Decision | None:
    if f.paper_exempt:
        return Decision(PAPER, "paper_preference", "recipient is registered to keep receiving paper")
    return None


def registered_requires_paper(f: LetterFacts, r: RolloutState) -> Decision | None:
    if f.registered and not f.registered_via_ebox:
        return Decision(
            PAPER,
            "registered_requires_paper",
            "registered letter and this wave does not use registered e-delivery",
        )
    return None


def no_ebox(f: LetterFacts, r: RolloutState) -> Decision | None:
    if not f.ebox_active:
        return Decision(PAPER, "no_ebox", "recipient has no active eBox")
    return None


def not_in_pilot(f: LetterFacts, r: RolloutState) -> Decision | None:
    if r.phase == "pilot" and not r.in_pilot(f.recipient_pseudonym):
        return Decision(PAPER, "not_in_pilot", "recipient has an active eBox but is not in the pilot group")
    return None


def ebox_active(f: LetterFacts, r: RolloutState) -> Decision | None:
    return Decision(EBOX, "ebox_active", "recipient has an active eBox")


RULES: tuple[Rule, ...] = (
    ebox_publication_in_flight,
    unread_ebox_followup,
    invalid_recipient_id,
    incomplete_address,
    no_digital_user,
    department_not_live,
    paper_preference,
    registered_requires_paper,
    no_ebox,
    not_in_pilot,
    ebox_active,
)


def _first(facts: LetterFacts, state: RolloutState) -> Decision:
    for rule in RULES:
        decision = rule(facts, state)
        if decision is not None:
            return decision
    raise AssertionError("the last rule always decides")  # pragma: no cover


def decide(facts: LetterFacts, state: RolloutState) -> Decision:
    if state.phase == "off":
        raise ValueError("a department in phase off is never routed")
    if state.phase != "shadow":
        d = _first(facts, state)
        return Decision(d.channel, d.rule, d.reason, shadow_channel=None)
    # Shadow: decide exactly as live would, record it, and send paper instead of eBox.
    live = _first(facts, RolloutState(state.department, "live", state.pilot_allowlist, state.pilot_percent))
    if live.channel == EBOX and live.rule != "ebox_publication_in_flight":
        return Decision(
            PAPER,
            "shadow_mode",
            f"shadow phase: would have gone to eBox ({live.reason})",
            shadow_channel=EBOX,
        )
    return Decision(live.channel, live.rule, live.reason, shadow_channel=live.channel)
