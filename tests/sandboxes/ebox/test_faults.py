"""The sandbox's fault injection over HTTPS: latency, 500, dropped connections, NO_DIGITAL_USER by
configuration, and the publications (with digests and keys) inspected over HTTP."""

from __future__ import annotations

import ssl

import httpx
import pytest

from include.dijlepost.ebox.client import (
    EboxClient,
    EboxConfigurationError,
    EboxOutageError,
    EboxUnavailableError,
    idempotency_key,
    sha256_base64url,
)
from tests.include.dijlepost.ebox.helpers import CITIZEN_ID, ENTERPRISE_ID, publication

OTHER_ENTERPRISE_ID = "0403170701"

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(ebox):
    with httpx.Client(
        base_url=ebox.base_url, verify=ssl.create_default_context(cafile=str(ebox.ca_path))
    ) as c:
        yield c


def client_for(ebox, **config) -> EboxClient:
    return EboxClient(ebox.config(**{"backoff_base_seconds": 0.001, "timeout_seconds": 5, **config}))


def set_faults(admin, **faults) -> dict:
    answer = admin.put("/_sandbox/faults", json=faults)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_dropped_connection_loses_the_answer_not_the_publication(ebox, admin):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    set_faults(admin, drop_next=1)
    with client_for(ebox, max_attempts=1) as client:
        client._access_token()  # the token endpoint is never faulted; fetch it outside the count
        lost = client.publish(publication())
        assert (lost.kind, lost.message) == ("retry_later", "RemoteProtocolError")
        stored = admin.get(
            "/_sandbox/publications", params={"idempotency_key": idempotency_key("L-0001")}
        ).json()
        assert len(stored) == 1  # processed before the connection was closed
        assert client.publish(publication()).kind == "already_published"
    assert len(ebox.state.publications()) == 1


def test_a_retry_after_a_dropped_connection_reads_409(ebox, admin):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    with client_for(ebox, max_attempts=3) as client:
        client._access_token()
        set_faults(admin, drop_next=1)
        assert client.publish(publication()).kind == "already_published"
    assert len(ebox.state.publications()) == 1


def test_a_drop_rate_is_drawn_with_the_other_rates(ebox, admin):
    set_faults(admin, error_rate=0.2, timeout_rate=0.2, drop_rate=0.3, seed=11)
    draws = [ebox.state.roll_fault() for _ in range(400)]
    assert {"error", "timeout", "drop", None} == set(draws)
    answer = admin.put("/_sandbox/faults", json={"error_rate": 0.5, "drop_rate": 0.6})
    assert answer.status_code == 400 and "add up to at most 1" in answer.json()["message"]


def test_500_is_retried_and_then_the_letter_is_published_once(ebox, admin):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    assert set_faults(admin, fail_next=2, error_status=500)["error_status"] == 500
    with client_for(ebox, max_attempts=3) as client:
        assert client.publish(publication()).kind == "published"
    assert len(ebox.state.publications()) == 1
    refused = admin.put("/_sandbox/faults", json={"error_status": 418})
    assert (refused.status_code, refused.json()["code"]) == (400, "INVALID_INPUT")
    assert "error_status" in refused.json()["message"]


def test_a_503_of_the_token_endpoint_is_retried_and_the_publication_succeeds(ebox, admin):
    """The token request is retried like any call, each attempt with a new assertion (a repeated
    jti would be refused as a replay and read as bad configuration)."""
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    set_faults(admin, token_fail_next=2, error_status=503, retry_after_seconds=0)
    with client_for(ebox, max_attempts=3) as client:
        assert client.publish(publication()).kind == "published"
    assert len(ebox.state.publications()) == 1
    assert admin.get("/_sandbox/faults").json()["token_fail_next"] == 0


def test_a_token_endpoint_that_stays_down_stops_the_task_at_its_outage_budget(ebox, admin):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    set_faults(admin, token_error_rate=1.0, error_status=429, retry_after_seconds=0)
    with client_for(ebox, max_attempts=2, outage_budget_seconds=2) as client:
        with pytest.raises(EboxOutageError, match="HTTP 429"):
            client.publish(publication())
        # Retry-After: 0 is no licence to hammer: the breaker pauses 1 s anyway, then one probe; the
        # next pause (2 s) would pass the budget.
        assert client.calls["transient"] == 2
    assert ebox.state.publications() == []


@pytest.mark.parametrize("status", [408, 425, 502, 504])
def test_408_425_and_gateway_errors_are_retried(ebox, admin, status):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    set_faults(admin, fail_next=1, error_status=status)
    with client_for(ebox, max_attempts=3) as client:
        assert client.publish(publication()).kind == "published"
    assert len(ebox.state.publications()) == 1


def test_an_outage_answers_every_call_for_its_seconds_and_counts_them(ebox, admin):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    set_faults(admin, outage_seconds=1.5, error_status=503, retry_after_seconds=1)
    with client_for(ebox) as client:
        assert client.publish(publication()).kind == "published"  # waited out by the breaker
        assert client.breaker.openings == 1 and client.calls["transient"] <= 3
    stats = admin.get("/_sandbox/faults").json()["stats"]
    assert 1 <= stats["outage_answers"] <= 3 and stats["outage_left_seconds"] == 0
    assert len(ebox.state.publications()) == 1


