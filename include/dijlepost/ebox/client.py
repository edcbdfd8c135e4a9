"""Client for the federal eBox REST APIs: who has an active eBox, publish a letter, read status.

Plain Python on httpx (no Airflow import), so the same code runs in Airflow tasks, the CLI, the
demo and the tests. The contract is the eBox integration notes plus the published Message Registry
2.1 and Federation 1.3 Swagger files; the local sandbox (`sandboxes/ebox`) speaks the same contract.

Every answer is classified by one table, `ANSWERS` (docs/ebox.md, "Every answer"):
- a refusal of *this letter* (recipient, document: a 400, a 413) comes back as a `PublishOutcome`
  `rejected`; the caller quarantines it;
- a refusal of the sender, the application, the credentials, the message type or the request format
  (400 INVALID_SENDER, 403, 404/405, 406/415, a token request refused, an expired certificate)
  raises `EboxConfigurationError` naming the setting to check, so the task fails once;
- transient trouble (408, 425, 429, 5xx, timeouts, connection errors), of the API and of the token
  endpoint alike, is retried (tenacity) through one `CircuitBreaker` per client: a `Retry-After` or a
  run of failures pauses every thread of the task, and when the eBox stays unavailable past
  `outage_budget_seconds` every call raises `EboxOutageError` so the task gives its letters back;
- a 401, or the federation's 400 "Invalid access token", gets one fresh token and one more try;
- a publication counts as accepted only with a `201` whose JSON body is a contract
  `PublicationStatusMessage` (a `messageId` and an `expirationDate`, no `code` but NO_DIGITAL_USER);
  any other success-looking answer (a gateway's HTML page, `{}`, an unknown code) is `unconfirmed`.

Logs carry letter ids, status codes and counts only: never a recipient id, name or address.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import os
import random
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jwt
import tenacity
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

from include.dijlepost import logfmt

log = logging.getLogger("dijlepost.ebox")
_HTTPX_LOG = logging.getLogger("httpx")  # httpx's line per request, kept on the client's own path

PUBLICATION_SCOPE = "scope:document:management:consult:ws-eboxrestentreprise:publicationsender"
PREFERENCE_SCOPE = "scope:documentmanagement:ebox:enterprise:federation-rest:preference"
SCOPES = (PUBLICATION_SCOPE, PREFERENCE_SCOPE)

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Fixed for the life of the project: changing it would give every letter a new Idempotency-Key and
# so re-open the door to double publication of letters that were already sent.
IDEMPOTENCY_NAMESPACE = uuid.UUID("6f0c5bd2-4d1e-5a49-9b8e-2f3c1d7a9e10")

LOOKUP_BATCH_SIZE = 1000  # the legacy SOAP services take at most 1000 ids per call
RECIPIENT_KINDS = ("citizen", "enterprise")
LANGUAGES = ("nl", "fr", "de")
SENDER_ORGANIZATION_PATTERN = re.compile(r"[0-1][0-9]{9}")

# Refresh the token this long before the server says it expires, so that a request never leaves
# with a token that dies in flight.
TOKEN_REFRESH_MARGIN_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 30.0
# The circuit breaker: this many transient failures in a row (without a success between them) pause
# every thread of the task; the pause starts at BREAKER_FIRST_PAUSE and doubles up to
# BREAKER_MAX_PAUSE; one call probes the eBox at the end of each pause. A Retry-After sets the pause.
BREAKER_THRESHOLD = 3
BREAKER_FIRST_PAUSE_SECONDS = 1.0
BREAKER_MAX_PAUSE_SECONDS = 30.0
MESSAGE_TYPES_PAGE_SIZE = 100  # the largest page referenceData/messageTypes gives
# The message-type registry is read once a day (the city's day) per registry, client and application.
MESSAGE_TYPES_DAY_ZONE = ZoneInfo("Europe/Brussels")
# `messageToPublish` is a JSON text part; its charset is declared rather than left to a default.
MESSAGE_PART_CONTENT_TYPE = "application/json; charset=UTF-8"


class EboxError(Exception):
    """Something went wrong talking to the eBox."""


class EboxConfigurationError(EboxError):
    """Bad configuration or credentials: no retry will help, the task must fail loudly.

    `field` names the offending EboxConfig field when the problem is one field's value; `sent` says
    whether the call that met the refusal reached the eBox."""

    def __init__(self, message: str, field: str | None = None, *, sent: bool = True):
        super().__init__(message)
        self.field, self.sent = field, sent


class EboxUnavailableError(EboxError):
    """The eBox kept answering 429/5xx or timing out until the attempts ran out."""


class EboxOutageError(EboxUnavailableError):
    """The circuit breaker gave up: the eBox stayed unavailable past the task's outage budget.

    `sent` is False when the call that raised it never left (the breaker was already open)."""

    def __init__(self, message: str, *, sent: bool = False):
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True)
class EboxConfig:
    """Everything the client needs; validated on construction."""

    message_registry_url: str
    federation_url: str
    token_url: str  # also the audience of the client assertion
    client_id: str
    private_key_pem: str = field(repr=False)
    # The X.509 certificate registered with the eBox for this environment (PEM); its SHA-256
    # thumbprint goes into the client assertion's header as `x5t#S256`, and as `kid` unless `key_id`
    # names the key otherwise.
    certificate_pem: str = field(repr=False)
    sender_organization_id: str
    sender_application_id: str
    ca_bundle: str | None = None  # None: the system trust store
    key_id: str | None = None
    timeout_seconds: float = 30.0
    max_concurrency: int = 4
    max_attempts: int = 4
    backoff_base_seconds: float = 0.5
    # The client assertion's `iat` is backdated by this much, so that a worker whose clock runs ahead
    # of the eBox's is not refused; its `exp` is `assertion_lifetime_seconds` after the signing.
    assertion_leeway_seconds: int = 30
    assertion_lifetime_seconds: int = 60
    # How long one task waits out an unavailable eBox (circuit breaker open) before it gives its
    # unsent letters back to the outbox; well inside a chunk task's execution_timeout (15 min).
    outage_budget_seconds: float = 300.0
    # Certificate rotation: the next certificate (and its key, when it has a new one), used from
    # `certificate_switch_at` on; a warning (log line and alert) this many days before the certificate
    # in use expires.
    next_certificate_pem: str | None = field(default=None, repr=False)
    next_private_key_pem: str | None = field(default=None, repr=False)
    certificate_switch_at: datetime | None = None
    certificate_warning_days: int = 30

    def __post_init__(self) -> None:
        for name in ("message_registry_url", "federation_url", "token_url"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith("https://") or len(value) <= 8:
                raise EboxConfigurationError(f"{name} must be an https:// URL", name)
        for name in ("client_id", "sender_application_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise EboxConfigurationError(f"{name} is empty", name)
        if not isinstance(self.sender_organization_id, str) or not SENDER_ORGANIZATION_PATTERN.fullmatch(
            self.sender_organization_id
        ):
            raise EboxConfigurationError(
                "sender_organization_id must be a KBO number of 10 digits starting with 0 or 1",
                "sender_organization_id",
            )
        if self.ca_bundle is not None:
            try:
                ssl.create_default_context(cafile=self.ca_bundle)
            except (OSError, ssl.SSLError) as exc:
                raise EboxConfigurationError(
                    f"ca_bundle {self.ca_bundle!r} is not a readable PEM CA file ({exc})", "ca_bundle"
                ) from None
        if not isinstance(self.timeout_seconds, (int, float)) or self.timeout_seconds <= 0:
            raise EboxConfigurationError("timeout_seconds must be a positive number", "timeout_seconds")
        for name in ("max_concurrency", "max_attempts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise EboxConfigurationError(f"{name} must be a whole number >= 1", name)
        if not isinstance(self.backoff_base_seconds, (int, float)) or self.backoff_base_seconds < 0:
            raise EboxConfigurationError("backoff_base_seconds must be a number >= 0", "backoff_base_seconds")
        for name, low, high in (
            ("assertion_leeway_seconds", 0, 300),
            ("assertion_lifetime_seconds", 10, 300),
            ("certificate_warning_days", 0, 365),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise EboxConfigurationError(f"{name} must be a whole number within {low}..{high}", name)
        if not isinstance(self.outage_budget_seconds, (int, float)) or self.outage_budget_seconds < 0:
            raise EboxConfigurationError(
                "outage_budget_seconds must be a number >= 0", "outage_budget_seconds"
            )
        # Fails here rather than at the first token request.
        _matching(self.signing_key(), self.certificate(), "certificate_pem", "private_key_pem")
        if self.key_id is not None and (not isinstance(self.key_id, str) or not self.key_id.strip()):
            raise EboxConfigurationError("key_id is empty", "key_id")
        if self.next_private_key_pem is not None and self.next_certificate_pem is None:
            raise EboxConfigurationError(
                "next_private_key_pem is set without next_certificate_pem", "next_certificate_pem"
            )
        if self.next_certificate_pem is not None:
            if (
                not isinstance(self.certificate_switch_at, datetime)
                or self.certificate_switch_at.tzinfo is None
            ):
                raise EboxConfigurationError(
                    "certificate_switch_at (a date-time with its time zone) is required with the next "
                    "certificate",
                    "certificate_switch_at",
                )
            _matching(
                self.signing_key(next_one=True),
                self.certificate(next_one=True),
                "next_certificate_pem",
                "next_private_key_pem" if self.next_private_key_pem else "private_key_pem",
            )

    def _next_is_active(self, now: datetime | None) -> bool:
        if self.next_certificate_pem is None or self.certificate_switch_at is None:
            return False
        return (now or datetime.now(UTC)) >= self.certificate_switch_at

    def certificate(self, *, next_one: bool = False, at: datetime | None = None) -> x509.Certificate:
        """The current certificate; `next_one` the next one; `at` the one in use at that moment."""
        use_next = next_one or (at is not None and self._next_is_active(at))
        name = "next_certificate_pem" if use_next else "certificate_pem"
        try:
            return x509.load_pem_x509_certificate(getattr(self, name).encode())
        except (ValueError, TypeError, AttributeError):
            raise EboxConfigurationError(f"{name} is not a PEM X.509 certificate", name) from None

    def certificate_thumbprint(self, at: datetime | None = None) -> str:
        """`x5t#S256` (RFC 7515): base64url without padding of the SHA-256 of the certificate's DER."""
        der = self.certificate(at=at).public_bytes(Encoding.DER)
        return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode("ascii").rstrip("=")

    def assertion_header(self, at: datetime | None = None) -> dict[str, str]:
        """The JOSE header fields of the client assertion that name the registered certificate.

        The eBox documentation registers one certificate per environment but does not say which
        header field it reads: both the thumbprint and a key id are sent. After the switch date the
        next certificate is named (by its thumbprint: `key_id` belongs to the current one)."""
        thumbprint = self.certificate_thumbprint(at)
        if self._next_is_active(at):
            return {"kid": thumbprint, "x5t#S256": thumbprint}
        return {"kid": self.key_id or thumbprint, "x5t#S256": thumbprint}

    def signing_key(self, *, next_one: bool = False, at: datetime | None = None) -> RSAPrivateKey:
        use_next = (next_one or (at is not None and self._next_is_active(at))) and bool(
            self.next_private_key_pem
        )
        name = "next_private_key_pem" if use_next else "private_key_pem"
        try:
            key = load_pem_private_key(getattr(self, name).encode(), password=None)
        except (ValueError, TypeError, AttributeError):
            raise EboxConfigurationError(f"{name} is not an unencrypted PEM private key", name) from None
        if not isinstance(key, RSAPrivateKey):
            raise EboxConfigurationError(f"{name} must be an RSA key (the assertion is signed RS256)", name)
        return key

    def check_certificate(self, now: datetime | None = None) -> str | None:
        """Refuse a certificate in use that expired (or is not valid yet); a warning in words when it
        expires within `certificate_warning_days` and no next certificate takes over before that."""
        now = now or datetime.now(UTC)
        use_next = self._next_is_active(now)
        name = "next_certificate_pem" if use_next else "certificate_pem"
        certificate = self.certificate(at=now)
        not_after, not_before = certificate.not_valid_after_utc, certificate.not_valid_before_utc
        if now >= not_after:
            raise EboxConfigurationError(
                f"the eBox client certificate ({name}) expired on {_brussels(not_after)}: put the renewed "
                "certificate registered with the eBox in the Connection (extra 'certificate', or "
                "'next_certificate' with 'certificate_switch_at')",
                name,
                sent=False,
            )
        if now < not_before:
            raise EboxConfigurationError(
                f"the eBox client certificate ({name}) is not valid before {_brussels(not_before)}",
                name,
                sent=False,
            )
        taken_over = (
            not use_next and self.certificate_switch_at is not None and self.certificate_switch_at < not_after
        )
        left = not_after - now
        if left <= timedelta(days=self.certificate_warning_days) and not taken_over:
            return (
                f"the eBox client certificate ({name}) expires on {_brussels(not_after)}, in {left.days} days: "
                "register its successor with the eBox and put it in the Connection (extra "
                "'next_certificate' and 'certificate_switch_at')"
            )
        return None


