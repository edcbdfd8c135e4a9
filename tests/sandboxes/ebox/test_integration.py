"""EboxClient against the real sandbox over HTTPS: publication, duplicates, fallbacks, TLS, tokens,
faults, restarts and the sandbox as a process."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jwt
import pytest
import trustme

from include.dijlepost.ebox import client as client_module
from include.dijlepost.ebox.client import (
    PREFERENCE_SCOPE,
    Activation,
    EboxClient,
    EboxConfigurationError,
    EboxError,
)
from include.dijlepost.ebox.hook import config_from_connection
from sandboxes.ebox.app import DEFAULT_CLIENT_ID, SandboxServer
from sandboxes.ebox.state import DEFAULT_MESSAGE_TYPES
from tests.include.dijlepost.ebox.helpers import (
    CITIZEN_ID,
    ENTERPRISE_ID,
    certificate_pem,
    private_pem,
    public_pem,
    publication,
)

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def client(ebox):
    with EboxClient(ebox.config(backoff_base_seconds=0.001, timeout_seconds=5)) as c:
        yield c


def admin(server: SandboxServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, verify=ssl.create_default_context(cafile=str(server.ca_path))
    )


# -- publishing ----------------------------------------------------------------------------------


def test_publish_stores_one_letter_and_a_duplicate_is_409(ebox, client):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    pub = publication()
    first = client.publish(pub)
    assert first.kind == "published" and uuid.UUID(first.message_id)
    assert client.publish(pub).kind == "already_published"
    with EboxClient(ebox.config()) as other:  # a new token changes nothing: the key is per application
        assert other.publish(pub).kind == "already_published"
    assert ebox.state.letter_count("citizen", CITIZEN_ID) == 1
    (stored,) = ebox.state.publications()
    assert (stored["message_id"], stored["idempotency_key"]) == (
        first.message_id,
        client.idempotency_key("L-0001"),
    )
    assert stored["attachments"][0]["fileName"] == "L-0001.pdf"
    assert stored["attachments"][0]["size"] == len(pub.pdf)
    assert (stored["subject"], stored["message_type_id"], stored["code"]) == (
        "Uw aanslagbiljet",
        "MECH-FIN-INVOICE",
        None,
    )


def test_concurrent_duplicates_publish_once(ebox, client):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    kinds = []
    threads = [
        threading.Thread(target=lambda: kinds.append(client.publish(publication()).kind)) for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(kinds) == ["already_published"] * 5 + ["published"]
    assert ebox.state.letter_count("citizen", CITIZEN_ID) == 1


def test_never_opened_and_unknown_recipients_answer_no_digital_user(ebox, client):
    ebox.state.register_recipient("enterprise", ENTERPRISE_ID, active=False, no_digital_user=True)
    enterprise = client.publish(publication(recipient_kind="enterprise", recipient_id=ENTERPRISE_ID))
    unknown = client.publish(publication(letter_id="L-0002"))
    assert (enterprise.kind, enterprise.code) == ("no_digital_user", "NO_DIGITAL_USER")
    assert unknown.kind == "no_digital_user"


def test_digest_mismatch_is_rejected(ebox, client, monkeypatch):
    original = client_module.build_message_to_publish

    def wrong_digest(pub, config):
        message = original(pub, config)
        message["attachments"][0]["digest"]["digestValue"] = client_module.sha256_base64url(b"other")
        return message

    monkeypatch.setattr(client_module, "build_message_to_publish", wrong_digest)
    outcome = client.publish(publication())
    assert (outcome.kind, outcome.code) == ("rejected", "DIGEST_DO_NOT_MATCH")
    assert ebox.state.publications() == []


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"subject": "x" * 256}, "at most 255"),
        ({"filename": "f" * 77 + ".pdf"}, "at most 80"),
    ],
)
def test_contract_limits_are_rejected(client, change, fragment):
    outcome = client.publish(publication(**change))
    assert (outcome.kind, outcome.code) == ("rejected", "INVALID_INPUT")
    assert fragment in outcome.message


def test_registered_mail_and_read_status(ebox, client):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    outcome = client.publish(publication(registered=True))
    assert ebox.state.publication(outcome.message_id)["registered_mail"] is True
    wanted = [(outcome.message_id, "citizen", CITIZEN_ID), (str(uuid.uuid4()), "citizen", CITIZEN_ID)]
    (status,) = client.search_message_status(wanted)
    assert (status["messageId"], status["readStatus"], status["visible"]) == (outcome.message_id, False, True)
    with admin(ebox) as http:
        assert http.post(f"/_sandbox/publications/{outcome.message_id}/read").status_code == 204
    assert client.search_message_status(wanted)[0]["readStatus"] is True


def test_the_expiry_follows_the_message_type_and_is_answered(ebox, client):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    outcome = client.publish(publication(message_type_id="MECH-FIN-TAX"))
    stored = ebox.state.publication(outcome.message_id)
    assert outcome.expires_at == stored["expiration_date"]
    published = datetime.fromisoformat(stored["published_at"])
    expires = datetime.fromisoformat(outcome.expires_at)
    assert expires.year - published.year == 5 and (expires.month, expires.day) == (
        published.month,
        published.day,
    )


def test_an_unregistered_message_type_is_rejected(ebox, client):
    outcome = client.publish(publication(message_type_id="MECH-NOT-REGISTERED"))
    assert (outcome.kind, outcome.code) == ("rejected", "INVALID_INPUT")
    assert "MECH-NOT-REGISTERED" in outcome.message and ebox.state.publications() == []


def test_the_registry_is_read_from_reference_data(ebox, client, monkeypatch):
    monkeypatch.setattr(client_module, "_MESSAGE_TYPES_CACHE", {})
    types = client.message_types()
    assert set(types) == {t.message_type_id for t in DEFAULT_MESSAGE_TYPES}
    assert types["MECH-EW-INSPECTION"].validity == "6 month"
    with admin(ebox) as http:
        assert (
            http.put(
                "/_sandbox/messageTypes",
                json=[
                    {
                        "messageTypeId": "ONLY-ONE",
                        "messageTypeName": {"nl": "Enig"},
                        "validityPeriod": {"validityPeriodNumber": 3, "validityPeriodUnit": "day"},
                    }
                ],
            ).status_code
            == 200
        )
        assert [t["messageTypeId"] for t in http.get("/_sandbox/messageTypes").json()] == ["ONLY-ONE"]
    assert set(client.message_types()) != {"ONLY-ONE"}  # cached for the day
    assert set(client.message_types(refresh=True)) == {"ONLY-ONE"}


def test_a_message_above_the_size_limit_is_413_and_rejected_with_the_reason(ebox, client):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    with admin(ebox) as http:
        assert http.put("/_sandbox/limits", json={"max_message_bytes": 64 * 1024}).json() == {
            "max_message_bytes": 65536
        }
    outcome = client.publish(publication(pdf=b"%PDF-1.7\n" + b"0" * (80 * 1024)))
    assert (outcome.kind, outcome.code) == ("rejected", "PAYLOAD_TOO_LARGE")
    assert "at most 65536 bytes" in outcome.message
    assert client.publish(publication(letter_id="small")).kind == "published"
    assert len(ebox.state.publications()) == 1


def test_the_default_size_limit_refuses_an_8_mib_pdf(ebox, client):
    outcome = client.publish(publication(pdf=b"%PDF-1.7\n" + b"0" * (8 * 1024 * 1024)))
    assert (outcome.kind, outcome.code) == ("rejected", "PAYLOAD_TOO_LARGE")


def _is_status_message(answer: httpx.Response, environment: str = "simulation") -> bool:
    body = answer.json()
    return (
        set(body) >= {"id", "code", "message"}
        and uuid.UUID(body["id"])
        and "detail" not in body
        and body["environment"] == environment
    )


def test_every_error_is_a_status_message(ebox, client):
    token = client._access_token()
    auth = {"Authorization": f"Bearer {token}"}
    registry, federation = "/REST/ebox/enterprise/messageRegistry/v2", "/REST/ebox/enterprise/federation/v1"
    with admin(ebox) as http:
        cases = [
            (http.get(f"{registry}/ebox/messages", headers=auth), 400, "NOT_IMPLEMENTED", "simulation"),
            (
                http.post(f"{registry}/linkEboxMessage", headers=auth, json={}),
                400,
                "NOT_IMPLEMENTED",
                "simulation",
            ),
            (http.get(f"{federation}/messageProviders", headers=auth), 400, "NOT_IMPLEMENTED", "SIMULATION"),
            (http.get(f"{registry}/ebox/messages"), 401, "UNAUTHORIZED", "simulation"),
            (http.get(f"{registry}/publishMessage", headers=auth), 405, "METHOD_NOT_ALLOWED", "simulation"),
            (
                http.delete(f"{registry}/searchMessageStatus", headers=auth),
                405,
                "METHOD_NOT_ALLOWED",
                "simulation",
            ),
            (http.get("/nothing/here"), 404, "NOT_FOUND", "simulation"),
            (
                http.get(f"{registry}/referenceData/messageTypes/NOPE", headers=auth),
                404,
                "NOT_FOUND",
                "simulation",
            ),
            (
                http.get(f"{registry}/referenceData/messageTypes", headers=auth, params={"pageSize": 101}),
                400,
                "INVALID_INPUT",
                "simulation",
            ),
            (
                http.post("/_sandbox/recipients", json=[{"kind": "person", "id": "1"}]),
                400,
                "INVALID_INPUT",
                "simulation",
            ),
        ]
        for answer, status, code, environment in cases:
            assert (answer.status_code, answer.json()["code"]) == (status, code), answer.request.url
            assert _is_status_message(answer, environment), answer.json()
        assert "GET" not in http.get(f"{registry}/publishMessage", headers=auth).headers["Allow"]


def test_a_method_the_published_files_do_not_give_a_path_is_405_with_allow(ebox, client):
    auth = {"Authorization": f"Bearer {client._access_token()}"}
    registry, federation = "/REST/ebox/enterprise/messageRegistry/v2", "/REST/ebox/enterprise/federation/v1"
    with admin(ebox) as http:
        for answer, allow in [
            (http.delete(f"{registry}/ebox/messages", headers=auth), "GET, PATCH"),
            (http.post(f"{registry}/ebox/messages/m-1/body", headers=auth), "GET"),
            (http.put(f"{registry}/referenceData/senderOrganizations", headers=auth), "GET"),
            (http.get(f"{federation}/eboxPreferences", headers=auth), "PATCH"),
            (http.post(f"{federation}/messageProviders/p-1", headers=auth), "GET, PATCH"),
        ]:
            assert (answer.status_code, answer.json()["code"]) == (405, "METHOD_NOT_ALLOWED"), (
                answer.request.url
            )
            assert answer.headers["Allow"] == allow and _is_status_message(
                answer, "SIMULATION" if federation in str(answer.request.url) else "simulation"
            )
        # A published method the sandbox does not implement stays NOT_IMPLEMENTED.
        answer = http.patch(f"{registry}/ebox/messages", headers=auth, json={})
        assert (answer.status_code, answer.json()["code"]) == (400, "NOT_IMPLEMENTED")


@pytest.mark.parametrize(
    "params, status",
    [
        ({"page": 2147483647}, 200),  # the int32 bound itself
        ({"page": 2147483648}, 400),  # past it
        ({"page": -2147483649}, 400),
        ({"page": 0}, 400),
        ({"pageSize": 100}, 200),
        ({"pageSize": 101}, 400),
        ({"pageSize": 2147483648}, 400),
    ],
)
def test_the_published_integer_bounds_are_enforced(ebox, client, params, status):
    auth = {"Authorization": f"Bearer {client._access_token()}"}
    with admin(ebox) as http:
        answer = http.get(
            "/REST/ebox/enterprise/messageRegistry/v2/referenceData/messageTypes", headers=auth, params=params
        )
    assert answer.status_code == status, answer.text
    if status == 200:
        assert answer.json()["totalItems"] >= 1
    else:
        assert answer.json()["code"] == "INVALID_INPUT"


@pytest.mark.parametrize(
    "item, fragment",
    [
        (
            {"messageId": "", "eboxId": {"eboxType": "citizen", "eboxIdValue": CITIZEN_ID}},
            "messageId is empty",
        ),
        (
            {"messageId": "m", "eboxId": {"eboxType": "citizen", "eboxIdValue": {"nested": True}}},
            "must be a string",
        ),
        (
            {"messageId": "m", "eboxId": {"eboxType": "CITIZEN", "eboxIdValue": CITIZEN_ID}},
            "citizen or enterprise",
        ),
    ],
)
def test_search_message_status_refuses_bad_input(ebox, client, item, fragment):
    with admin(ebox) as http:
        answer = http.post(
            "/REST/ebox/enterprise/messageRegistry/v2/searchMessageStatus",
            json=[item],
            headers={"Authorization": f"Bearer {client._access_token()}"},
        )
    assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_INPUT")
    assert fragment in answer.json()["message"]


# -- activation ----------------------------------------------------------------------------------


def test_activation_lookup(ebox, client):
    ebox.state.register_recipient(
        "enterprise", ENTERPRISE_ID, exclusively_ebox=True, last_connection_date="2026-01-02T03:04:05Z"
    )
    ebox.state.register_recipient("enterprise", "0200000043", active=False)
    ebox.state.register_recipient("citizen", CITIZEN_ID, no_digital_user=True)
    enterprises = client.lookup_activation("enterprise", [ENTERPRISE_ID, "0200000043", "0403170701"])
    assert enterprises == {
        ENTERPRISE_ID: Activation(True, True, "2026-01-02T03:04:05Z"),
        "0200000043": Activation(False),
        "0403170701": Activation(False),
    }
    # the kinds are separate registries; who never opened the eBox has no lastConnectionDate
    assert client.lookup_activation("citizen", [CITIZEN_ID, ENTERPRISE_ID]) == {
        CITIZEN_ID: Activation(True, False, None),
        ENTERPRISE_ID: Activation(False),
    }


def test_a_recipient_registered_without_a_date_last_connected_at_registration(ebox, client):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    (found,) = client.lookup_activation("citizen", [CITIZEN_ID]).values()
    connected = datetime.strptime(found.last_connection, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - connected).total_seconds()) < 60
    with pytest.raises(ValueError, match="never opened"):
        ebox.state.register_recipient(
            "citizen", CITIZEN_ID, no_digital_user=True, last_connection_date="2026-01-02T03:04:05Z"
        )


def test_large_lookups_are_batched_and_the_sandbox_enforces_1000(ebox, client, monkeypatch):
    ids = [f"{n:011d}" for n in range(2500)]
    for recipient_id in ids[::100]:
        ebox.state.register_recipient("citizen", recipient_id)
    result = client.lookup_activation("citizen", ids)
    assert sum(a.active for a in result.values()) == 25 and len(result) == 2500
    monkeypatch.setattr(client_module, "LOOKUP_BATCH_SIZE", 1001)
    with pytest.raises(EboxError, match="at most 1000"):
        client.lookup_activation("citizen", ids)


# -- TLS and tokens ------------------------------------------------------------------------------


def test_tls_is_verified_against_the_configured_ca(ebox, tmp_path):
    assert ebox.base_url.startswith("https://")
    stranger = tmp_path / "other-ca.pem"
    stranger.write_bytes(trustme.CA().cert_pem.bytes())
    for ca_bundle in (str(stranger), None):  # another CA, and the system trust store
        with (
            EboxClient(ebox.config(ca_bundle=ca_bundle, max_attempts=1)) as c,
            pytest.raises(EboxConfigurationError, match="does not verify"),
        ):
            c.publish(publication())
    assert ebox.state.publications() == []


def test_an_expired_token_is_replaced_once(ebox, client):
    assert client.publish(publication(letter_id="a")).kind == "no_digital_user"
    ebox.state.revoke_tokens()
    assert client.publish(publication(letter_id="b")).kind == "no_digital_user"


def test_missing_scope_is_403_and_fails_loudly(ebox):
    ebox.state.register_client("limited", public_pem(), "0200000043", "dijlepost", (PREFERENCE_SCOPE,))
    with EboxClient(
        ebox.config(client_id="limited", private_key_pem=private_pem(), certificate_pem=certificate_pem())
    ) as limited:
        assert limited.lookup_activation("citizen", [CITIZEN_ID]) == {CITIZEN_ID: Activation(False)}
        with pytest.raises(EboxConfigurationError, match="403"):
            limited.publish(publication())


def test_unknown_client_key_is_refused_at_the_token_endpoint(ebox):
    with (
        EboxClient(ebox.config(private_key_pem=private_pem(), certificate_pem=certificate_pem())) as impostor,
        pytest.raises(EboxConfigurationError, match="invalid_client"),
    ):
        impostor.publish(publication())


def _assertion(ebox, headers: dict | None = None, **claims) -> str:
    now = int(time.time())
    payload = {
        "iss": DEFAULT_CLIENT_ID,
        "sub": DEFAULT_CLIENT_ID,
        "aud": ebox.token_url,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    header = ebox.config().assertion_header() if headers is None else headers
    return jwt.encode(payload, ebox.client_private_key_pem, algorithm="RS256", headers=header)


def _token_form(assertion: str) -> dict:
    return {
        "grant_type": "client_credentials",
        "client_assertion": assertion,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }


def test_token_endpoint_checks_the_assertion(ebox):
    with admin(ebox) as http:
        good = _assertion(ebox)
        answer = http.post("/REST/oauth/v5/token", data=_token_form(good))
        assert answer.status_code == 200 and answer.json()["token_type"] == "Bearer"
        assert http.post("/REST/oauth/v5/token", data=_token_form(good)).json()["error"] == "invalid_client"
        for bad in (
            _assertion(ebox, aud="https://elsewhere.example/token"),
            _assertion(ebox, exp=int(time.time()) - 60),
            _assertion(ebox, headers={}),  # no x5t#S256 / kid naming the registered certificate
            _assertion(ebox, headers={"x5t#S256": "not-the-thumbprint"}),
            jwt.encode({"iss": DEFAULT_CLIENT_ID}, private_pem(), algorithm="RS256"),
        ):
            refused = http.post("/REST/oauth/v5/token", data=_token_form(bad))
            assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
        bad_scope = http.post(
            "/REST/oauth/v5/token", data={**_token_form(_assertion(ebox)), "scope": "other"}
        )
        assert bad_scope.json()["error"] == "invalid_scope"
        no_token = http.post("/REST/ebox/enterprise/federation/v1/eboxPreferences/search", json={})
        assert (no_token.status_code, no_token.json()["code"]) == (401, "UNAUTHORIZED")


# -- faults --------------------------------------------------------------------------------------


def test_injected_503s_are_retried(ebox, client):
    ebox.state.set_faults(fail_next=2, retry_after_seconds=0)
    assert client.publish(publication()).kind == "no_digital_user"
    ebox.state.set_faults(error_rate=1.0, error_status=429, seed=7)
    with EboxClient(ebox.config(max_attempts=2, backoff_base_seconds=0.001)) as impatient:
        assert impatient.publish(publication(letter_id="L-0002")).kind == "retry_later"
    assert len(ebox.state.publications()) == 1


def test_a_late_answer_then_a_retry_publishes_once(ebox):
    ebox.state.register_recipient("citizen", CITIZEN_ID)
    ebox.state.set_faults(timeout_next=1, timeout_delay_seconds=1.0)
    with EboxClient(ebox.config(timeout_seconds=0.3, backoff_base_seconds=0.001)) as c:
        assert c.publish(publication()).kind == "already_published"
    assert ebox.state.letter_count("citizen", CITIZEN_ID) == 1


def test_seeded_fault_rates_are_reproducible(ebox):
    draws = []
    for _ in range(2):
        ebox.state.set_faults(error_rate=0.3, timeout_rate=0.2, seed=42)
        draws.append([ebox.state.roll_fault() for _ in range(50)])
    assert draws[0] == draws[1] and {"error", "timeout", None} == set(draws[0])


# -- administration ------------------------------------------------------------------------------


def test_admin_api(ebox):
    with admin(ebox) as http:
        assert http.get("/_sandbox/health").json() == {"status": "ok"}
        assert http.post(
            "/_sandbox/recipients",
            json=[
                {"kind": "citizen", "id": CITIZEN_ID},
                {"kind": "enterprise", "id": ENTERPRISE_ID, "active": False, "no_digital_user": True},
            ],
        ).json() == {"registered": 2}
        assert [r["id"] for r in http.get("/_sandbox/recipients").json()] == [CITIZEN_ID, ENTERPRISE_ID]
        contradiction = http.post(
            "/_sandbox/recipients",
            json=[
                {
                    "kind": "citizen",
                    "id": CITIZEN_ID,
                    "no_digital_user": True,
                    "last_connection_date": "2026-01-02T03:04:05Z",
                }
            ],
        )
        assert contradiction.status_code == 400 and "never opened" in contradiction.json()["message"]
        assert http.put("/_sandbox/faults", json={"error_rate": 0.7, "timeout_rate": 0.7}).status_code == 400
        assert http.put("/_sandbox/faults", json={"fail_next": 1}).json()["fail_next"] == 1
        with EboxClient(ebox.config(backoff_base_seconds=0.001)) as c:
            c.publish(publication())
        assert len(http.get("/_sandbox/publications", params={"recipient_id": CITIZEN_ID}).json()) == 1
        assert http.get("/_sandbox/publications", params={"recipient_kind": "enterprise"}).json() == []
        assert http.post("/_sandbox/publications/nope/read").status_code == 404
        assert http.post("/_sandbox/reset").status_code == 204
        assert http.get("/_sandbox/recipients").json() == []
        assert http.get("/_sandbox/faults").json()["fail_next"] == 0


def test_hook_mapping_accepts_the_sandbox_connection(ebox):
    conn = ebox.airflow_connection()
    config = config_from_connection(
        "ebox_default", conn["host"], conn["login"], conn["password"], conn["extra"]
    )
    assert config == ebox.config()
    with EboxClient(config) as c:
        assert c.lookup_activation("citizen", [CITIZEN_ID]) == {CITIZEN_ID: Activation(False)}


# -- restarts and process mode -------------------------------------------------------------------


def test_a_restarted_sandbox_remembers_keys_ca_and_client_key(tmp_path):
    state = tmp_path / "state.sqlite"
    with SandboxServer(tmp_path, state_path=state) as first:
        ca, key = first.ca_path.read_bytes(), first.client_private_key_pem
        with EboxClient(first.config()) as c:
            assert c.publish(publication()).kind == "no_digital_user"
    with SandboxServer(tmp_path, state_path=state) as second:
        assert (second.ca_path.read_bytes(), second.client_private_key_pem) == (ca, key)
        with EboxClient(second.config()) as c:
            assert c.publish(publication()).kind == "already_published"
        assert len(second.state.publications()) == 1
        assert json.loads(second.connection_path.read_text())["host"] == second.message_registry_url


def test_sandbox_runs_as_a_process(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "sandboxes.ebox", "--port", "0", "--dir", str(tmp_path)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )
    try:
        banner = process.stdout.readline()
        assert "eBox sandbox at https://" in banner, (
            process.stderr.read() if process.poll() is not None else banner
        )
        assert {p.name for p in tmp_path.iterdir()} >= {
            "ca.pem",
            "client_key.pem",
            "connection.json",
            "state.sqlite",
        }
        assert oct(os.stat(tmp_path / "client_key.pem").st_mode & 0o777) == "0o600"
        conn = json.loads((tmp_path / "connection.json").read_text())
        assert conn["conn_type"] == "ebox"
        config = config_from_connection(
            "ebox_default", conn["host"], conn["login"], conn["password"], conn["extra"]
        )
        with EboxClient(config) as c:
            assert c.publish(publication()).kind == "no_digital_user"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
    assert process.returncode == 0
