"""Fault injection at the delivery level: `ebox.delivery.deliver_chunk_to_ebox` against the real sandbox
over HTTPS and the real PostgreSQL. For every answer of the eBox the letter ends in the right state;
whatever the faults, no letter is published twice (counted by Idempotency-Key and by file name in the
sandbox) and none is lost."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from demo import dataset
from include.dijlepost import ebox_followup, pipeline
from include.dijlepost.ebox import client as client_module
from include.dijlepost.ebox import delivery
from include.dijlepost.ebox.client import (
    PREFERENCE_SCOPE,
    SCOPES,
    EboxClient,
    EboxConfigurationError,
    EboxOutageError,
    idempotency_key,
)
from include.dijlepost.intake import import_rows
from include.dijlepost.outbox import RunContext, claim
from include.dijlepost.rendering import LetterRenderer
from include.dijlepost.rollout import read_state
from include.dijlepost.waves import WAVES, Wave
from sandboxes.ebox.app import (
    DEFAULT_CLIENT_ID,
    DEFAULT_SENDER_APPLICATION_ID,
    DEFAULT_SENDER_ORGANIZATION_ID,
    FEDERATION_PREFIX,
)
from tests.support.work import chunk_work

pytestmark = pytest.mark.integration
KEY = b"test-pseudonym-key-not-secret"
WAVE = WAVES["finance"]
CTX = RunContext(dag_id="letters_finance", run_id="manual__1", task_id="test", map_index=-1, try_number=1)


@pytest.fixture(scope="module")
def renderer():
    return LetterRenderer(today=date(2026, 3, 2))


def make_client(ebox, **config) -> EboxClient:
    return EboxClient(
        ebox.config(**{"backoff_base_seconds": 0.001, "max_attempts": 3, "timeout_seconds": 5, **config})
    )


@pytest.fixture
def client(ebox):
    with make_client(ebox) as c:
        yield c


def seed(db, ebox, n: int, seed_no: int) -> list[str]:
    data = dataset.build(
        seed=seed_no,
        mix={"finance": n},
        today=date(2026, 3, 2),
        prefix=f"X{seed_no}",
        ebox_share=1.0,
        mistakes=False,
    )
    assert not import_rows(db, enumerate(data.letters, start=1)).errors
    for kind, rid in data.ebox_active:
        ebox.state.register_recipient(kind, rid, active=True)
    return [row["letter_id"] for row in data.letters]


class Run:
    """One wave run up to the eBox step; `deliver` is the mapped task of one chunk."""

    def __init__(self, db, client, renderer, tmp_path, number: int, wave: Wave = WAVE, chunk_size: int = 4):
        self.db, self.renderer, self.wave = db, renderer, wave
        self.claim_id = f"letters_finance:manual__{number}"
        self.claim = claim(
            db,
            chunk_work(self.claim_id, ctx=CTX),
            batch_size=1000,
            chunk_size=chunk_size,
            lease=timedelta(hours=3),
        )
        delivery.check_activation(
            db, chunk_work(self.claim_id, key=KEY, ctx=CTX), client=client, freshness=timedelta(days=7)
        )
        pipeline.decide_claim(
            db, chunk_work(self.claim_id, wave=wave, key=KEY, ctx=CTX), state=read_state(db, "finance")
        )
        for chunk in self.claim.chunks:
            pipeline.render_chunk(
                db,
                chunk_work(self.claim_id, ctx=CTX, chunk=chunk),
                renderer=renderer,
                document_root=tmp_path / "docs",
            )

    def deliver(self, client, before_each_chunk=lambda: None) -> Counter:
        total: Counter = Counter()
        for chunk in self.claim.chunks:
            before_each_chunk()
            result = delivery.deliver_chunk_to_ebox(
                self.db,
                chunk_work(self.claim_id, wave=self.wave, key=KEY, ctx=CTX, chunk=chunk),
                client=client,
                renderer=self.renderer,
                concurrency=3,
            )
            total.update({k: v for k, v in result.items() if k not in ("chunk", "letters")})
        return total


def states(db) -> dict[str, tuple]:
    rows = db.execute(
        "SELECT letter_id, status, channel, decision_rule, ebox_state, ebox_message_id, "
        "quarantine_reason FROM letters"
    ).fetchall()
    db.commit()
    return {r[0]: r[1:] for r in rows}


def assert_published_at_most_once(ebox, letter_ids) -> dict[str, int]:
    """Counted twice over: per Idempotency-Key and per attached file name (`<Type>_<letter_id>.pdf`)."""
    publications = ebox.state.publications()
    by_key = Counter(p["idempotency_key"] for p in publications)
    by_file = Counter(p["attachments"][0]["fileName"] for p in publications)
    assert set(by_key.values()) <= {1} and set(by_file.values()) <= {1}
    keys = {idempotency_key(lid): lid for lid in letter_ids}
    assert set(by_key) <= set(keys) and all(
        any(f.endswith(f"_{lid}.pdf") for lid in letter_ids) for f in by_file
    )
    return {keys[k]: n for k, n in by_key.items()}


# --------------------------------------------------------------------------- one answer at a time


def test_201_delivers_and_keeps_the_message_id_and_expiry(db, ebox, client, renderer, tmp_path):
    ids = seed(db, ebox, 5, 61)
    assert Run(db, client, renderer, tmp_path, 1).deliver(client) == {"published": 5}
    after = states(db)
    published = {p["idempotency_key"]: p for p in ebox.state.publications()}
    expiry = dict(db.execute("SELECT letter_id, ebox_expires_at FROM letters").fetchall())
    db.commit()
    for lid in ids:
        stored = published[idempotency_key(lid)]
        assert after[lid][0] == "delivered_ebox" and after[lid][4] == stored["message_id"]
        # the eBox's expirationDate of the message, from its type's validity
        assert expiry[lid] == datetime.strptime(stored["expiration_date"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=UTC
        )
        assert expiry[lid] > datetime.now(UTC) + timedelta(days=300)
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


def test_letters_show_and_audit_trace_tell_until_when_the_ebox_keeps_the_letter(
    db, ebox, client, renderer, tmp_path, pg_url, capsys
):
    from include.dijlepost.cli import main

    (letter_id, *_) = seed(db, ebox, 1, 70)
    assert Run(db, client, renderer, tmp_path, 1).deliver(client) == {"published": 1}
    (stored,) = ebox.state.publications()
    expires = datetime.strptime(stored["expiration_date"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    capsys.readouterr()
    assert main(["--database-url", pg_url, "letters", "show", letter_id]) == 0
    shown = capsys.readouterr().out
    (line,) = [line for line in shown.splitlines() if "ebox_expires_at" in line]
    assert datetime.fromisoformat(line.split(": ", 1)[1].strip()) == expires
    assert main(["--database-url", pg_url, "audit", "trace", letter_id]) == 0
    (kept,) = [line for line in capsys.readouterr().out.splitlines() if "kept in the eBox until" in line]
    assert datetime.fromisoformat(kept.split("until ", 1)[1].strip()) == expires


def test_a_503_of_the_token_endpoint_is_retried_and_the_letters_go_through(db, ebox, renderer, tmp_path):
    ids = seed(db, ebox, 3, 71)
    with make_client(ebox) as client:
        run = Run(db, client, renderer, tmp_path, 1)
        ebox.state.revoke_tokens()
        client._invalidate_token(client._token)
        ebox.state.set_faults(token_fail_next=1, error_status=503)
        assert run.deliver(client) == {"published": 3}
    assert ebox.state.faults().token_fail_next == 0  # the failure was met, and got past
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


def test_a_400_invalid_access_token_is_renewed_once(db, ebox, client, renderer, tmp_path):
    ids = seed(db, ebox, 3, 72)
    run = Run(db, client, renderer, tmp_path, 1)
    ebox.state.set_faults(invalid_token_next=1)
    assert run.deliver(client) == {"published": 3}
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


def test_413_quarantines_the_letter_with_the_reason(db, ebox, client, renderer, tmp_path):
    seed(db, ebox, 2, 73)
    run = Run(db, client, renderer, tmp_path, 1)
    ebox.state.set_max_message_bytes(1024)  # smaller than any rendered letter
    assert run.deliver(client) == {"rejected": 2}
    for status, _, _, ebox_state, _, reason in states(db).values():
        assert (status, ebox_state) == ("quarantined", "rejected")
        assert reason.startswith("ebox rejected PAYLOAD_TOO_LARGE:") and "at most 1024 bytes" in reason
    assert ebox.state.publications() == []


# --------------------------------------------------------------------------- message types


def test_the_waves_message_types_pass_the_check(db, ebox, client):
    for wave in WAVES.values():
        checked = delivery.check_message_types(
            db, chunk_work("letters_finance:manual__1", wave=wave), client=client
        )
        assert set(checked["letter_types"]) == set(wave.letter_types)
        assert all(checked["validity"].values())


@pytest.mark.parametrize(
    "types, fragment",
    [
        (
            {"invoice": "MECH-FIN-INVOICE", "reminder": "MECH-FIN-REMINDER"},
            "letter type 'tax_assessment' has no eBox",
        ),
        (
            {"invoice": "MECH-FIN-INVOICE", "reminder": "MECH-FIN-REMINDER", "tax_assessment": " "},
            "letter type 'tax_assessment' has no eBox",
        ),
        (
            {
                "invoice": "MECH-FIN-INVOICE",
                "reminder": "MECH-FIN-REMINDERS",
                "tax_assessment": "MECH-FIN-TAX",
            },
            "letter type 'reminder' uses eBox message type 'MECH-FIN-REMINDERS', which the eBox's",
        ),
    ],
)
def test_an_unknown_or_missing_message_type_fails_before_anything_is_published(
    db, ebox, client, types, fragment
):
    ids = seed(db, ebox, 3, 74)
    wave = Wave(**{**WAVE.__dict__, "ebox_message_types": types})
    with pytest.raises(EboxConfigurationError, match=fragment) as caught:
        delivery.check_message_types(db, chunk_work("letters_finance:manual__1", wave=wave), client=client)
    assert caught.value.field == "ebox_message_types"
    assert ebox.state.publications() == []
    assert {s[0] for s in states(db).values()} == {"pending"}  # nothing claimed
    assert len(ids) == 3


def test_a_waiting_letter_of_a_type_outside_the_waves_map_fails_the_check(db, ebox, client):
    seed(db, ebox, 2, 75)
    db.execute(
        "UPDATE letters SET letter_type = 'reminder' WHERE letter_id = (SELECT min(letter_id) FROM letters)"
    )
    db.commit()
    wave = Wave(
        **{
            **WAVE.__dict__,
            "letter_types": ("invoice", "tax_assessment"),
            "ebox_message_types": {"invoice": "MECH-FIN-INVOICE", "tax_assessment": "MECH-FIN-TAX"},
        }
    )
    with pytest.raises(EboxConfigurationError, match="letter type 'reminder' has no eBox"):
        delivery.check_message_types(db, chunk_work("letters_finance:manual__1", wave=wave), client=client)


def test_a_message_type_the_sender_may_not_publish_fails_the_check(db, ebox, client, monkeypatch):
    from sandboxes.ebox.state import DEFAULT_MESSAGE_TYPES, MessageType

    monkeypatch.setattr(client_module, "_MESSAGE_TYPES_CACHE", {})
    others = [
        MessageType(
            t.message_type_id,
            t.name,
            t.validity_number,
            t.validity_unit,
            sender_application_ids=("someone-else",),
        )
        if t.message_type_id == "MECH-FIN-TAX"
        else t
        for t in DEFAULT_MESSAGE_TYPES
    ]
    ebox.state.register_message_types(others, replace=True)
    with pytest.raises(EboxConfigurationError, match="'MECH-FIN-TAX', which sender application 'dijlepost'"):
        delivery.check_message_types(db, chunk_work("letters_finance:manual__1", wave=WAVE), client=client)


def test_no_digital_user_reroutes_to_paper_in_the_same_run(db, ebox, client, renderer, tmp_path):
    ids = seed(db, ebox, 4, 62)
    ebox.state.set_faults(no_digital_user_next=2)
    outcomes = Run(db, client, renderer, tmp_path, 1).deliver(client)
    # Two recipients turn out never to have opened the eBox; a later letter to one of them too.
    assert outcomes["no_digital_user"] >= 2 and outcomes["published"] >= 1 and sum(outcomes.values()) == 4
    code = {p["idempotency_key"]: p["code"] for p in ebox.state.publications()}
    after = states(db)
    rerouted = {lid for lid in ids if after[lid][2] == "no_digital_user"}
    assert rerouted == {lid for lid in ids if code[idempotency_key(lid)] == "NO_DIGITAL_USER"}
    assert len(rerouted) == outcomes["no_digital_user"]
    for lid in rerouted:  # waits for hand_over_to_print of the same run, on paper
        assert after[lid][:4] == ("processing", "paper", "no_digital_user", "no_digital_user")
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


def test_409_counts_as_delivered_and_publishes_nothing(db, ebox, client, renderer, tmp_path):
    ids = seed(db, ebox, 3, 63)
    run = Run(db, client, renderer, tmp_path, 1)
    # Someone (an earlier attempt whose answer was lost) already published the first letter.
    ebox.state.set_faults(drop_next=1)
    with make_client(ebox, max_attempts=1) as lossy:
        lossy._access_token()
        outcomes = run.deliver(lossy)
    assert outcomes == {"published": 2, "retry_later": 1}
    # Publications run concurrently, so the dropped answer may belong to any of the three letters.
    (letter,) = [lid for lid, s in states(db).items() if s[0] == "pending"]
    run2 = Run(db, client, renderer, tmp_path, 2)
    assert run2.deliver(client) == {"already_published": 1}
    after = states(db)
    assert after[letter][0] == "delivered_ebox" and after[letter][4] is None  # a 409 repeats no messageId
    assert {s[0] for s in after.values()} == {"delivered_ebox"}
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


def test_the_same_400_for_every_letter_fails_the_task_once_and_quarantines_none(
    db, ebox, client, renderer, tmp_path
):
    seed(db, ebox, 6, 64)
    # A message type the eBox does not register is refused (INVALID_INPUT) for every letter alike.
    wave = Wave(
        **{**WAVE.__dict__, "ebox_message_types": dict.fromkeys(WAVE.letter_types, "MECH-NOT-REGISTERED")}
    )
    run = Run(db, client, renderer, tmp_path, 1, wave, chunk_size=6)
    with pytest.raises(EboxConfigurationError, match="3 letters in a row.*ebox_message_types"):
        run.deliver(client)
    after = states(db)
    assert {s[0] for s in after.values()} == {"pending"}  # none quarantined, all back in the outbox
    assert not any(s[5] for s in after.values())
    assert ebox.state.publications() == []
    # At most a few identical answers: the threads stopped sending after the third.
    assert len(events(db, "released_for_retry")) == 6


def test_a_400_of_one_letter_among_accepted_ones_quarantines_it_with_the_servers_message(
    db, ebox, client, renderer, tmp_path
):
    ids = seed(db, ebox, 4, 74)
    run = Run(db, client, renderer, tmp_path, 1, chunk_size=4)
    # One letter's recipient is refused by the eBox: its own answer, not the request's.
    bad = ids[2]
    db.execute("UPDATE letters SET pdf_subject = %s WHERE letter_id = %s", ("x" * 300, bad))
    db.commit()
    outcomes = run.deliver(client)
    assert outcomes == {"published": 3, "rejected": 1}
    after = states(db)
    assert after[bad][0] == "quarantined" and after[bad][3] == "rejected"
    assert after[bad][5].startswith("ebox rejected INVALID_INPUT:") and "subject" in after[bad][5]
    assert {after[i][0] for i in ids if i != bad} == {"delivered_ebox"}


def test_401_gets_one_fresh_token_and_the_letters_go_through(db, ebox, client, renderer, tmp_path):
    ids = seed(db, ebox, 4, 65)
    run = Run(db, client, renderer, tmp_path, 1)
    ebox.state.revoke_tokens()
    assert run.deliver(client) == {"published": 4}
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


def test_403_fails_the_task_once_and_gives_every_letter_back(db, ebox, client, renderer, tmp_path):
    ids = seed(db, ebox, 4, 66)
    run = Run(db, client, renderer, tmp_path, 1)
    registered = ebox.state.client(DEFAULT_CLIENT_ID)
    register = lambda scopes: ebox.state.register_client(  # noqa: E731
        DEFAULT_CLIENT_ID,
        registered.public_key_pem,
        DEFAULT_SENDER_ORGANIZATION_ID,
        DEFAULT_SENDER_APPLICATION_ID,
        scopes,
        certificate_thumbprint=registered.certificate_thumbprint,
    )
    register((PREFERENCE_SCOPE,))  # the publication scope was withdrawn: configuration, not data
    with pytest.raises(EboxConfigurationError, match="403.*client_id"):
        run.deliver(client)
    after = states(db)
    assert {s[0] for s in after.values()} == {"pending"}  # none quarantined
    sent = {lid for lid, s in after.items() if s[3] == "in_flight"}
    assert sent  # what reached the eBox stays in flight: the next run finishes it on the eBox
    register(SCOPES)
    with make_client(ebox) as fixed:  # the next run, with the scope back
        run2 = Run(db, fixed, renderer, tmp_path, 2)
        assert run2.deliver(fixed) == {"published": 4}
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


@pytest.mark.parametrize(
    "faults, match",
    [
        ({"invalid_sender": True}, "INVALID_SENDER.*sender_organization_id"),
        ({"forbidden": True}, "403"),
    ],
)
def test_a_refusal_of_the_sender_or_application_fails_the_task_once(
    db, ebox, client, renderer, tmp_path, faults, match
):
    ids = seed(db, ebox, 8, 75)
    run = Run(db, client, renderer, tmp_path, 1, chunk_size=8)
    ebox.state.set_faults(**faults)
    with pytest.raises(EboxConfigurationError, match=match):
        run.deliver(client)
    after = states(db)
    assert {s[0] for s in after.values()} == {"pending"} and not any(s[5] for s in after.values())
    # Only the calls in flight when the first refusal came (at most the client's 3 threads) left.
    never_sent = [lid for lid, s in after.items() if s[3] is None]
    assert len(never_sent) >= 8 - 3
    ebox.state.set_faults()
    with make_client(ebox) as fixed:
        assert Run(db, fixed, renderer, tmp_path, 2).deliver(fixed) == {"published": 8}
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


@pytest.mark.parametrize("fault", ["html_200_next", "empty_201_next"])
def test_an_answer_without_a_contract_message_id_is_never_counted_delivered_without_proof(
    db, ebox, client, renderer, tmp_path, fault
):
    ids = seed(db, ebox, 4, 76)
    run = Run(db, client, renderer, tmp_path, 1, chunk_size=4)
    ebox.state.set_faults(**{fault: 2})
    outcomes = run.deliver(client)
    # Two answers replaced by a gateway: published once more with the same key, read as 409 and
    # settled by the federation search (the recipients opened their eBox).
    assert outcomes == {"published": 2, "already_published": 2}
    unconfirmed = events(db, "ebox_unconfirmed")
    assert len(unconfirmed) == 2 and all(e["message_id"] is None for e in unconfirmed.values())
    delivered = events(db, "delivered_ebox")
    for lid in unconfirmed:
        assert delivered[lid]["answer"] == "already_published"
        assert "searchMessageStatus needs one" in delivered[lid]["no_message_id"]
    assert {s[0] for s in states(db).values()} == {"delivered_ebox"}
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


def test_an_unconfirmed_answer_twice_waits_in_flight_and_the_next_run_settles_it(
    db, ebox, client, renderer, tmp_path
):
    ids = seed(db, ebox, 1, 77)
    run = Run(db, client, renderer, tmp_path, 1, chunk_size=1)
    ebox.state.set_faults(html_200_next=1, empty_201_next=1)
    assert run.deliver(client) == {"unconfirmed": 1}
    (lid,) = ids
    assert states(db)[lid][0] == "pending" and states(db)[lid][3] == "in_flight"
    assert "unconfirmed" in events(db, "released_for_retry")[lid]["error"]
    run2 = Run(db, client, renderer, tmp_path, 2, chunk_size=1)
    assert states(db)[lid][2] == "ebox_publication_in_flight"
    assert run2.deliver(client) == {"already_published": 1}
    assert states(db)[lid][0] == "delivered_ebox"
    assert assert_published_at_most_once(ebox, ids) == {lid: 1}


def test_a_message_id_of_an_unconfirmed_answer_is_confirmed_by_the_status_search(
    db, ebox, client, renderer, tmp_path, monkeypatch
):
    """An answer that names a messageId but breaks the contract otherwise (here: an unknown code)."""
    ids = seed(db, ebox, 1, 78)
    run = Run(db, client, renderer, tmp_path, 1, chunk_size=1)
    original = client_module.EboxClient.publish_outcome

    def odd_code(response):
        outcome = original(response)
        if outcome.kind == "published":
            return client_module.PublishOutcome(
                "unconfirmed", message_id=outcome.message_id, code="HTTP_201", message="unknown code 'X'"
            )
        return outcome

    monkeypatch.setattr(client_module.EboxClient, "publish_outcome", staticmethod(odd_code))
    assert run.deliver(client) == {"already_published": 1}
    (lid,) = ids
    (publication,) = ebox.state.publications()
    after = states(db)[lid]
    assert after[0] == "delivered_ebox" and after[4] == publication["message_id"]
    assert events(db, "delivered_ebox")[lid]["message_id_source"] == "searchMessageStatus"


def test_an_outage_past_the_budget_gives_every_letter_back_and_quarantines_none(db, ebox, renderer, tmp_path):
    ids = seed(db, ebox, 6, 79)
    with make_client(ebox, outage_budget_seconds=2) as client:
        run = Run(db, client, renderer, tmp_path, 1, chunk_size=6)
        ebox.state.set_faults(outage_seconds=60, error_status=503)
        with pytest.raises(EboxOutageError, match="outage budget of 2 s"):
            run.deliver(client)
        # A few probes, not a storm: 3 failures open the breaker, one probe after 1 s, then stop.
        assert client.calls["transient"] <= 5
    after = states(db)
    assert {s[0] for s in after.values()} == {"pending"} and not any(s[5] for s in after.values())
    released = events(db, "released_for_retry")
    assert set(released) == set(ids) and all("EboxOutageError" in e["error"] for e in released.values())
    ebox.state.set_faults()
    with make_client(ebox) as client:
        assert Run(db, client, renderer, tmp_path, 2, chunk_size=6).deliver(client) == {"published": 6}
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


def test_a_short_outage_is_waited_out_by_every_thread_together(db, ebox, renderer, tmp_path):
    ids = seed(db, ebox, 12, 80)
    with make_client(ebox, outage_budget_seconds=30) as client:
        run = Run(db, client, renderer, tmp_path, 1, chunk_size=12)
        ebox.state.set_faults(outage_seconds=2, error_status=429, retry_after_seconds=1)
        assert run.deliver(client) == {"published": 12}
        assert client.breaker.openings == 1 and client.calls["transient"] <= 6
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


@pytest.mark.parametrize(
    "faults",
    [
        {"fail_next": 2, "error_status": 429, "retry_after_seconds": 0},
        {"fail_next": 2, "error_status": 500},
        {"fail_next": 2, "error_status": 503},
        {"drop_next": 2},
        {"timeout_next": 1, "timeout_delay_seconds": 0.8},
    ],
)
def test_transient_trouble_is_retried_and_each_letter_published_once(db, ebox, renderer, tmp_path, faults):
    ids = seed(db, ebox, 4, 67)
    with make_client(ebox, timeout_seconds=0.4) as client:
        run = Run(db, client, renderer, tmp_path, 1)
        ebox.state.set_faults(**faults)
        outcomes = run.deliver(client)
    assert outcomes["published"] + outcomes.get("already_published", 0) == 4
    assert {s[0] for s in states(db).values()} == {"delivered_ebox"}
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


# --------------------------------------------------------------------------- everything at once


def test_random_faults_over_several_runs_lose_nothing_and_publish_nothing_twice(db, ebox, renderer, tmp_path):
    ids = seed(db, ebox, 40, 69)
    # The seeded draws are shared by the four threads' requests in the order they arrive, so how many
    # NO_DIGITAL_USER answers a run gets depends on timing: the first two new publications always get
    # one, so that the check below always has answers to follow.
    ebox.state.set_faults(
        error_rate=0.15,
        error_status=503,
        drop_rate=0.15,
        no_digital_user_rate=0.1,
        no_digital_user_next=2,
        seed=5,
    )
    with make_client(ebox, max_attempts=2) as client:
        for number in range(1, 12):
            run = Run(db, client, renderer, tmp_path, number)
            run.deliver(client)
            if not any(s[0] == "pending" for s in states(db).values()):
                break
    after = states(db)
    assert not [lid for lid, s in after.items() if s[0] == "pending"], "some letters were never finished"
    counts = assert_published_at_most_once(ebox, ids)
    for lid in ids:
        status, channel, rule, _ebox_state, _message_id, _ = after[lid]
        assert counts.get(lid) == 1, lid  # every letter reached the eBox exactly once
        if rule == "no_digital_user":
            assert (status, channel) == ("processing", "paper")
        else:
            assert status == "delivered_ebox", (lid, after[lid])
    code = {p["idempotency_key"]: p["code"] for p in ebox.state.publications()}
    ndu = {lid for lid in ids if code[idempotency_key(lid)] == "NO_DIGITAL_USER"}
    # Lost NO_DIGITAL_USER answers included (read as 409, settled by the federation search): every
    # letter the eBox answered NO_DIGITAL_USER is on paper, and no other.
    assert ndu and {lid for lid in ids if after[lid][2] == "no_digital_user"} == ndu


def events(db, event: str) -> dict[str, dict]:
    rows = db.execute("SELECT letter_id, details FROM letter_events WHERE event = %s", (event,)).fetchall()
    db.commit()
    return {r[0]: r[1] for r in rows}


def test_a_lost_no_digital_user_answer_reads_409_and_goes_on_paper_in_the_same_run(
    db, ebox, client, renderer, tmp_path
):
    ids = seed(db, ebox, 8, 70)
    run = Run(db, client, renderer, tmp_path, 1, chunk_size=1)
    # Every first answer is lost after the eBox stored NO_DIGITAL_USER; the retry reads 409.
    outcomes = run.deliver(client, lambda: ebox.state.set_faults(no_digital_user_rate=1.0, drop_next=1))
    assert {p["code"] for p in ebox.state.publications()} == {"NO_DIGITAL_USER"}
    # The federation search shows none of them ever connected: NO_DIGITAL_USER after all.
    assert outcomes == {"never_connected": len(ids)}
    after = states(db)
    for lid in ids:  # waits for hand_over_to_print of the same run, on paper
        assert after[lid][:5] == ("processing", "paper", "no_digital_user", "no_digital_user", None)
    reasons = {r[0] for r in db.execute("SELECT decision_reason FROM letters").fetchall()}
    db.commit()
    assert len(reasons) == 1 and "409" in reasons.pop()
    rerouted = events(db, "rerouted_to_paper")
    assert rerouted == {lid: {"rule": "no_digital_user", "answer": "never_connected"} for lid in ids}
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


def test_a_lost_answer_to_someone_who_opened_the_ebox_stays_delivered_and_the_follow_up_prints_a_copy(
    db, ebox, client, renderer, tmp_path
):
    ids = seed(db, ebox, 8, 71)
    run = Run(db, client, renderer, tmp_path, 1, chunk_size=1)
    outcomes = run.deliver(client, lambda: ebox.state.set_faults(drop_next=1))
    assert {p["code"] for p in ebox.state.publications()} == {None}
    assert outcomes == {"already_published": len(ids)}
    after = states(db)
    assert {(s[0], s[4]) for s in after.values()} == {("delivered_ebox", None)}
    assert {lid: d["answer"] for lid, d in events(db, "delivered_ebox").items()} == dict.fromkeys(
        ids, "already_published"
    )

    # A 409 repeats no message id, so the read status cannot be asked: once the follow-up period has
    # passed, important letters get their paper copy (the safe side).
    db.execute("UPDATE letters SET final_at = final_at - interval '15 days'")
    db.commit()
    fctx = RunContext(dag_id="letters_ebox_followup", run_id="scheduled__1", task_id="t")
    result = ebox_followup.create_paper_copies(db, fctx)
    types = dict(db.execute("SELECT letter_id, letter_type FROM letters").fetchall())
    db.commit()
    important = {lid for lid in ids if types[lid] in WAVE.followup_letter_types}
    assert important and result["by_reason"] == {"no_message_id": len(important)}
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


def test_a_409_whose_activation_lookup_fails_waits_in_flight_for_the_next_run(
    db, ebox, client, renderer, tmp_path
):
    ids = seed(db, ebox, 3, 72)
    run = Run(db, client, renderer, tmp_path, 1, chunk_size=1)
    # Every first answer is lost, the retry reads 409, and the federation search cannot be reached.
    # One letter per chunk, its faults set before it: with three letters in flight at once, a quick
    # retry of one could take another's dropped answer.
    unreachable = f"https://127.0.0.1:9{FEDERATION_PREFIX}/"  # nothing listens on the discard port
    with make_client(ebox, federation_url=unreachable, max_attempts=2) as cut_off:
        faults = lambda: ebox.state.set_faults(no_digital_user_next=1, drop_next=1)  # noqa: E731
        assert run.deliver(cut_off, faults) == {"retry_later": 3}
    after = states(db)
    assert {s[:4] for s in after.values()} == {("pending", "ebox", "ebox_active", "in_flight")}
    assert {
        "409" in d["error"] and "lookup" in d["error"] for d in events(db, "released_for_retry").values()
    } == {True}

    # The next run publishes nothing new: 409 again, and this time the search answers.
    run2 = Run(db, client, renderer, tmp_path, 2)
    assert run2.deliver(client) == {"never_connected": 3}
    assert {s[:4] for s in states(db).values()} == {
        ("processing", "paper", "no_digital_user", "no_digital_user")
    }
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)


def test_a_task_that_fails_before_settling_its_409s_leaves_them_in_flight_and_the_retry_settles_them(
    db, ebox, client, renderer, tmp_path
):
    ids = seed(db, ebox, 4, 73)
    run = Run(db, client, renderer, tmp_path, 1)
    (chunk,) = run.claim.chunks
    paths = dict(db.execute("SELECT letter_id, pdf_path FROM letters").fetchall())
    db.commit()
    first, last = sorted(ids)[0], sorted(ids)[-1]
    # The first letter's answer is lost (its retry reads 409, to be settled after the chunk); the last
    # letter's PDF is gone, so the task fails before it gets there.
    hidden = Path(paths[last]).rename(tmp_path / "hidden.pdf")
    ebox.state.set_faults(drop_next=1)
    with pytest.raises(FileNotFoundError):
        delivery.deliver_chunk_to_ebox(
            db,
            chunk_work(run.claim_id, wave=WAVE, key=KEY, ctx=CTX, chunk=chunk),
            client=client,
            renderer=renderer,
            concurrency=1,
        )
    after = states(db)
    assert after[first][:4] == ("processing", "ebox", "ebox_active", "in_flight")  # not settled, not lost
    assert [after[lid][0] for lid in sorted(ids)[1:-1]] == [
        "delivered_ebox"
    ] * 2  # recorded before the failure
    assert after[last][:4] == ("processing", "ebox", "ebox_active", "in_flight")

    # Airflow's retry of the task: the same keys; the 409 is settled, the last letter published.
    hidden.rename(paths[last])
    retry = delivery.deliver_chunk_to_ebox(
        db,
        chunk_work(run.claim_id, wave=WAVE, key=KEY, ctx=CTX, chunk=chunk),
        client=client,
        renderer=renderer,
        concurrency=1,
    )
    assert (retry["already_published"], retry["published"]) == (1, 1)
    assert {s[0] for s in states(db).values()} == {"delivered_ebox"}
    assert assert_published_at_most_once(ebox, ids) == dict.fromkeys(ids, 1)
