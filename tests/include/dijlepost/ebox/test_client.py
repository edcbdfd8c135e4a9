"""EboxClient against httpx.MockTransport: every answer of the contract and what the client makes
of it, the token flow, retries, batching and the shape of what it sends."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from include.dijlepost.ebox import client as client_module
from include.dijlepost.ebox.client import (
    PREFERENCE_SCOPE,
    PUBLICATION_SCOPE,
    Activation,
    EboxClient,
    EboxConfigurationError,
    EboxError,
    EboxOutageError,
    EboxUnavailableError,
    PublishOutcome,
    Verdict,
    idempotency_key,
)
from tests.include.dijlepost.ebox.helpers import (
    CITIZEN_ID,
    ENTERPRISE_ID,
    certificate_pem,
    message_to_publish,
    multipart_parts,
    public_pem,
    publication,
    unit_config,
)
from tests.support.contracts import multipart_charsets

TOKEN_PATH = "/REST/oauth/v5/token"
PUBLISH_PATH = "/REST/ebox/enterprise/messageRegistry/v2/publishMessage"
PREFERENCES_PATH = "/REST/ebox/enterprise/federation/v1/eboxPreferences/search"
CONSENTS_PATH = "/REST/ebox/enterprise/federation/v1/citizenEboxConsents/search"
STATUS_PATH = "/REST/ebox/enterprise/messageRegistry/v2/searchMessageStatus"


class FakeEbox:
    """A scripted eBox: `answers[path]` are served in order (the last one repeats). An answer is an
    httpx.Response or a callable(request) -> Response. The token endpoint serves `token_failures`
    first (answers or exceptions), then issues tokens."""

    def __init__(
        self,
        answers: dict[str, list] | None = None,
        expires_in: int = 600,
        token_failures: list | None = None,
    ):
        self.answers = answers or {}
        self.expires_in = expires_in
        self.token_failures = list(token_failures or [])
        self.requests: list[httpx.Request] = []
        self.tokens_issued = 0
        self._lock = threading.Lock()

    def calls(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            if request.url.path == TOKEN_PATH:
                if self.token_failures:
                    failure = self.token_failures.pop(0)
                    if isinstance(failure, Exception):
                        raise failure
                    return failure
                self.tokens_issued += 1
                return httpx.Response(
                    200,
                    json={
                        "access_token": f"token-{self.tokens_issued}",
                        "token_type": "Bearer",
                        "expires_in": self.expires_in,
                    },
                )
            queue = self.answers[request.url.path]
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return answer(request) if callable(answer) else answer


def make_client(fake: Callable, sleeps: list[float] | None = None, **config) -> EboxClient:
    recorded = sleeps if sleeps is not None else []
    return EboxClient(
        unit_config(**config), http=httpx.Client(transport=httpx.MockTransport(fake)), sleep=recorded.append
    )


def created(message_id="m-1", **extra) -> httpx.Response:
    """A 201 PublicationStatusMessage (expiring 2027-01-01)."""
    return httpx.Response(
        201, json={"messageId": message_id, "expirationDate": "2027-01-01T00:00:00Z", **extra}
    )


def status(code: int, error: str = "X", message: str = "x", headers=None) -> httpx.Response:
    return httpx.Response(
        code, json={"id": str(uuid.uuid4()), "code": error, "message": message}, headers=headers
    )


# -- publish: one test per answer ------------------------------------------------------------------


def test_201_is_published_with_the_message_id():
    fake = FakeEbox({PUBLISH_PATH: [created("m-42")]})
    assert make_client(fake).publish(publication()) == PublishOutcome(
        "published", message_id="m-42", expires_at="2027-01-01T00:00:00Z"
    )
    (request,) = fake.calls(PUBLISH_PATH)
    assert request.headers["Authorization"] == "Bearer token-1"
    assert request.headers["Idempotency-Key"] == idempotency_key("L-0001")


def test_201_no_digital_user_is_its_own_outcome():
    fake = FakeEbox({PUBLISH_PATH: [created("m-1", code="NO_DIGITAL_USER", message="never opened")]})
    outcome = make_client(fake).publish(publication())
    assert outcome.kind == "no_digital_user"
    assert (outcome.code, outcome.message_id) == ("NO_DIGITAL_USER", "m-1")


def test_413_is_rejected_with_the_reason_so_the_letter_is_quarantined():
    fake = FakeEbox({PUBLISH_PATH: [status(413, "PAYLOAD_TOO_LARGE", "the message is 9000000 bytes")]})
    outcome = make_client(fake).publish(publication())
    assert outcome == PublishOutcome(
        "rejected", code="PAYLOAD_TOO_LARGE", message="the message is 9000000 bytes"
    )
    assert len(fake.calls(PUBLISH_PATH)) == 1  # not retried


def test_413_without_a_body_still_says_why():
    fake = FakeEbox({PUBLISH_PATH: [httpx.Response(413)]})
    outcome = make_client(fake).publish(publication())
    assert outcome.kind == "rejected" and outcome.code == "HTTP_413"


def test_409_is_already_published():
    fake = FakeEbox({PUBLISH_PATH: [status(409, "CONFLICT")]})
    assert make_client(fake).publish(publication()).kind == "already_published"


def test_400_is_rejected_with_the_servers_code_and_message():
    fake = FakeEbox({PUBLISH_PATH: [status(400, "INVALID_INPUT", "subject too long")]})
    assert make_client(fake).publish(publication()) == PublishOutcome(
        "rejected", code="INVALID_INPUT", message="subject too long"
    )


def test_400_without_json_is_still_rejected():
    fake = FakeEbox({PUBLISH_PATH: [httpx.Response(400, text="Bad Request")]})
    outcome = make_client(fake).publish(publication())
    assert (outcome.kind, outcome.code) == ("rejected", "HTTP_400")


def test_401_refreshes_the_token_once_and_retries():
    fake = FakeEbox({PUBLISH_PATH: [status(401, "UNAUTHORIZED"), created("m-2")]})
    assert make_client(fake).publish(publication()).kind == "published"
    first, second = fake.calls(PUBLISH_PATH)
    assert (first.headers["Authorization"], second.headers["Authorization"]) == (
        "Bearer token-1",
        "Bearer token-2",
    )
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]


def test_400_invalid_access_token_renews_the_token_once():
    fake = FakeEbox(
        {
            PREFERENCES_PATH: [
                status(400, "INVALID_TOKEN", "Invalid access token"),
                _preferences_answer({ENTERPRISE_ID}),
            ]
        }
    )
    assert make_client(fake).lookup_activation("enterprise", [ENTERPRISE_ID])[ENTERPRISE_ID].active
    first, second = fake.calls(PREFERENCES_PATH)
    assert (first.headers["Authorization"], second.headers["Authorization"]) == (
        "Bearer token-1",
        "Bearer token-2",
    )


def test_400_invalid_access_token_twice_fails_loudly():
    fake = FakeEbox({PUBLISH_PATH: [status(400, "INVALID_TOKEN", "Invalid acess token")]})
    with pytest.raises(EboxConfigurationError, match="fresh token"):
        make_client(fake).publish(publication())
    assert fake.tokens_issued == 2


def test_another_400_is_not_taken_for_a_token_problem():
    fake = FakeEbox({PUBLISH_PATH: [status(400, "INVALID_INPUT", "$.subject.nl is empty")]})
    assert make_client(fake).publish(publication()).kind == "rejected"
    assert fake.tokens_issued == 1


def test_401_with_a_fresh_token_too_fails_loudly():
    fake = FakeEbox({PUBLISH_PATH: [status(401, "UNAUTHORIZED")]})
    with pytest.raises(EboxConfigurationError, match="401"):
        make_client(fake).publish(publication())
    assert fake.tokens_issued == 2


def test_403_raises_configuration_error():
    fake = FakeEbox({PUBLISH_PATH: [status(403, "FORBIDDEN")]})
    with pytest.raises(EboxConfigurationError, match="403"):
        make_client(fake).publish(publication())


def test_404_means_a_wrong_url_and_fails_loudly():
    fake = FakeEbox({PUBLISH_PATH: [httpx.Response(404, json={"detail": "Not Found"})]})
    with pytest.raises(EboxConfigurationError, match="message_registry_url"):
        make_client(fake).publish(publication())


def test_429_honours_retry_after_then_succeeds():
    sleeps: list[float] = []
    fake = FakeEbox({PUBLISH_PATH: [status(429, headers={"Retry-After": "2"}), created("m-3")]})
    assert make_client(fake, sleeps).publish(publication()).message_id == "m-3"
    assert sum(sleeps) == pytest.approx(2.0, abs=0.05)  # the breaker's pause, nothing on top


def test_retry_after_as_http_date_is_understood():
    sleeps: list[float] = []
    when = httpx.Response(
        503, headers={"Retry-After": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 5))}
    )
    fake = FakeEbox({PUBLISH_PATH: [when, created()]})
    assert make_client(fake, sleeps).publish(publication()).kind == "published"
    assert 3 <= sum(sleeps) <= 5


def test_503_until_max_attempts_is_retry_later_with_backoff():
    """Fewer failures in a row than open the breaker: the call's own attempts, with backoff."""
    sleeps: list[float] = []
    fake = FakeEbox({PUBLISH_PATH: [status(503)]})
    outcome = make_client(fake, sleeps, max_attempts=2, backoff_base_seconds=1.0).publish(publication())
    assert outcome == PublishOutcome("retry_later", message="HTTP 503")
    assert len(fake.calls(PUBLISH_PATH)) == 2
    assert len({r.headers["Idempotency-Key"] for r in fake.calls(PUBLISH_PATH)}) == 1
    # exponential with "equal jitter": attempt n waits between half and all of base * 2**(n-1)
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0