def _brussels(moment: datetime) -> str:
    return moment.astimezone(MESSAGE_TYPES_DAY_ZONE).strftime("%Y-%m-%d %H:%M %Z")


def _matching(key: RSAPrivateKey, certificate: x509.Certificate, cert_name: str, key_name: str) -> None:
    if certificate.public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo):
        raise EboxConfigurationError(f"{cert_name} is not the certificate of {key_name}", cert_name)


@dataclass(frozen=True)
class Activation:
    active: bool
    exclusively_ebox: bool | None = None
    # `lastConnectionDate` as answered: when the recipient last opened the eBox. None for a recipient
    # who never did, the one a publication answers NO_DIGITAL_USER.
    last_connection: str | None = None


@dataclass(frozen=True)
class Publication:
    letter_id: str
    recipient_kind: str  # "citizen" | "enterprise"
    recipient_id: str = field(repr=False)
    language: str  # "nl" | "fr" | "de"
    subject: str
    message_type_id: str  # a messageTypeId of the eBox's registry (checked by `check_message_types`)
    registered: bool
    pdf: bytes = field(repr=False)
    filename: str

    def __post_init__(self) -> None:
        if self.recipient_kind not in RECIPIENT_KINDS:
            raise ValueError(f"letter {self.letter_id}: recipient_kind must be citizen or enterprise")
        if self.language not in LANGUAGES:
            raise ValueError(f"letter {self.letter_id}: language must be one of nl, fr, de")
        if not isinstance(self.message_type_id, str) or not self.message_type_id.strip():
            raise ValueError(f"letter {self.letter_id}: message_type_id is missing")


