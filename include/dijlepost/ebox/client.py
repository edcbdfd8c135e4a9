"""Client for the federal eBox REST APIs: who has an active eBox, publish a letter, read status.

Plain Python on httpx (no Airflow import), so the same code runs in Airflow tasks, the CLI, the
demo and the tests. The contract is the eBox integration notes plus the published Message Registry
2.1 and Federation 1.3 Swagger files; the local sandbox (`sandboxes/ebox`) speaks the same contract.

Error policy, so that callers can route a letter without parsing exceptions:
- per-letter answers (published, duplicate, no digital user, rejected, including a 413 for a
  message too large) come back as a `PublishOutcome`;
- transient trouble (429, 5xx, timeouts, connection errors), of the API and of the token endpoint
  alike, is retried with exponential backoff and jitter (tenacity), honouring `Retry-After`; every
  token attempt signs a fresh client assertion. When the attempts run out `publish` answers
  `retry_later`, the lookups raise `EboxUnavailableError`;
- a 401, or the federation's 400 "Invalid access token", gets one fresh token and one more try;
- anything that no retry can fix (403, a token request the server refuses, a second 401, a TLS
  certificate that does not verify, a message type the eBox does not know) raises
  `EboxConfigurationError` so the task fails loudly.

Logs carry letter ids, status codes and counts only: never a recipient id, name or address.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import logging
import random
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jwt
import tenacity
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

log = logging.getLogger("dijlepost.ebox")

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
ASSERTION_LIFETIME_SECONDS = 300
MAX_BACKOFF_SECONDS = 30.0
# A Retry-After longer than this is not slept through inside a task: the letter is handed back as
# retry_later (publish) or the lookup fails (and Airflow retries the task later).
MAX_RETRY_AFTER_SECONDS = 60.0
MESSAGE_TYPES_PAGE_SIZE = 100  # the largest page referenceData/messageTypes gives
# The message-type registry is read once a day (the city's day) per registry, client and application.
MESSAGE_TYPES_DAY_ZONE = ZoneInfo("Europe/Brussels")
# `messageToPublish` is a JSON text part; its charset is declared rather than left to a default.
MESSAGE_PART_CONTENT_TYPE = "application/json; charset=UTF-8"


class EboxError(Exception):
    """Something went wrong talking to the eBox."""


class EboxConfigurationError(EboxError):
    """Bad configuration or credentials: no retry will help, the task must fail loudly.

    `field` names the offending EboxConfig field when the problem is one field's value."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class EboxUnavailableError(EboxError):
    """The eBox kept answering 429/5xx or timing out until the attempts ran out."""


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
        key = self.signing_key()  # fails here rather than at the first token request
        certificate = self.certificate()
        if certificate.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        ) != key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo):
            raise EboxConfigurationError(
                "certificate_pem is not the certificate of private_key_pem", "certificate_pem"
            )
        if self.key_id is not None and (not isinstance(self.key_id, str) or not self.key_id.strip()):
            raise EboxConfigurationError("key_id is empty", "key_id")

    def certificate(self) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(self.certificate_pem.encode())
        except (ValueError, TypeError, AttributeError):
            raise EboxConfigurationError(
                "certificate_pem is not a PEM X.509 certificate", "certificate_pem"
            ) from None

    def certificate_thumbprint(self) -> str:
        """`x5t#S256` (RFC 7515): base64url without padding of the SHA-256 of the certificate's DER."""
        der = self.certificate().public_bytes(Encoding.DER)
        return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode("ascii").rstrip("=")

    def assertion_header(self) -> dict[str, str]:
        """The JOSE header fields of the client assertion that name the registered certificate.

        The eBox documentation registers one certificate per environment but does not say which
        header field it reads: both the thumbprint and a key id are sent."""
        thumbprint = self.certificate_thumbprint()
        return {"kid": self.key_id or thumbprint, "x5t#S256": thumbprint}

    def signing_key(self) -> RSAPrivateKey:
        try:
            key = load_pem_private_key(self.private_key_pem.encode(), password=None)
        except (ValueError, TypeError, AttributeError):
            raise EboxConfigurationError(
                "private_key_pem is not an unencrypted PEM private key", "private_key_pem"
            ) from None
        if not isinstance(key, RSAPrivateKey):
            raise EboxConfigurationError(
                "private_key_pem must be an RSA key (the assertion is signed RS256)", "private_key_pem"
            )
        return key


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
    kind: str  # "published" | "already_published" | "no_digital_user" | "rejected" | "retry_later"
    message_id: str | None = None
    code: str | None = None
    message: str | None = None
    # `expirationDate` of a 201 answer: until when the eBox keeps the message (its type's validity).
    expires_at: str | None = None


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
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


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
    validity = item.get("validityPeriod") if isinstance(item.get("validityPeriod"), dict) else {}
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