def test_each_failed_attempt_is_logged_once_with_its_number(caplog):
    caplog.set_level(logging.INFO, logger="dijlepost.ebox")
    fake = FakeEbox({PUBLISH_PATH: [status(503), status(502), created()]})
    assert make_client(fake, max_attempts=3).publish(publication()).kind == "published"
    assert [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()] == [
        f"eBox POST {PUBLISH_PATH}: HTTP 503 (attempt 1 of 3)",
        f"eBox POST {PUBLISH_PATH}: HTTP 502 (attempt 2 of 3)",
    ]


def test_a_single_attempt_allowed_is_one_request_and_no_wait():
    sleeps: list[float] = []
    fake = FakeEbox({PUBLISH_PATH: [status(503)]})
    outcome = make_client(fake, sleeps, max_attempts=1).publish(publication())
    assert outcome == PublishOutcome("retry_later", message="HTTP 503")
    assert (len(fake.calls(PUBLISH_PATH)), sleeps) == (1, [])


def test_an_ebox_that_stays_down_is_probed_rarely_and_given_up_at_the_outage_budget():
    sleeps: list[float] = []
    fake = FakeEbox({PUBLISH_PATH: [status(503)]})
    client = make_client(fake, sleeps, outage_budget_seconds=60)
    with pytest.raises(EboxOutageError, match="outage budget of 60 s"):
        client.publish(publication())
    # 3 failures open the breaker; then one probe per pause (1, 2, 4, 8, 16 s): the next pause
    # (30 s) would pass the budget.
    assert len(fake.calls(PUBLISH_PATH)) == 8
    assert sum(sleeps) == pytest.approx(31, abs=0.5)
    assert client.breaker.stopped and client.breaker.openings == 1
    with pytest.raises(EboxOutageError) as stopped:  # nothing leaves any more
        client.publish(publication())
    assert stopped.value.sent is False and len(fake.calls(PUBLISH_PATH)) == 8