@dataclass(frozen=True)
class PublishOutcome:
    # "published" | "no_digital_user": a 201 PublicationStatusMessage; "already_published": a 409;
    # "unconfirmed": a success-looking answer without a contract messageId; "rejected": a refusal of
    # this letter; "retry_later": transient trouble until the attempts ran out.
    kind: str
    message_id: str | None = None
    code: str | None = None
    message: str | None = None
    # `expirationDate` of a 201 answer: until when the eBox keeps the message (its type's validity).
    expires_at: str | None = None
    status: int | None = field(default=None, compare=False)  # the HTTP status, when there was one


class Verdict(StrEnum):
    """What an answer of the eBox means for the caller."""

    LETTER = "letter"  # this letter is refused: quarantined with the reason
    CONFIGURATION = "configuration"  # the sender, application, credentials or request: the task fails
    TRANSIENT = "transient"  # retried through the circuit breaker
    TOKEN = "token"  # noqa: S105  (not a secret) one fresh token and one more try
    CONFLICT = "conflict"  # 409: the Idempotency-Key was used before


@dataclass(frozen=True)
class AnswerRule:
    statuses: tuple[int, ...]
    code: str | None  # the StatusMessage `code`, None: any
    verdict: Verdict
    setting: str | None  # what to check, for a configuration refusal
    meaning: str


def _span(low: int, high: int) -> tuple[int, ...]:
    return tuple(range(low, high + 1))


CONNECTION_URLS = "the eBox Connection's URLs (host or extra 'message_registry_url', extra 'federation_url')"
# The one table of the eBox's answers (other than a 201), first match wins; docs/ebox.md shows it.
ANSWERS: tuple[AnswerRule, ...] = (
    AnswerRule((408, 425, 429), None, Verdict.TRANSIENT, None, "busy or timed out: retried"),
    AnswerRule(_span(500, 599), None, Verdict.TRANSIENT, None, "server or gateway error: retried"),
    AnswerRule((401,), None, Verdict.TOKEN, None, "bad or expired token"),
    AnswerRule((400,), "INVALID_TOKEN", Verdict.TOKEN, None, 'the federation\'s "Invalid access token"'),
    AnswerRule(
        (400,),
        "INVALID_SENDER",
        Verdict.CONFIGURATION,
        "extras 'sender_organization_id' and 'sender_application_id' of the eBox Connection",
        "the sender organisation or application is not registered for this client",
    ),
    AnswerRule(
        (400,),
        "NOT_IMPLEMENTED",
        Verdict.CONFIGURATION,
        CONNECTION_URLS,
        "this eBox does not offer the operation",
    ),
    AnswerRule(
        (403,),
        None,
        Verdict.CONFIGURATION,
        "the access registered with the eBox for client 'login' / extra 'client_id' (its scopes, its "
        "sender application)",
        "the application may not make this call",
    ),
    AnswerRule((404, 405), None, Verdict.CONFIGURATION, CONNECTION_URLS, "no such operation at this URL"),
    AnswerRule(
        (406, 411, 415, 431),
        None,
        Verdict.CONFIGURATION,
        "the request format this client sends (its version against the eBox's)",
        "the eBox refuses the request's format",
    ),
    AnswerRule((409,), None, Verdict.CONFLICT, None, "the Idempotency-Key was used before"),
    AnswerRule((413,), None, Verdict.LETTER, None, "this letter is larger than the eBox accepts"),
    AnswerRule(
        (400,),
        None,
        Verdict.LETTER,
        None,
        "a refusal of this letter (recipient, document); the same refusal for several letters in a "
        "row, before any is accepted, is one of the request",
    ),
    AnswerRule(
        _span(300, 399), None, Verdict.CONFIGURATION, CONNECTION_URLS, "a redirect (a gateway's login page)"
    ),
    AnswerRule(
        _span(400, 499),
        None,
        Verdict.CONFIGURATION,
        "the request format this client sends (its version against the eBox's)",
        "an answer the contract does not describe",
    ),
)
# The federation's documented 400 "Invalid access token" (the Swagger spells it "acess"): its code is
# not published, so besides the code INVALID_TOKEN the whole message, and nothing else, counts.
_INVALID_TOKEN_MESSAGE = re.compile(r"invalid ac+ess token\.?", re.I)


def classify(response: httpx.Response) -> AnswerRule:
    """The rule of `ANSWERS` that an answer (other than a 2xx) falls under."""
    status = response.status_code
    code, message = _status_message(response)
    if status == 400 and _INVALID_TOKEN_MESSAGE.fullmatch((message or "").strip()):
        code = "INVALID_TOKEN"
    for rule in ANSWERS:
        if status in rule.statuses and (rule.code is None or rule.code == code):
            return rule
    return AnswerRule((status,), None, Verdict.CONFIGURATION, CONNECTION_URLS, "an unexpected answer")


def configuration_error(path: str, response: httpx.Response, rule: AnswerRule) -> EboxConfigurationError:
    code, message = _status_message(response)
    return EboxConfigurationError(
        f"eBox {path} answered HTTP {response.status_code} {code or ''}: {message or rule.meaning}; "
        f"check {rule.setting}".replace("  ", " ")
    )