def _is_invalid_token_answer(response: httpx.Response) -> bool:
    """The federation's documented 400 "Invalid access token" (the Swagger spells it "acess").

    The one adapter for that answer: its StatusMessage code is not published, so a 400 whose code
    or message speaks of the (access) token counts."""
    if response.status_code != 400:
        return False
    code, message = _status_message(response)
    return bool(re.search(r"ac+ess[ _-]?token|invalid[ _-]?token", f"{code or ''} {message or ''}", re.I))


class _Exhausted(Exception):
    """Transient failures until max_attempts; `reason` says the last one (status or error type)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Transient(Exception):
    """One attempt that is worth another: 429, 5xx, a timeout or a connection error."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


# The message-type registry, per (registry URL, client, application): (the day it was read, types).
_MESSAGE_TYPES_CACHE: dict[tuple[str, str, str], tuple[date, dict[str, MessageType]]] = {}
_MESSAGE_TYPES_LOCK = threading.Lock()


class EboxClient:
    """Thread-safe eBox client; share one per process (it caches the access token)."""

    def __init__(
        self,
        config: EboxConfig,
        http: httpx.Client | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.config = config
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

    idempotency_key = staticmethod(idempotency_key)

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> EboxClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- HTTP plumbing -------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        # "Equal jitter": at least half the exponential step, so retries do spread but never collapse
        # to zero, and concurrent workers do not retry in lockstep.
        step = min(MAX_BACKOFF_SECONDS, self.config.backoff_base_seconds * 2 ** (attempt - 1))
        return step / 2 + self._rng.uniform(0, step / 2)

    def _wait(self, retry_state: tenacity.RetryCallState) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, _Transient) and failure.retry_after is not None:
            return failure.retry_after
        return self._backoff(retry_state.attempt_number)

    def _send(
        self, method: str, url: str, prepare: Callable[[], dict[str, Any]] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request with retries (tenacity) for 429, 5xx, timeouts and connection errors.

        `prepare`, when given, is called for every attempt and its keyword arguments are added to
        the request's (the token request signs a fresh assertion each time). Returns the first other
        answer; raises _Exhausted when the attempts run out."""
        path = httpx.URL(url).path

        def attempt() -> httpx.Response:
            request_kwargs = {**kwargs, **prepare()} if prepare is not None else kwargs
            try:
                with self._slots:
                    response = self._http.request(method, url, **request_kwargs)
            except httpx.TransportError as exc:
                if _is_certificate_failure(exc):
                    raise EboxConfigurationError(
                        f"TLS certificate of {httpx.URL(url).host} does not verify against "
                        f"ca_bundle={self.config.ca_bundle!r}"
                    ) from exc
                raise _Transient(type(exc).__name__) from exc
            if response.status_code != 429 and response.status_code < 500:
                return response
            reason = f"HTTP {response.status_code}"
            retry_after = _retry_after_seconds(response)
            if retry_after is not None and retry_after > MAX_RETRY_AFTER_SECONDS:
                raise _Exhausted(f"{reason} with Retry-After {retry_after:.0f}s")
            raise _Transient(reason, retry_after)

        def log_attempt(retry_state: tenacity.RetryCallState) -> None:
            log.info(
                "eBox %s %s: %s (attempt %d of %d)",
                method,
                path,
                retry_state.outcome.exception().reason,
                retry_state.attempt_number,
                self.config.max_attempts,
            )

        def exhausted(retry_state: tenacity.RetryCallState) -> httpx.Response:
            raise _Exhausted(retry_state.outcome.exception().reason)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            stop=tenacity.stop_after_attempt(self.config.max_attempts),
            wait=self._wait,
            sleep=self._sleep,
            after=log_attempt,
            retry_error_callback=exhausted,
        )
        return retrying(attempt)

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

    def client_assertion(self) -> str:
        """A new private_key_jwt: its own `jti`, `iat` and `exp`, so no attempt repeats another's."""
        cfg = self.config
        now = int(time.time())
        return jwt.encode(
            {
                "iss": cfg.client_id,
                "sub": cfg.client_id,
                "aud": cfg.token_url,
                "jti": str(uuid.uuid4()),
                "iat": now,
                "exp": now + ASSERTION_LIFETIME_SECONDS,
            },
            cfg.signing_key(),
            algorithm="RS256",
            headers=cfg.assertion_header(),
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
                error = response.json().get("error")
            except (ValueError, AttributeError):
                error = None
            raise EboxConfigurationError(
                f"token endpoint refused client {cfg.client_id!r}: HTTP {response.status_code}"
                + (f" {error}" if error else "")
            )
        try:
            body = response.json()
            token = body["access_token"]
            lifetime = float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise EboxError("token endpoint answered 200 without a usable access_token") from None
        log.info("eBox access token obtained (expires in %.0f s)", lifetime)
        return token, lifetime

    def _authorized(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request with a bearer token. A 401, or a 400 "Invalid access token", gets one fresh token
        and one more try; 403 raises."""
        extra_headers = kwargs.pop("headers", {})
        path = httpx.URL(url).path
        for fresh_token_tried in (False, True):
            token = self._access_token()
            response = self._send(
                method, url, headers={**extra_headers, "Authorization": f"Bearer {token}"}, **kwargs
            )
            refused = response.status_code == 401 or _is_invalid_token_answer(response)
            if not refused:
                break
            if fresh_token_tried:
                raise EboxConfigurationError(
                    f"{path} answered {response.status_code} (invalid token) even with a fresh token"
                )
            log.info(
                "eBox %s answered %d (invalid token); renewing the token once", path, response.status_code
            )
            self._invalidate_token(token)
        if response.status_code == 403:
            raise EboxConfigurationError(
                f"{path} answered 403: the client lacks the scope for this call "
                f"(client {self.config.client_id!r})"
            )
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
        """Publish one letter; the outcome says what to do with it next (see the module doc)."""
        message = build_message_to_publish(pub, self.config)
        url = _join(self.config.message_registry_url, "publishMessage")
        # httpx encodes the multipart body once; sent as one buffer it costs one TLS write instead of
        # one per part, and a retry re-sends the same bytes.
        encoded = httpx.Request(
            "POST",
            url,
            files={
                # A plain form field (no filename) whose part declares its media type and charset.
                "messageToPublish": (
                    None,
                    json.dumps(message, ensure_ascii=False).encode("utf-8"),
                    MESSAGE_PART_CONTENT_TYPE,
                ),
                "upfile1": (pub.filename, pub.pdf, "application/pdf"),
            },
        )
        try:
            response = self._authorized(
                "POST",
                url,
                headers={
                    "Idempotency-Key": idempotency_key(pub.letter_id),
                    "Content-Type": encoded.headers["Content-Type"],
                },
                content=encoded.read(),
            )
        except _Exhausted as exc:
            log.warning("eBox publish letter %s: retry later (%s)", pub.letter_id, exc.reason)
            return PublishOutcome("retry_later", message=exc.reason)
        outcome = self._publish_outcome(response)
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
    def _publish_outcome(response: httpx.Response) -> PublishOutcome:
        status = response.status_code
        if status in (200, 201):
            try:
                body = response.json()
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            code, message_id = body.get("code"), body.get("messageId")
            kind = "no_digital_user" if code == "NO_DIGITAL_USER" else "published"
            expires = body.get("expirationDate")
            return PublishOutcome(
                kind,
                message_id=message_id,
                code=code,
                message=body.get("message"),
                expires_at=expires if isinstance(expires, str) and expires else None,
            )
        code, message = _status_message(response)
        if status == 413:
            # No size limit is published; the eBox refused this one: the letter is quarantined with
            # the reason rather than retried.
            return PublishOutcome(
                "rejected",
                code=code or "PAYLOAD_TOO_LARGE",
                message=message or "the message is larger than the eBox accepts",
            )
        if status == 409:
            # The key was seen before: the letter is in the eBox already (its messageId is not
            # repeated in a 409, so the caller keeps the one it recorded, if any).
            return PublishOutcome("already_published", code=code, message=message)
        if status == 404:
            raise EboxConfigurationError(
                f"publishMessage answered 404: check message_registry_url ({response.request.url})"
            )
        return PublishOutcome("rejected", code=code or f"HTTP_{status}", message=message)

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