def test_a_very_long_retry_after_is_not_slept_through():
    sleeps: list[float] = []
    fake = FakeEbox({PUBLISH_PATH: [status(503, headers={"Retry-After": "3600"})]})
    with pytest.raises(EboxOutageError, match="outage budget") as stopped:
        make_client(fake, sleeps).publish(publication())
    assert stopped.value.sent is True
    assert (len(fake.calls(PUBLISH_PATH)), sum(sleeps)) == (1, 0)


def test_timeouts_are_retried_and_end_in_retry_later():
    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    fake = FakeEbox({PUBLISH_PATH: [timeout]})
    assert make_client(fake, max_attempts=2).publish(publication()) == PublishOutcome(
        "retry_later", message="ReadTimeout"
    )
    assert len(fake.calls(PUBLISH_PATH)) == 2


def test_a_timeout_then_success_is_published():
    def timeout(request):
        raise httpx.ConnectTimeout("slow", request=request)

    fake = FakeEbox({PUBLISH_PATH: [timeout, created("m-4")]})
    assert make_client(fake).publish(publication()).message_id == "m-4"


def test_a_timeout_then_409_is_already_published():
    """The first attempt reached the eBox but its answer was lost: the stable key makes it a 409."""

    def timeout(request):
        raise httpx.ReadTimeout("slow", request=request)

    fake = FakeEbox({PUBLISH_PATH: [timeout, status(409, "CONFLICT")]})
    assert make_client(fake).publish(publication()).kind == "already_published"


def test_connection_errors_are_retried():
    def refused(request):
        raise httpx.ConnectError("refused", request=request)

    fake = FakeEbox({PUBLISH_PATH: [refused]})
    assert make_client(fake, max_attempts=2).publish(publication()).kind == "retry_later"


def _assertion(token_request: httpx.Request) -> str:
    return dict(httpx.QueryParams(token_request.read().decode()))["client_assertion"]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(503, json={"error": "temporarily_unavailable"}),
        httpx.Response(429, headers={"Retry-After": "1"}),
        httpx.ReadTimeout("slow"),
    ],
)
def test_a_token_endpoint_failure_is_retried_with_a_fresh_assertion(failure):
    sleeps: list[float] = []
    fake = FakeEbox({PUBLISH_PATH: [created("m-5")]}, token_failures=[failure])
    assert make_client(fake, sleeps).publish(publication()).message_id == "m-5"
    first, second = fake.calls(TOKEN_PATH)
    claims = [
        jwt.decode(
            _assertion(r),
            public_pem(),
            algorithms=["RS256"],
            audience="https://ebox.test/REST/oauth/v5/token",
        )
        for r in (first, second)
    ]
    assert claims[0]["jti"] != claims[1]["jti"]
    assert len([s for s in sleeps if s]) == 1