def publication_answer(response: httpx.Response) -> PublishOutcome | None:
    """A 2xx answer of publishMessage as an outcome; None for any other status.

    Only a 201 whose JSON body is a contract PublicationStatusMessage (a non-empty `messageId`, an
    `expirationDate`, no `code` or NO_DIGITAL_USER) is accepted. Anything else that looks like
    success (a gateway's HTML page, `{}`, an unknown code, a 200) is `unconfirmed`: the letter may or
    may not be in the eBox. A `messageId` it carries is kept for the status search."""
    status = response.status_code
    if not 200 <= status < 300:
        return None
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower() or "none"
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        what = "a body that is not JSON" if body is None else "JSON that is not an object"
        return PublishOutcome(
            "unconfirmed", code=f"HTTP_{status}", message=f"{what} ({content_type})", status=status
        )
    message_id, expires, code = body.get("messageId"), body.get("expirationDate"), body.get("code")
    candidate = message_id if isinstance(message_id, str) and message_id.strip() else None
    problems = []
    if status != 201:
        problems.append(f"HTTP {status} instead of 201")
    if candidate is None:
        problems.append("no messageId")
    if not isinstance(expires, str) or not _is_date_time(expires):
        problems.append("no expirationDate")
    if code not in (None, "NO_DIGITAL_USER"):
        problems.append(f"unknown code {str(code)[:40]!r}")
    if problems:
        return PublishOutcome(
            "unconfirmed",
            message_id=candidate,
            code=f"HTTP_{status}",
            message=", ".join(problems),
            status=status,
        )
    return PublishOutcome(
        "no_digital_user" if code == "NO_DIGITAL_USER" else "published",
        message_id=candidate,
        code=code,
        message=body.get("message") if isinstance(body.get("message"), str) else None,
        expires_at=expires,
        status=status,
    )


def _is_date_time(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class MessageType:
    """One entry of the eBox's message-type registry, as far as a sender needs it."""

    message_type_id: str
    validity_number: int | None = None
    validity_unit: str | None = None  # "day" | "month" | "year"
    sender_organization_ids: tuple[str, ...] = ()
    sender_application_ids: tuple[str, ...] = ()

    @property
    def validity(self) -> str | None:
        """The validity period in words, e.g. "5 year"; None when the registry gives none."""
        if self.validity_number is None or self.validity_unit is None:
            return None
        return f"{self.validity_number} {self.validity_unit}"

    def allows(self, organization_id: str, application_id: str) -> bool:
        """Whether this sender may publish the type (an empty list in the registry: any sender)."""
        return (not self.sender_organization_ids or organization_id in self.sender_organization_ids) and (
            not self.sender_application_ids or application_id in self.sender_application_ids
        )


def idempotency_key(letter_id: str) -> str:
    """The Idempotency-Key of a letter: the same letter always gets the same key, so a retry after
    a timeout answers 409 instead of publishing twice."""
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, letter_id))


def sha256_base64url(data: bytes) -> str:
    """The digestValue the Message Registry expects: base64url (RFC 4648 §5) of SHA-256."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode("ascii")


def build_message_to_publish(pub: Publication, config: EboxConfig) -> dict[str, Any]:
    """The `messageToPublish` JSON of one letter.

    The PDF is the single main content, so there is no body: `bodyMainContent` is required by the
    Swagger but "must be present only if there is a body", hence `false` and no `bodyContent`.
    Keys are omitted rather than sent as null. No `expirationDate`: the eBox takes it from the
    message type's validity period and answers it."""
    message: dict[str, Any] = {
        "recipient": {"eboxType": pub.recipient_kind, "eboxIdValue": pub.recipient_id},
        "subject": {pub.language: pub.subject},
        "bodyMainContent": False,
        "senderOrganizationId": config.sender_organization_id,
        "senderApplicationId": config.sender_application_id,
        "replyAuthorized": False,
        "messageTypeId": pub.message_type_id,
        "attachments": [
            {
                "httpPartName": "upfile1",
                "mainContent": True,
                "attachmentSigned": False,
                "digest": {"digestMethod": "sha_256", "digestValue": sha256_base64url(pub.pdf)},
            }
        ],
    }
    if pub.registered:
        message["registeredMail"] = True
    return message


# One encoder for every messageToPublish (json.dumps builds a new one per call for these options).
_MESSAGE_ENCODER = json.JSONEncoder(ensure_ascii=False)
# A multipart parameter value escaped as httpx (and HTML5 forms) do it: `"` and control characters
# (but ESC) percent-encoded, a backslash doubled.
_FORM_PARAM_ESCAPES = {ord('"'): "%22", ord("\\"): "\\\\"} | {
    c: f"%{c:02X}" for c in range(0x20) if c != 0x1B
}
_MESSAGE_PART_HEAD = (
    b'\r\nContent-Disposition: form-data; name="messageToPublish"\r\nContent-Type: '
    + MESSAGE_PART_CONTENT_TYPE.encode("ascii")
    + b"\r\n\r\n"
)


def publication_body(message: dict[str, Any], pub: Publication) -> tuple[str, bytes]:
    """The multipart/form-data body of publishMessage and its Content-Type, in one buffer.

    The same bytes as httpx's own multipart encoding of the two parts (a random boundary; the
    `messageToPublish` JSON as a form field without a filename, with its media type and charset; the
    PDF as `upfile1` with its filename), built in one join: sent as one buffer it costs one TLS write
    instead of one per part, and a retry re-sends the same bytes."""
    boundary = os.urandom(16).hex().encode("ascii")
    file_head = b'\r\nContent-Disposition: form-data; name="upfile1"'
    if pub.filename:
        file_head += b'; filename="' + pub.filename.translate(_FORM_PARAM_ESCAPES).encode() + b'"'
    body = b"".join(
        (
            b"--",
            boundary,
            _MESSAGE_PART_HEAD,
            _MESSAGE_ENCODER.encode(message).encode("utf-8"),
            b"\r\n--",
            boundary,
            file_head,
            b"\r\nContent-Type: application/pdf\r\n\r\n",
            pub.pdf,
            b"\r\n--",
            boundary,
            b"--\r\n",
        )
    )
    return "multipart/form-data; boundary=" + boundary.decode("ascii"), body


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    when = _http_date(value)
    return None if when is None else max(0.0, (when - datetime.now(UTC)).total_seconds())


def _http_date(value: str | None) -> datetime | None:
    """An HTTP date (`Date`, `Retry-After`) as an aware datetime; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _clock_skew(response: httpx.Response) -> float | None:
    """How far this machine's clock is ahead of the server's (its `Date` header), in seconds."""
    when = _http_date(response.headers.get("Date"))
    return None if when is None else (datetime.now(UTC) - when).total_seconds()


def _speaks_of_time(description: Any) -> bool:
    """An OAuth2 error description about the assertion's times (`iat`, `exp`, "not yet valid")."""
    return isinstance(description, str) and bool(
        re.search(r"\b(iat|exp|nbf)\b|not yet valid|expired|clock", description, re.I)
    )