@pytest.mark.parametrize("fault, status", [("html_200_next", 200), ("empty_201_next", 201)])
def test_a_gateway_answer_leaves_the_publication_unconfirmed_and_the_republication_reads_409(
    ebox, admin, fault, status
):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    set_faults(admin, **{fault: 1})
    with client_for(ebox) as client:
        first = client.publish(publication())
        assert (first.kind, first.status, first.message_id) == ("unconfirmed", status, None)
        assert client.publish(publication()).kind == "already_published"  # the eBox had processed it
    assert len(ebox.state.publications()) == 1


def test_invalid_sender_and_a_forbidden_application_are_configuration_errors(ebox, admin):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    set_faults(admin, invalid_sender=True)
    with client_for(ebox) as client, pytest.raises(EboxConfigurationError, match="sender_organization_id"):
        client.publish(publication())
    set_faults(admin, forbidden=True)
    with client_for(ebox) as client, pytest.raises(EboxConfigurationError, match="403.*client_id"):
        client.publish(publication())
    assert ebox.state.publications() == []


def test_a_token_endpoint_whose_clock_runs_behind_is_met_by_the_leeway_or_named(ebox, admin):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    set_faults(admin, clock_skew_seconds=20)  # this worker's clock 20 s ahead of the eBox's
    with client_for(ebox) as client:  # iat backdated by 30 s
        assert client.publish(publication()).kind == "published"
    with (
        client_for(ebox, assertion_leeway_seconds=0) as client,
        pytest.raises(EboxConfigurationError, match="clock") as refused,
    ):
        client.publish(publication())
    assert refused.value.field == "assertion_leeway_seconds"
    assert "iat is in the future" in str(refused.value)


def test_a_late_token_answer_is_a_timeout_and_retried(ebox, admin):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    set_faults(admin, token_timeout_next=1, timeout_delay_seconds=1.0)
    with client_for(ebox, max_attempts=2, timeout_seconds=0.3) as client:
        assert client.publish(publication()).kind == "published"


def test_400_invalid_access_token_renews_the_token_once(ebox, admin):
    ebox.state.register_recipient("enterprise", ENTERPRISE_ID)
    with client_for(ebox) as client:
        client._access_token()
        first_token = client._token
        set_faults(admin, invalid_token_next=1)
        assert client.lookup_activation("enterprise", [ENTERPRISE_ID])[ENTERPRISE_ID].active
        assert client._token != first_token
        assert ebox.state.token(first_token) is None  # the sandbox revoked the one it refused


def test_latency_longer_than_the_client_timeout_reads_as_a_timeout(ebox, admin):
    # A lookup, not a publication: the late call changes nothing once the client has given up.
    with client_for(ebox, max_attempts=1, timeout_seconds=0.2) as client:
        client._access_token()
        set_faults(admin, latency_ms=1500)
        with pytest.raises(EboxUnavailableError, match="ReadTimeout"):
            client.lookup_activation("enterprise", [ENTERPRISE_ID])
    assert admin.get("/_sandbox/faults").json()["latency_ms"] == 1500


def test_no_digital_user_by_configuration(ebox, admin):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    ebox.state.register_recipient("enterprise", ENTERPRISE_ID)
    ebox.state.register_recipient("enterprise", OTHER_ENTERPRISE_ID)
    set_faults(admin, no_digital_user_next=1)
    with client_for(ebox) as client:
        first = client.publish(publication(letter_id="L-1"))
        # A duplicate does not use up the configured answer.
        assert client.publish(publication(letter_id="L-1")).kind == "already_published"
        second = client.publish(
            publication(letter_id="L-2", recipient_kind="enterprise", recipient_id=ENTERPRISE_ID)
        )
        # The citizen turned out never to have opened the eBox: so it stays, as a real one would.
        again = client.publish(publication(letter_id="L-4"))
        set_faults(admin, no_digital_user_rate=1.0)
        third = client.publish(
            publication(letter_id="L-3", recipient_kind="enterprise", recipient_id=OTHER_ENTERPRISE_ID)
        )
        citizens = client.lookup_activation("citizen", [CITIZEN_ID])
        enterprises = client.lookup_activation("enterprise", [ENTERPRISE_ID, OTHER_ENTERPRISE_ID])
    assert (first.kind, second.kind, again.kind, third.kind) == (
        "no_digital_user",
        "published",
        "no_digital_user",
        "no_digital_user",
    )
    codes = {p["idempotency_key"]: p["code"] for p in admin.get("/_sandbox/publications").json()}
    assert codes == {
        idempotency_key("L-1"): "NO_DIGITAL_USER",
        idempotency_key("L-2"): None,
        idempotency_key("L-3"): "NO_DIGITAL_USER",
        idempotency_key("L-4"): "NO_DIGITAL_USER",
    }
    # The federation search tells the same story: no lastConnectionDate for who never opened it.
    assert citizens[CITIZEN_ID].active and citizens[CITIZEN_ID].last_connection is None
    assert (
        enterprises[ENTERPRISE_ID].last_connection
        and enterprises[OTHER_ENTERPRISE_ID].last_connection is None
    )


def test_publications_and_their_digests_are_inspectable_over_http(ebox, admin):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    pub = publication(pdf=b"%PDF-1.7 inspect me")
    with client_for(ebox) as client:
        outcome = client.publish(pub)
    record = admin.get(f"/_sandbox/publications/{outcome.message_id}").json()
    assert record["idempotency_key"] == idempotency_key(pub.letter_id)
    (attachment,) = record["attachments"]
    assert attachment["sha256"] == sha256_base64url(pub.pdf).rstrip("=")
    assert (attachment["fileName"], attachment["size"]) == (pub.filename, len(pub.pdf))
    missing = admin.get("/_sandbox/publications/no-such-id")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