def test_token_endpoint_down_stops_the_task_at_the_outage_budget():
    def handler(request):
        if request.url.path == TOKEN_PATH:
            return httpx.Response(503)
        return created()

    client = EboxClient(
        unit_config(), http=httpx.Client(transport=httpx.MockTransport(handler)), sleep=lambda _: None
    )
    with pytest.raises(EboxOutageError):
        client.publish(publication())


def test_token_endpoint_refusal_is_a_configuration_error():
    def handler(request):
        return httpx.Response(401, json={"error": "invalid_client"})

    client = EboxClient(unit_config(), http=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(EboxConfigurationError, match="invalid_client"):
        client.publish(publication())


# -- what publish sends --------------------------------------------------------------------------


def _sent_message(pub=None) -> tuple[dict, dict]:
    fake = FakeEbox({PUBLISH_PATH: [created()]})
    make_client(fake).publish(pub or publication())
    (request,) = fake.calls(PUBLISH_PATH)
    return message_to_publish(request), multipart_parts(request)


def _nulls(value, path="$"):
    if value is None:
        yield path
    elif isinstance(value, dict):
        for key, sub in value.items():
            yield from _nulls(sub, f"{path}.{key}")
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            yield from _nulls(sub, f"{path}[{i}]")


def test_message_to_publish_has_the_documented_shape():
    pdf = b"%PDF-1.7 some bytes whose sha256 has + and / in base64 \xfe\xff" * 50
    message, parts = _sent_message(publication(pdf=pdf, language="fr", subject="Votre avis"))
    assert message == {
        "recipient": {"eboxType": "citizen", "eboxIdValue": CITIZEN_ID},
        "subject": {"fr": "Votre avis"},
        "bodyMainContent": False,
        "messageTypeId": "MECH-FIN-INVOICE",
        "senderOrganizationId": "0200000043",
        "senderApplicationId": "dijlepost",
        "replyAuthorized": False,
        "attachments": [
            {
                "httpPartName": "upfile1",
                "mainContent": True,
                "attachmentSigned": False,
                "digest": {
                    "digestMethod": "sha_256",
                    "digestValue": base64.urlsafe_b64encode(hashlib.sha256(pdf).digest()).decode(),
                },
            }
        ],
    }
    assert set(parts) == {"messageToPublish", "upfile1"}
    assert parts["upfile1"] == ("L-0001.pdf", "application/pdf", pdf)
    assert parts["messageToPublish"][:2] == (None, "application/json")


@pytest.mark.parametrize(
    "filename, subject",
    [("L-0001.pdf", "Uw aanslagbiljet"), ('a "quoted"\\ \x01\x1b name é.pdf', 'Décision € \u2028 "x"')],
)
def test_a_publication_is_the_request_httpx_would_build_for_it(filename, subject):
    """publish encodes its multipart body and its request itself: the same bytes and headers as
    httpx's multipart encoding and `Client.build_request` (the client's own headers included)."""
    fake = FakeEbox({PUBLISH_PATH: [created()]})
    http = httpx.Client(transport=httpx.MockTransport(fake), headers={"X-Client": "dijlepost"}, timeout=7)
    pub = publication(filename=filename, subject=subject, pdf=b"%PDF-1.7\r\n\x00\xff" * 300)
    EboxClient(unit_config(), http=http).publish(pub)
    (sent,) = fake.calls(PUBLISH_PATH)
    content_type = sent.headers["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    message = json.dumps(client_module.build_message_to_publish(pub, unit_config()), ensure_ascii=False)
    reference = httpx.Request(
        "POST",
        sent.url,
        headers={"Content-Type": content_type},  # the same boundary
        files={
            "messageToPublish": (None, message.encode("utf-8"), "application/json; charset=UTF-8"),
            "upfile1": (filename, pub.pdf, "application/pdf"),
        },
    )
    assert sent.content == reference.read()
    expected = http.build_request(
        "POST",
        sent.url,
        headers={
            "Idempotency-Key": idempotency_key(pub.letter_id),
            "Content-Type": content_type,
            "Authorization": "Bearer token-1",
        },
        content=sent.content,
    )
    assert sent.headers.raw == expected.headers.raw
    assert sent.extensions["timeout"] == expected.extensions["timeout"]


def test_a_cookie_the_ebox_sets_is_sent_back_with_the_next_calls():
    """A gateway's cookie (a load balancer's, say) is kept by the client as httpx keeps it."""
    sticky = httpx.Response(
        201,
        json={"messageId": "m-1", "expirationDate": "2027-01-01T00:00:00Z"},
        headers={"Set-Cookie": "node=b2; Path=/"},
    )
    fake = FakeEbox({PUBLISH_PATH: [sticky, created()]})
    client = make_client(fake)
    assert [client.publish(publication(letter_id=f"L-{i}")).kind for i in (1, 2)] == ["published"] * 2
    first, second = fake.calls(PUBLISH_PATH)
    assert "cookie" not in first.headers
    assert second.headers["Cookie"] == "node=b2"


def test_event_hooks_of_the_http_client_see_every_publication_and_its_answer():
    seen: list[str] = []
    fake = FakeEbox({PUBLISH_PATH: [status(503), created()]})
    http = httpx.Client(
        transport=httpx.MockTransport(fake),
        event_hooks={
            "request": [lambda request: seen.append(f"{request.method} {request.url.path}")],
            "response": [lambda response: seen.append(str(response.status_code))],
        },
    )
    assert (
        EboxClient(unit_config(), http=http, sleep=lambda _: None).publish(publication()).kind == "published"
    )
    assert seen == [f"POST {TOKEN_PATH}", "200", f"POST {PUBLISH_PATH}", "503", f"POST {PUBLISH_PATH}", "201"]


def test_message_to_publish_declares_its_charset_and_keeps_accents():
    fake = FakeEbox({PUBLISH_PATH: [created()]})
    make_client(fake).publish(publication(language="fr", subject="Décision relative à la prime"))
    (request,) = fake.calls(PUBLISH_PATH)
    assert multipart_charsets(request)["messageToPublish"].lower() == "utf-8"
    assert multipart_parts(request)["messageToPublish"][2].decode("utf-8").count("Décision relative à") == 1


def test_digest_is_base64url_of_sha256():
    # This content's SHA-256 gives '+' and '/' in plain base64: base64url must not.
    pdf = next(
        p
        for p in (str(i).encode() for i in range(1000))
        if {"+", "/"} <= set(base64.b64encode(hashlib.sha256(p).digest()).decode())
    )
    message, _ = _sent_message(publication(pdf=pdf))
    value = message["attachments"][0]["digest"]["digestValue"]
    assert "+" not in value and "/" not in value
    assert base64.urlsafe_b64decode(value) == hashlib.sha256(pdf).digest()


def test_no_null_values_and_optional_keys_are_omitted():
    message, _ = _sent_message(publication(registered=False))
    assert list(_nulls(message)) == []
    assert message["messageTypeId"] == "MECH-FIN-INVOICE"
    assert "registeredMail" not in message
    assert "bodyContent" not in message and "expirationDate" not in message


def test_registered_mail_only_when_registered():
    message, _ = _sent_message(publication(registered=True))
    assert message["registeredMail"] is True


def test_enterprise_recipient_and_exactly_one_language():
    message, _ = _sent_message(
        publication(recipient_kind="enterprise", recipient_id=ENTERPRISE_ID, language="de")
    )
    assert message["recipient"] == {"eboxType": "enterprise", "eboxIdValue": ENTERPRISE_ID}
    assert list(message["subject"]) == ["de"]


def test_idempotency_key_is_a_stable_uuid_per_letter():
    key = idempotency_key("L-0001")
    assert uuid.UUID(key).version == 5
    assert key == idempotency_key("L-0001") == EboxClient.idempotency_key("L-0001")
    assert key != idempotency_key("L-0002")
    # Pinned: a changed namespace would give every letter a new key and allow double publication.
    assert key == str(uuid.uuid5(uuid.UUID("6f0c5bd2-4d1e-5a49-9b8e-2f3c1d7a9e10"), "L-0001"))


def test_publication_rejects_unknown_kind_and_language():
    with pytest.raises(ValueError, match="recipient_kind"):
        publication(recipient_kind="person")
    with pytest.raises(ValueError, match="language"):
        publication(language="en")
    for missing in (None, " "):
        with pytest.raises(ValueError, match="message_type_id"):
            publication(message_type_id=missing)


# -- token ---------------------------------------------------------------------------------------


def test_token_request_is_private_key_jwt_with_both_scopes():
    fake = FakeEbox({PUBLISH_PATH: [created()]})
    make_client(fake).publish(publication())
    (token_request,) = fake.calls(TOKEN_PATH)
    form = dict(httpx.QueryParams(token_request.read().decode()))
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert set(form["scope"].split()) == {PUBLICATION_SCOPE, PREFERENCE_SCOPE}
    claims = jwt.decode(
        form["client_assertion"],
        public_pem(),
        algorithms=["RS256"],
        audience="https://ebox.test/REST/oauth/v5/token",
    )
    assert claims["iss"] == claims["sub"] == "dijlepost-test"
    # iat backdated by the leeway (30 s), exp short (60 s after signing)
    assert claims["exp"] - claims["iat"] == 90
    assert claims["iat"] <= time.time() - 29 and claims["exp"] <= time.time() + 61
    assert uuid.UUID(claims["jti"]).version == 4
    header = jwt.get_unverified_header(form["client_assertion"])
    assert header["alg"] == "RS256"
    thumbprint = (
        base64.urlsafe_b64encode(
            hashlib.sha256(
                x509.load_pem_x509_certificate(certificate_pem().encode()).public_bytes(
                    serialization.Encoding.DER
                )
            ).digest()
        )
        .decode()
        .rstrip("=")
    )
    assert header["x5t#S256"] == header["kid"] == thumbprint


def test_token_is_cached_and_refreshed_before_it_expires(monkeypatch):
    fake = FakeEbox({PUBLISH_PATH: [created()]}, expires_in=600)
    client = make_client(fake)
    client.publish(publication(letter_id="a"))
    client.publish(publication(letter_id="b"))
    assert fake.tokens_issued == 1
    later = time.monotonic() + 600 - 59  # inside the 60 s refresh margin
    monkeypatch.setattr(client_module.time, "monotonic", lambda: later)
    client.publish(publication(letter_id="c"))
    assert fake.tokens_issued == 2


def test_concurrent_publishers_share_one_token_and_respect_max_concurrency():
    in_flight, peak, lock = 0, 0, threading.Lock()

    def slow(request):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        return created()

    fake = FakeEbox({PUBLISH_PATH: [slow]})
    client = make_client(fake, max_concurrency=2)
    threads = [
        threading.Thread(target=client.publish, args=(publication(letter_id=f"L{i}"),)) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake.calls(PUBLISH_PATH)) == 8
    assert fake.tokens_issued == 1
    assert peak == 2


# -- activation lookup ---------------------------------------------------------------------------


def _preferences_answer(active: set[str], ebox_type="ENTERPRISE"):
    def answer(request):
        body = httpx.Response(200, content=request.read()).json()
        return httpx.Response(
            200,
            json=[
                {"eboxId": {"eboxType": ebox_type, "eboxIdValue": i}, "exclusivelyEbox": i.endswith("0")}
                for i in body["eboxIdValueList"]
                if i in active
            ],
        )

    return answer


def test_lookup_batches_at_1000_and_answers_every_id():
    ids = [f"0{n:09d}" for n in range(2500)]
    active = set(ids[::7])
    fake = FakeEbox({PREFERENCES_PATH: [_preferences_answer(active)]})
    result = make_client(fake).lookup_activation("enterprise", ids + ids[:10])  # duplicates asked once
    sent = [httpx.Response(200, content=r.read()).json() for r in fake.calls(PREFERENCES_PATH)]
    assert [len(b["eboxIdValueList"]) for b in sent] == [1000, 1000, 500]
    assert {(b["eboxType"], b["eboxIdType"]) for b in sent} == {("ENTERPRISE", "EnterpriseNumber")}
    assert set(result) == set(ids)
    assert all(result[i].active == (i in active) for i in ids)
    assert result[ids[0]] == Activation(True, True) and result[ids[1]] == Activation(False)


def test_citizen_lookup_uses_the_consents_search():
    fake = FakeEbox({CONSENTS_PATH: [_preferences_answer({CITIZEN_ID}, "CITIZEN")]})
    result = make_client(fake).lookup_activation("citizen", [CITIZEN_ID, "85073003329"])
    assert result == {CITIZEN_ID: Activation(True, False), "85073003329": Activation(False)}
    body = httpx.Response(200, content=fake.calls(CONSENTS_PATH)[0].read()).json()
    assert (body["eboxType"], body["eboxIdType"]) == ("CITIZEN", "SSIN")


def test_lookup_of_nothing_calls_nothing():
    fake = FakeEbox()
    assert make_client(fake).lookup_activation("citizen", []) == {}
    assert fake.requests == []


def test_lookup_that_stays_unavailable_raises():
    fake = FakeEbox({PREFERENCES_PATH: [status(503)]})
    with pytest.raises(EboxUnavailableError):
        make_client(fake, max_attempts=2).lookup_activation("enterprise", [ENTERPRISE_ID])


def test_lookup_error_answer_raises():
    fake = FakeEbox({PREFERENCES_PATH: [status(400, "INVALID_INPUT")]})
    with pytest.raises(EboxError, match="INVALID_INPUT"):
        make_client(fake).lookup_activation("enterprise", [ENTERPRISE_ID])


def test_search_message_status_sends_message_and_ebox_ids():
    answer = [
        {
            "messageId": "m-1",
            "eboxId": {"eboxType": "citizen", "eboxIdValue": CITIZEN_ID},
            "readStatus": True,
            "visible": True,
        }
    ]
    fake = FakeEbox({STATUS_PATH: [httpx.Response(201, json=answer)]})
    assert make_client(fake).search_message_status([("m-1", "citizen", CITIZEN_ID)]) == answer
    body = httpx.Response(200, content=fake.calls(STATUS_PATH)[0].read()).json()
    assert body == [{"messageId": "m-1", "eboxId": {"eboxType": "citizen", "eboxIdValue": CITIZEN_ID}}]


# -- message types -------------------------------------------------------------------------------

TYPES_PATH = "/REST/ebox/enterprise/messageRegistry/v2/referenceData/messageTypes"


def _types_answer(ids: list[str]):
    def answer(request):
        page, size = int(request.url.params["page"]), int(request.url.params["pageSize"])
        items = [
            {
                "messageTypeId": i,
                "messageTypeName": {"nl": i},
                "validityPeriod": {"validityPeriodNumber": 2, "validityPeriodUnit": "year"},
                "senderApplicationIds": ["dijlepost"],
            }
            for i in ids[(page - 1) * size : page * size]
        ]
        return httpx.Response(200, json={"items": items, "totalItems": len(ids)})

    return answer


@pytest.fixture
def fresh_type_cache(monkeypatch):
    monkeypatch.setattr(client_module, "_MESSAGE_TYPES_CACHE", {})


def test_message_types_are_read_page_by_page(fresh_type_cache):
    ids = [f"T-{n:03d}" for n in range(150)]
    fake = FakeEbox({TYPES_PATH: [_types_answer(ids)]})
    types = make_client(fake).message_types()
    assert sorted(types) == ids
    assert [r.url.params["page"] for r in fake.calls(TYPES_PATH)] == ["1", "2"]
    assert types["T-007"].validity == "2 year"
    assert types["T-007"].allows("0200000043", "dijlepost") and not types["T-007"].allows(
        "0200000043", "other"
    )


def test_message_types_are_cached_for_the_day(fresh_type_cache, monkeypatch):
    fake = FakeEbox({TYPES_PATH: [_types_answer(["A"])]})
    make_client(fake).message_types()
    make_client(fake).message_types()  # another client of the same process and configuration
    assert len(fake.calls(TYPES_PATH)) == 1

    real = client_module.datetime

    class Tomorrow(real):
        @classmethod
        def now(cls, tz=None):
            return real.now(tz) + timedelta(days=1)

    monkeypatch.setattr(client_module, "datetime", Tomorrow)
    make_client(fake).message_types()
    assert len(fake.calls(TYPES_PATH)) == 2


def test_no_message_types_at_all_is_an_empty_registry(fresh_type_cache):
    fake = FakeEbox({TYPES_PATH: [status(404, "NOT_FOUND", "messageTypes not found")]})
    assert make_client(fake).message_types() == {}


def test_an_unavailable_registry_raises(fresh_type_cache):
    fake = FakeEbox({TYPES_PATH: [status(503)]})
    with pytest.raises(EboxUnavailableError, match="messageTypes"):
        make_client(fake, max_attempts=2).message_types()


# -- configuration and logging -------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("message_registry_url", "http://ebox.test/"),
        ("token_url", ""),
        ("client_id", " "),
        ("sender_organization_id", "2200000043"),
        ("sender_organization_id", "020000004"),
        ("private_key_pem", "not a key"),
        ("ca_bundle", "/nonexistent/ca.pem"),
        ("timeout_seconds", 0),
        ("max_concurrency", 0),
        ("max_attempts", 1.5),
        ("certificate_pem", "not a certificate"),
        ("key_id", " "),
    ],
)
def test_config_names_the_bad_field(field, value):
    with pytest.raises(EboxConfigurationError) as caught:
        unit_config(**{field: value})
    assert caught.value.field == field
    assert field in str(caught.value)