def _status_message(response: httpx.Response) -> tuple[str | None, str | None]:
    """`code` and `message` of a StatusMessage answer, tolerating bodies that are not JSON."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP_{response.status_code}", response.text[:500] or None
    if not isinstance(body, dict):
        return f"HTTP_{response.status_code}", None
    return body.get("code"), body.get("message")


def _message_type(item: Any) -> MessageType:
    if not isinstance(item, dict) or not isinstance(item.get("messageTypeId"), str):
        raise EboxError("referenceData/messageTypes answered an item without messageTypeId")
    validity: dict[str, Any] = item["validityPeriod"] if isinstance(item.get("validityPeriod"), dict) else {}
    number, unit = validity.get("validityPeriodNumber"), validity.get("validityPeriodUnit")
    ids = lambda key: tuple(str(i) for i in item.get(key) or ())  # noqa: E731
    return MessageType(
        item["messageTypeId"],
        number if isinstance(number, int) and not isinstance(number, bool) else None,
        unit if isinstance(unit, str) else None,
        ids("senderOrganizationIds"),
        ids("senderApplicationIds"),
    )


def _is_certificate_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _Exhausted(Exception):
    """Transient failures until max_attempts; `reason` says the last one (status or error type)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Transient(Exception):
    """One attempt that is worth another: 408, 425, 429, 5xx, a timeout or a connection error."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


class CircuitBreaker:
    """One per client, so one per task: every thread's calls to the eBox go through it.

    Closed, calls go out. A `Retry-After`, or `threshold` transient failures in a row (no success
    between them, whichever thread saw them), open it: every thread waits for the pause to end,
    then one call probes the eBox while the others keep waiting. A success closes it; a failure opens
    it again (the pause doubles up to `max_pause`, or follows the new Retry-After). When the outage,
    counted from its first failure, would last past `budget_seconds`, the breaker stops for good and
    every call raises EboxOutageError: the task gives its letters back and fails.

    The first opening and the stop are logged (one line each, and an alert line at the stop), never
    one line per call."""

    def __init__(
        self,
        budget_seconds: float,
        *,
        threshold: int = BREAKER_THRESHOLD,
        first_pause: float = BREAKER_FIRST_PAUSE_SECONDS,
        max_pause: float = BREAKER_MAX_PAUSE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.budget, self.threshold = float(budget_seconds), threshold
        self.first_pause, self.max_pause = first_pause, max_pause
        self._clock, self._sleep = clock, sleep
        self._cond = threading.Condition()
        self._failures = 0
        self._pause = first_pause
        self._open_until: float | None = None
        self._outage_since: float | None = None
        self._last_reason = ""
        self._probing = False
        self.stopped: str | None = None
        # What the breaker saw, for the task's summary and the benchmark.
        self.openings = 0
        self.probes = 0
        self.waited_seconds = 0.0

    @property
    def in_outage(self) -> bool:
        with self._cond:
            return self._open_until is not None or self._failures >= self.threshold

    def before_call(self) -> bool:
        """Wait while the breaker is open; True when this call is the probe. Raises _Stopped."""
        while True:
            with self._cond:
                if self.stopped is not None:
                    raise _Stopped(self.stopped)
                if self._open_until is None:
                    return False
                now = self._clock()
                pause = self._open_until - now
                if pause <= 0:
                    if self._probing:  # another thread is asking the eBox; its answer decides
                        self._cond.wait(0.05)
                        continue
                    self._probing = True
                    self.probes += 1
                    return True
            self._sleep(pause)  # outside the lock, so that other threads can report and wait too
            with self._cond:
                self.waited_seconds += pause

    def end_probe(self) -> None:
        with self._cond:
            self._probing = False
            self._cond.notify_all()

    def success(self) -> None:
        with self._cond:
            if self._open_until is not None:
                log.warning(
                    "eBox available again after %.0f s (%d probes); publishing resumes",
                    self._clock() - (self._outage_since or self._clock()),
                    self.probes,
                )
            self._failures, self._pause = 0, self.first_pause
            self._open_until = self._outage_since = None
            self._probing = False
            self._cond.notify_all()

    def failure(self, reason: str, retry_after: float | None) -> None:
        with self._cond:
            now = self._clock()
            self._failures += 1
            self._last_reason = reason
            self._probing = False
            if self._outage_since is None:
                self._outage_since = now
            if retry_after is None and self._failures < self.threshold:
                return
            # A Retry-After is the least pause (never a hammering `Retry-After: 0`); longer outages
            # get longer pauses either way.
            pause = max(retry_after or 0.0, self._pause)
            self._pause = min(self.max_pause, self._pause * 2)
            if self._open_until is None:
                self.openings += 1
                log.warning(
                    "eBox unavailable (%s): every call of this task paused %.0f s, then one probe at a time "
                    "(outage budget %.0f s)",
                    reason,
                    pause,
                    self.budget,
                )
            self._open_until = max(self._open_until or now, now + pause)
            if self._open_until - (self._outage_since or now) > self.budget:
                self._stop(now)
            self._cond.notify_all()

    def _stop(self, now: float) -> None:
        since = self._outage_since if self._outage_since is not None else now
        self.stopped = (
            f"the eBox stayed unavailable ({self._last_reason}) for {now - since:.0f} s, and the "
            f"next try would pass the outage budget of {self.budget:.0f} s"
        )
        log.error("eBox circuit breaker: %s; this task stops publishing", self.stopped)
        logfmt.emit(
            "alert_ebox_unavailable",
            logger=log,
            reason=self._last_reason,
            outage_seconds=round(now - since),
            budget_seconds=round(self.budget),
        )


class _Stopped(Exception):
    """The breaker has stopped: no call leaves any more."""


# The certificates already warned about, per (thumbprint, day): one warning a day per process.
_CERTIFICATE_WARNED: set[tuple[str, date]] = set()
_CERTIFICATE_WARNED_LOCK = threading.Lock()

# The message-type registry, per (registry URL, client, application): (the day it was read, types).
_MESSAGE_TYPES_CACHE: dict[tuple[str, str, str], tuple[date, dict[str, MessageType]]] = {}
_MESSAGE_TYPES_LOCK = threading.Lock()


class EboxClient:
    """Thread-safe eBox client; share one per task (it caches the access token and holds the task's
    circuit breaker)."""

    def __init__(
        self,
        config: EboxConfig,
        http: httpx.Client | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        breaker: CircuitBreaker | None = None,
    ):
        self.config = config
        self._warn_about_certificate()  # an expired certificate fails here, before any call
        self._owns_http = http is None
        self._http = (
            http
            if http is not None
            else httpx.Client(
                verify=ssl.create_default_context(cafile=config.ca_bundle),
                timeout=config.timeout_seconds,
                limits=httpx.Limits(max_connections=config.max_concurrency),
            )
        )
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - back-off jitter, not a secret
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_refresh_at = 0.0
        if breaker is None and sleep is not time.sleep:
            # An injected sleep (tests) passes virtual time: the breaker's clock follows what it slept.
            slept = [0.0]

            def virtual_sleep(seconds: float) -> None:
                sleep(seconds)
                slept[0] += seconds

            breaker = CircuitBreaker(
                config.outage_budget_seconds,
                clock=lambda: time.monotonic() + slept[0],
                sleep=virtual_sleep,
            )
        self.breaker = breaker or CircuitBreaker(config.outage_budget_seconds)
        # Parsed once: every publication goes to the same URL.
        self._publish_url = httpx.URL(_join(config.message_registry_url, "publishMessage"))
        # Calls that left for the eBox, by outcome ("ok", "transient"), for summaries and benchmarks.
        self.calls: dict[str, int] = {"ok": 0, "transient": 0}
        self._calls_lock = threading.Lock()

    idempotency_key = staticmethod(idempotency_key)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> EboxClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _warn_about_certificate(self) -> None:
        warning = self.config.check_certificate()
        if warning is None:
            return
        day = datetime.now(MESSAGE_TYPES_DAY_ZONE).date()
        key = (self.config.certificate_thumbprint(datetime.now(UTC)), day)
        with _CERTIFICATE_WARNED_LOCK:  # once a day per process, not once per task
            if key in _CERTIFICATE_WARNED:
                return
            _CERTIFICATE_WARNED.add(key)
        log.warning("%s", warning)
        logfmt.emit("alert_ebox_certificate_expiring", logger=log, warning=warning)

    # -- HTTP plumbing -------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        # "Equal jitter": at least half the exponential step, so retries do spread but never collapse
        # to zero, and concurrent workers do not retry in lockstep.
        step = min(MAX_BACKOFF_SECONDS, self.config.backoff_base_seconds * 2 ** (attempt - 1))
        return step / 2 + self._rng.uniform(0, step / 2)

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        # While the breaker is open it does the waiting (and a Retry-After opens it): no second pause.
        if self.breaker.in_outage:
            return 0.0
        return self._backoff(retry_state.attempt_number)

    def _stop(self, retry_state: tenacity.RetryCallState) -> bool:
        # During an outage a call keeps waiting through the breaker until the outage budget is spent;
        # otherwise (one call failing while others get through) after max_attempts.
        return retry_state.attempt_number >= self.config.max_attempts and not self.breaker.in_outage

    def _count(self, what: str) -> None:
        with self._calls_lock:
            self.calls[what] += 1

    def _request(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange: what `httpx.Client.request` does with this client's calls, for less.

        The request is the one `Client.build_request` makes of them (the client's headers, then the
        call's; the client's timeout); it goes to the client's transport for its URL (a proxy included),
        the event hooks see it and its answer, httpx logs it, and the answer's cookies are kept when it
        sets any. Left out is what costs a publication most above the transport: httpx's cookie jar
        reads every answer through urllib's request and message classes, even one that sets no cookie.
        A call with other arguments than `headers` and `content`, or a client with authentication,
        redirects followed or cookies to send, takes httpx's own path."""
        http = self._http
        headers: dict[str, str] = kwargs.get("headers", {})
        if (
            kwargs.keys() - {"headers", "content"}
            or http.auth is not None
            or http.follow_redirects
            or len(http.cookies)
            or http.is_closed
        ):
            return http.request(method, url, **kwargs)
        # As httpx merges them: the client's headers but those the call replaces, then the call's
        # (encoded as httpx encodes text headers).
        own = [(name.encode("ascii"), value.encode("ascii")) for name, value in headers.items()]
        replaced = {name.lower() for name, _ in own}
        request = httpx.Request(
            method,
            url,
            headers=[(name, value) for name, value in http.headers.raw if name.lower() not in replaced] + own,
            content=kwargs.get("content"),
            extensions={"timeout": http.timeout.as_dict()},
        )
        for hook in http.event_hooks["request"]:
            hook(request)
        try:
            response = http._transport_for_url(request.url).handle_request(request)
        except httpx.RequestError as exc:
            exc.request = request  # as httpx.Client names the request of its errors
            raise
        try:
            response.request = request
            if "set-cookie" in response.headers or "set-cookie2" in response.headers:
                http.cookies.extract_cookies(response)
            if _HTTPX_LOG.isEnabledFor(logging.INFO):
                _HTTPX_LOG.info(
                    'HTTP Request: %s %s "%s %d %s"',
                    request.method,
                    request.url,
                    response.http_version,
                    response.status_code,
                    response.reason_phrase,
                )
            for hook in http.event_hooks["response"]:
                hook(response)
            response.read()
        finally:
            response.close()
        return response

    def _send(
        self,
        method: str,
        url: str | httpx.URL,
        prepare: Callable[[], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """One request with retries (tenacity) for transient answers (408, 425, 429, 5xx, timeouts and
        connection errors), each attempt through the circuit breaker.

        `prepare`, when given, is called for every attempt and its keyword arguments are added to
        the request's (the token request signs a fresh assertion each time). Returns the first other
        answer; raises _Exhausted when the attempts run out, EboxOutageError when the breaker stops.

        The first attempt runs on its own: most calls succeed at once and need no retry loop. A first
        attempt that fails transiently starts the loop, which takes that failure as its attempt 1."""
        sent = False

        def attempt() -> httpx.Response:
            nonlocal sent
            try:
                probe = self.breaker.before_call()
            except _Stopped as exc:
                raise EboxOutageError(str(exc), sent=sent) from None
            try:
                return exchange()
            finally:
                if probe:  # whatever became of the probe, the waiting threads must not wait for it forever
                    self.breaker.end_probe()

        def exchange() -> httpx.Response:
            nonlocal sent
            request_kwargs = {**kwargs, **prepare()} if prepare is not None else kwargs
            try:
                with self._slots:
                    sent = True
                    response = self._request(method, url, **request_kwargs)
            except httpx.TransportError as exc:
                if _is_certificate_failure(exc):
                    self.breaker.success()  # the eBox answered; nothing to wait for
                    raise EboxConfigurationError(
                        f"TLS certificate of {httpx.URL(url).host} does not verify against "
                        f"ca_bundle={self.config.ca_bundle!r}",
                        "ca_bundle",
                    ) from exc
                self._count("transient")
                self.breaker.failure(type(exc).__name__, None)
                raise _Transient(type(exc).__name__) from exc
            if 200 <= response.status_code < 300 or classify(response).verdict is not Verdict.TRANSIENT:
                self._count("ok")
                self.breaker.success()
                return response
            reason = f"HTTP {response.status_code}"
            retry_after = _retry_after_seconds(response)
            self._count("transient")
            self.breaker.failure(reason, retry_after)
            raise _Transient(reason, retry_after)

        try:
            return attempt()
        except _Transient as failure:
            first_failure: _Transient | None = failure
        path = httpx.URL(url).path

        def again() -> httpx.Response:
            nonlocal first_failure
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            return attempt()

        def reason_of(retry_state: tenacity.RetryCallState) -> str:
            """Why the attempt failed: every exception this retry loop retries carries its `reason`."""
            exc = retry_state.outcome.exception() if retry_state.outcome else None
            return str(getattr(exc, "reason", exc))

        def log_attempt(retry_state: tenacity.RetryCallState) -> None:
            # During an outage the breaker logs once for every thread; single failures are logged here.
            if not self.breaker.in_outage:
                log.info(
                    "eBox %s %s: %s (attempt %d of %d)",
                    method,
                    path,
                    reason_of(retry_state),
                    retry_state.attempt_number,
                    self.config.max_attempts,
                )

        def exhausted(retry_state: tenacity.RetryCallState) -> httpx.Response:
            raise _Exhausted(reason_of(retry_state))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=self._stop,
            wait=self._wait,
            sleep=self._sleep,
            after=log_attempt,
            retry_error_callback=exhausted,
        )
        return retrying(again)

    def _access_token(self) -> str:
        with self._token_lock:
            if self._token is None or time.monotonic() >= self._token_refresh_at:
                self._token, lifetime = self._request_token()
                margin = min(TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 2)
                self._token_refresh_at = time.monotonic() + lifetime - margin
            return self._token

    def _invalidate_token(self, rejected: str) -> None:
        with self._token_lock:
            # Another thread may already have replaced the rejected token.
            if self._token == rejected:
                self._token = None

    def client_assertion(self, now: float | None = None) -> str:
        """A new private_key_jwt: its own `jti`, `iat` and `exp`, so no attempt repeats another's.

        `iat` is backdated by `assertion_leeway_seconds`, so that a worker whose clock runs somewhat
        ahead of the eBox's is not refused; `exp` is `assertion_lifetime_seconds` after now. It is
        signed with the certificate in use now (the next one from `certificate_switch_at` on)."""
        cfg = self.config
        now = int(time.time() if now is None else now)
        moment = datetime.fromtimestamp(now, UTC)
        cfg.check_certificate(moment)
        return jwt.encode(
            {
                "iss": cfg.client_id,
                "sub": cfg.client_id,
                "aud": cfg.token_url,
                "jti": str(uuid.uuid4()),
                "iat": now - cfg.assertion_leeway_seconds,
                "exp": now + cfg.assertion_lifetime_seconds,
            },
            cfg.signing_key(at=moment),
            algorithm="RS256",
            headers=cfg.assertion_header(moment),
        )

    def _token_form(self) -> dict[str, Any]:
        return {
            "data": {
                "grant_type": "client_credentials",
                "client_id": self.config.client_id,
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": self.client_assertion(),
                "scope": " ".join(SCOPES),
            }
        }

    def _request_token(self) -> tuple[str, float]:
        cfg = self.config
        # _Exhausted propagates: publish turns it into retry_later, the lookups into an error.
        response = self._send("POST", cfg.token_url, prepare=self._token_form)
        if response.status_code != 200:
            try:
                answer = response.json()
                error, description = answer.get("error"), answer.get("error_description")
            except (ValueError, AttributeError):
                error = description = None
            refused = (
                f"the eBox token endpoint refused client {cfg.client_id!r}: HTTP {response.status_code}"
                + (f" {error}" if error else "")
                + (f" ({str(description)[:200]})" if description else "")
            )
            skew = _clock_skew(response)
            if (skew is not None and abs(skew) > cfg.assertion_leeway_seconds) or _speaks_of_time(
                description
            ):
                raise EboxConfigurationError(
                    f"{refused}: the client assertion's time was refused, this worker's clock is "
                    + (f"{skew:+.0f} s off the eBox's; " if skew is not None else "off the eBox's; ")
                    + "synchronise it (NTP), or raise extra 'assertion_leeway_seconds' "
                    f"({cfg.assertion_leeway_seconds} s)",
                    "assertion_leeway_seconds",
                )
            raise EboxConfigurationError(
                f"{refused}: check login / extra 'client_id', the private key and extra 'certificate' "
                "(the one registered with the eBox)"
            )
        try:
            body = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise EboxError("token endpoint answered 200 without a usable access_token") from None
        log.info("eBox access token obtained (expires in %.0f s)", lifetime)
        return token, lifetime

    def _authorized(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """A request with a bearer token. A 401, or a 400 "Invalid access token", gets one fresh token
        and one more try; a refusal of the sender, application or request raises
        EboxConfigurationError naming the setting (`ANSWERS`)."""
        extra_headers = kwargs.pop("headers", {})
        for fresh_token_tried in (False, True):
            token = self._access_token()
            response = self._send(
                method, url, headers={**extra_headers, "Authorization": f"Bearer {token}"}, **kwargs
            )
            refused = not 200 <= response.status_code < 300 and classify(response).verdict is Verdict.TOKEN
            if not refused:
                break
            path = httpx.URL(url).path
            if fresh_token_tried:
                raise EboxConfigurationError(
                    f"{path} answered {response.status_code} (invalid token) even with a fresh token; check "
                    "the client's registration with the eBox (login / extra 'client_id', extra 'certificate')"
                )
            log.info(
                "eBox %s answered %d (invalid token); renewing the token once", path, response.status_code
            )
            self._invalidate_token(token)
        if not 200 <= response.status_code < 300:
            rule = classify(response)
            # 404 of the searches and the registry is an answer ("not found"); the callers read it.
            if rule.verdict is Verdict.CONFIGURATION and response.status_code != 404:
                raise configuration_error(httpx.URL(url).path, response, rule)
        return response

    # -- Federation: is the eBox active? ---------------------------------------------------------

    def lookup_activation(self, kind: str, ids: Sequence[str]) -> dict[str, Activation]:
        """Activation of every id in `ids` (an id the server does not mention is not active)."""
        if kind not in RECIPIENT_KINDS:
            raise ValueError("kind must be citizen or enterprise")
        unique = list(dict.fromkeys(ids))
        result = {recipient_id: Activation(False) for recipient_id in unique}
        for batch in _chunks(unique, LOOKUP_BATCH_SIZE):
            found = self._search_activation_batch(kind, batch)
            result.update({k: v for k, v in found.items() if k in result})
        log.info(
            "eBox activation lookup: %d %s ids, %d active",
            len(unique),
            kind,
            sum(1 for a in result.values() if a.active),
        )
        return result

    def _search_activation_batch(self, kind: str, batch: Sequence[str]) -> dict[str, Activation]:
        """The one adapter between a recipient kind and its federation search.

        Enterprises use the documented `eboxPreferences/search`. For citizens the body and answer of
        `citizenEboxConsents/search` are unverified; NOTES assumes the same shapes with
        `CITIZEN`/`SSIN`. Should that prove wrong, this function is the only place to change."""
        if kind == "enterprise":
            path, body = (
                "eboxPreferences/search",
                {"eboxType": "ENTERPRISE", "eboxIdType": "EnterpriseNumber"},
            )
        else:
            path, body = "citizenEboxConsents/search", {"eboxType": "CITIZEN", "eboxIdType": "SSIN"}
        url = _join(self.config.federation_url, path)
        try:
            response = self._authorized("POST", url, json={**body, "eboxIdValueList": list(batch)})
        except _Exhausted as exc:
            raise EboxUnavailableError(f"{path} unavailable: {exc.reason}") from None
        if response.status_code == 404 and response.headers.get("content-type", "").startswith(
            "application/json"
        ):
            return {}  # the Swagger's "Ebox not found": nobody in this batch has one
        if response.status_code != 200:
            code, message = _status_message(response)
            raise EboxError(f"{path} answered HTTP {response.status_code} {code}: {message}")
        answer = response.json()
        if not isinstance(answer, list):
            raise EboxError(f"{path} answered something other than a list")
        found: dict[str, Activation] = {}
        for item in answer:
            try:
                recipient_id = item["eboxId"]["eboxIdValue"]
            except (KeyError, TypeError):
                raise EboxError(f"{path} answered an item without eboxId.eboxIdValue") from None
            exclusively = item.get("exclusivelyEbox")
            connected = item.get("lastConnectionDate")
            found[recipient_id] = Activation(
                True,
                exclusively if isinstance(exclusively, bool) else None,
                connected if isinstance(connected, str) and connected else None,
            )
        return found

    # -- Message Registry: publish and follow up -----------------------------------------------

    def publish(self, pub: Publication) -> PublishOutcome:
        """Publish one letter; the outcome says what to do with it next (`ANSWERS`).

        Raises EboxConfigurationError for a refusal that is not this letter's, EboxOutageError when
        the circuit breaker has given up."""
        message = build_message_to_publish(pub, self.config)
        content_type, body = publication_body(message, pub)
        try:
            response = self._authorized(
                "POST",
                self._publish_url,
                headers={"Idempotency-Key": idempotency_key(pub.letter_id), "Content-Type": content_type},
                content=body,
            )
        except _Exhausted as exc:
            log.warning("eBox publish letter %s: retry later (%s)", pub.letter_id, exc.reason)
            return PublishOutcome("retry_later", message=exc.reason)
        outcome = self.publish_outcome(response)
        # A plain success is the common case of a 100,000-letter wave: the chunk's summary line and the
        # letter's `delivered_ebox` event carry it; every other answer is worth its own line.
        log.log(
            logging.DEBUG if outcome.kind == "published" else logging.INFO,
            "eBox publish letter %s: HTTP %d -> %s%s",
            pub.letter_id,
            response.status_code,
            outcome.kind,
            f" {outcome.code}" if outcome.code else "",
        )
        return outcome

    @staticmethod
    def publish_outcome(response: httpx.Response) -> PublishOutcome:
        """What an answer of publishMessage means for its letter (`ANSWERS`, `publication_answer`)."""
        answered = publication_answer(response)
        if answered is not None:
            return answered
        rule = classify(response)
        code, message = _status_message(response)
        if rule.verdict is Verdict.CONFLICT:
            # The key was seen before: the eBox holds the letter (its messageId is not repeated in a
            # 409; the caller settles it).
            return PublishOutcome("already_published", code=code, message=message, status=409)
        if rule.verdict is Verdict.LETTER:
            if response.status_code == 413:
                # No size limit is published; the eBox refused this one: quarantined, not retried.
                code = code or "PAYLOAD_TOO_LARGE"
                message = message or rule.meaning
            return PublishOutcome(
                "rejected",
                code=code or f"HTTP_{response.status_code}",
                message=message,
                status=response.status_code,
            )
        raise configuration_error("publishMessage", response, rule)

    # -- Message Registry: reference data -------------------------------------------------------

    def message_types(self, *, refresh: bool = False) -> dict[str, MessageType]:
        """The eBox's message-type registry (`referenceData/messageTypes`, every page), by id.

        Read once a day per registry, client and application and kept in the process (`refresh`
        reads it again). An unavailable registry raises EboxUnavailableError, any other error answer
        EboxError."""
        cfg = self.config
        cache_key = (cfg.message_registry_url, cfg.client_id, cfg.sender_application_id)
        today = datetime.now(MESSAGE_TYPES_DAY_ZONE).date()
        with _MESSAGE_TYPES_LOCK:
            cached = _MESSAGE_TYPES_CACHE.get(cache_key)
        if cached is not None and cached[0] == today and not refresh:
            return dict(cached[1])
        types = self._read_message_types()
        with _MESSAGE_TYPES_LOCK:
            _MESSAGE_TYPES_CACHE[cache_key] = (today, types)
        log.info("eBox message types read: %d", len(types))
        return dict(types)

    def _read_message_types(self) -> dict[str, MessageType]:
        url = _join(self.config.message_registry_url, "referenceData/messageTypes")
        types: dict[str, MessageType] = {}
        page = 1
        while True:
            try:
                response = self._authorized(
                    "GET", url, params={"page": page, "pageSize": MESSAGE_TYPES_PAGE_SIZE}
                )
            except _Exhausted as exc:
                raise EboxUnavailableError(f"referenceData/messageTypes unavailable: {exc.reason}") from None
            if response.status_code == 404:
                return types  # the Swagger's "messageTypes not found": none registered
            if response.status_code != 200:
                code, message = _status_message(response)
                raise EboxError(
                    f"referenceData/messageTypes answered HTTP {response.status_code} {code}: {message}"
                )
            try:
                body = response.json()
                items, total = body.get("items") or [], body.get("totalItems")
            except (ValueError, AttributeError):
                raise EboxError(
                    "referenceData/messageTypes answered something other than MessageTypes"
                ) from None
            for item in items:
                parsed = _message_type(item)
                types[parsed.message_type_id] = parsed
            if not items or not isinstance(total, int) or len(types) >= total:
                return types
            page += 1

    def search_message_status(self, items: Sequence[tuple[str, str, str]]) -> list[dict]:
        """MessageStatus answers for (message_id, ebox_type, ebox_id) triples; unknown ids are absent."""
        url = _join(self.config.message_registry_url, "searchMessageStatus")
        statuses: list[dict] = []
        for batch in _chunks(list(items), LOOKUP_BATCH_SIZE):
            body = [
                {"messageId": message_id, "eboxId": {"eboxType": ebox_type, "eboxIdValue": ebox_id}}
                for message_id, ebox_type, ebox_id in batch
            ]
            try:
                response = self._authorized("POST", url, json=body)
            except _Exhausted as exc:
                raise EboxUnavailableError(f"searchMessageStatus unavailable: {exc.reason}") from None
            if response.status_code == 404:
                continue  # the Swagger's "Messages not found"
            if response.status_code not in (200, 201):
                code, message = _status_message(response)
                raise EboxError(f"searchMessageStatus answered HTTP {response.status_code} {code}: {message}")
            statuses.extend(response.json())
        log.info("eBox message status: %d asked, %d answered", len(items), len(statuses))
        return statuses