def test_config_wants_an_rsa_key_and_hides_it_from_repr():
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    with pytest.raises(EboxConfigurationError, match="RSA"):
        unit_config(private_key_pem=ec_pem)
    assert "PRIVATE KEY" not in repr(unit_config())
    assert CITIZEN_ID not in repr(publication())


def test_logs_never_contain_recipient_ids(caplog):
    caplog.set_level(logging.DEBUG)
    fake = FakeEbox(
        {
            PUBLISH_PATH: [status(503), created()],
            PREFERENCES_PATH: [_preferences_answer({ENTERPRISE_ID})],
            CONSENTS_PATH: [_preferences_answer({CITIZEN_ID}, "CITIZEN")],
            STATUS_PATH: [httpx.Response(201, json=[])],
        }
    )
    client = make_client(fake)
    client.publish(publication())
    client.lookup_activation("enterprise", [ENTERPRISE_ID])
    client.lookup_activation("citizen", [CITIZEN_ID])
    client.search_message_status([("m-1", "citizen", CITIZEN_ID)])
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "L-0001" in text  # letters are identified by their letter id
    assert CITIZEN_ID not in text and ENTERPRISE_ID not in text


# -- the table of answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer, verdict",
    [
        (status(400, "INVALID_INPUT", "$.subject.nl is empty"), Verdict.LETTER),
        (status(400, "DIGEST_DO_NOT_MATCH", "digest"), Verdict.LETTER),
        (status(413, "PAYLOAD_TOO_LARGE", "too large"), Verdict.LETTER),
        (status(400, "INVALID_SENDER", "unknown sender"), Verdict.CONFIGURATION),
        (status(400, "NOT_IMPLEMENTED", "no"), Verdict.CONFIGURATION),
        (status(403, "FORBIDDEN", "no"), Verdict.CONFIGURATION),
        (status(404, "NOT_FOUND", "no"), Verdict.CONFIGURATION),
        (status(405, "METHOD_NOT_ALLOWED", "no"), Verdict.CONFIGURATION),
        (status(415, "UNSUPPORTED", "no"), Verdict.CONFIGURATION),
        (httpx.Response(302, headers={"Location": "https://login.example/"}), Verdict.CONFIGURATION),
        (status(418, "TEAPOT", "?"), Verdict.CONFIGURATION),
        (status(408, "TIMEOUT", "slow"), Verdict.TRANSIENT),
        (status(425, "TOO_EARLY", "early"), Verdict.TRANSIENT),
        (status(429), Verdict.TRANSIENT),
        (httpx.Response(502, text="<html>bad gateway</html>"), Verdict.TRANSIENT),
        (status(401, "UNAUTHORIZED"), Verdict.TOKEN),
        (status(400, "INVALID_TOKEN", "Invalid access token"), Verdict.TOKEN),
        (status(400, "BAD_REQUEST", "Invalid acess token"), Verdict.TOKEN),  # the Swagger's spelling
        # A validation message that merely mentions the access token is not the token answer.
        (
            status(400, "INVALID_INPUT", "field accessToken: the access token of the recipient"),
            Verdict.LETTER,
        ),
        (status(409, "CONFLICT"), Verdict.CONFLICT),
    ],
)
def test_every_answer_has_one_verdict_in_the_table(answer, verdict):
    assert client_module.classify(answer).verdict is verdict


def test_a_configuration_refusal_names_the_setting_to_check():
    fake = FakeEbox({PUBLISH_PATH: [status(400, "INVALID_SENDER", "unknown sender")]})
    with pytest.raises(EboxConfigurationError, match="check extras 'sender_organization_id'"):
        make_client(fake).publish(publication())
    assert fake.tokens_issued == 1  # no token renewal for it


def test_a_408_is_retried_not_quarantined():
    fake = FakeEbox({PUBLISH_PATH: [status(408, "TIMEOUT"), created("m-9")]})
    assert make_client(fake).publish(publication()).message_id == "m-9"


@pytest.mark.parametrize(
    "answer, message",
    [
        (httpx.Response(200, html="<html><body>Service unavailable</body></html>"), "not JSON (text/html)"),
        (httpx.Response(201, json={}), "no messageId, no expirationDate"),
        (httpx.Response(201, text=""), "not JSON"),
        (httpx.Response(201, json=[]), "JSON that is not an object"),
        (httpx.Response(201, json={"messageId": "m-1"}), "no expirationDate"),
        (
            httpx.Response(
                201, json={"messageId": "m-1", "expirationDate": "2027-01-01T00:00:00Z", "code": "QUEUED"}
            ),
            "unknown code 'QUEUED'",
        ),
        (
            httpx.Response(200, json={"messageId": "m-1", "expirationDate": "2027-01-01T00:00:00Z"}),
            "HTTP 200",
        ),
        (
            httpx.Response(202, json={"messageId": "", "expirationDate": "2027-01-01T00:00:00Z"}),
            "no messageId",
        ),
    ],
)
def test_anything_but_a_contract_201_is_unconfirmed(answer, message):
    outcome = make_client(FakeEbox({PUBLISH_PATH: [answer]})).publish(publication())
    assert outcome.kind == "unconfirmed" and message in outcome.message
    assert outcome.message_id in (None, "m-1")


def test_a_contract_201_with_no_digital_user_is_accepted():
    fake = FakeEbox({PUBLISH_PATH: [created("m-7", code="NO_DIGITAL_USER", message="never opened")]})
    outcome = make_client(fake).publish(publication())
    assert (outcome.kind, outcome.message_id) == ("no_digital_user", "m-7")


def test_a_token_refused_for_the_clock_is_named_as_such():
    late = email.utils.format_datetime(datetime.now(UTC) - timedelta(seconds=120), usegmt=True)

    def handler(request):
        return httpx.Response(
            401,
            json={"error": "invalid_client", "error_description": "assertion rejected"},
            headers={"Date": late},
        )

    client = EboxClient(unit_config(), http=httpx.Client(transport=httpx.MockTransport(handler)))
    with pytest.raises(EboxConfigurationError, match=r"clock is \+12\d s off the eBox's.*NTP") as refused:
        client.publish(publication())
    assert refused.value.field == "assertion_leeway_seconds"
