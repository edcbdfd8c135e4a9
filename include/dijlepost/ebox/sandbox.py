"""A local eBox for the demo, the tests and the benchmarks.

It speaks the contract paths and shapes of the federal eBox (NOTES.md and the two Swagger files in
/work/shared/contracts/ebox): the OAuth2 token endpoint with `private_key_jwt`, the federation
searches and the Message Registry's publishMessage and searchMessageStatus, each under the same URL
prefix as production, over real TLS. It validates publications at least as strictly as the real
service is documented to, so that a letter that passes here is not rejected there for shape.

Beyond the contract, `/_sandbox/...` lets a test or the demo register recipients, inspect what was
published (with digests and Idempotency-Keys), mark messages read, reset, and inject faults: latency
on every call, 429 with Retry-After, 500, 503, answers that come too late, connections closed
without an answer, and NO_DIGITAL_USER for publications whatever the recipient's registration. See
docs/ebox-sandbox-openapi.yaml.

Programmatic use: `with SandboxServer() as sandbox: client = EboxClient(sandbox.config())`.
As a process: `python -m include.dijlepost.ebox.sandbox --port 8443 --dir var/ebox-sandbox`, which
writes ca.pem, client_key.pem and connection.json (an AIRFLOW_CONN_EBOX_DEFAULT value) into the dir.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import json
import logging
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import jwt
import trustme
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from include.dijlepost.ebox.client import PREFERENCE_SCOPE, PUBLICATION_SCOPE, SCOPES, EboxConfig

log = logging.getLogger("dijlepost.ebox.sandbox")

MESSAGE_REGISTRY_PREFIX = "/REST/ebox/enterprise/messageRegistry/v2"
FEDERATION_PREFIX = "/REST/ebox/enterprise/federation/v1"
TOKEN_PATH = "/REST/oauth/v5/token"
ADMIN_PREFIX = "/_sandbox"

DEFAULT_CLIENT_ID = "dijlepost-sandbox"
DEFAULT_SENDER_ORGANIZATION_ID = "0200000043"  # fictitious, but a valid KBO checksum
DEFAULT_SENDER_APPLICATION_ID = "dijlepost"

MAX_IDS_PER_SEARCH = 1000
MAX_SUBJECT_LENGTH = 255
MAX_FILENAME_LENGTH = 80
MAX_BUSINESS_VALUE_BYTES = 256
MAX_ASSERTION_LIFETIME_SECONDS = 3600
UPLOAD_PARTS = tuple(f"upfile{n}" for n in range(1, 7))
LANGUAGES = ("nl", "fr", "de")
MEDIA_TYPES = frozenset(
    {
        "application/pdf", "application/zip", "text/csv", "text/html", "text/plain", "text/xml",
        "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.presentation", "application/vnd.oasis.opendocument.graphics",
        "application/vnd.ms-excel", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.ms-powerpoint", "application/msword",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    }
)
MESSAGE_TO_PUBLISH_KEYS = frozenset(
    {
        "recipient", "forTheAttentionOf", "originalMessageId", "subject", "messageTypeId",
        "expirationDate", "senderOrganizationId", "senderApplicationId", "registeredMail",
        "attachments", "bodyMainContent", "bodyContent", "businessDataList", "paymentData",
        "replyAuthorized",
    }
)
ATTACHMENT_KEYS = frozenset({"attachmentTitle", "httpPartName", "mainContent", "digest", "attachmentSigned"})
RECIPIENT_ID_PATTERNS = {"citizen": re.compile(r"[0-9]{11}"), "enterprise": re.compile(r"[0-1][0-9]{9}")}
SENDER_ORGANIZATION_PATTERN = re.compile(r"[0-1][0-9]{9}")
# The federation names the kinds and id types in its own vocabulary (see client._search_activation_batch).
FEDERATION_KINDS = {"enterprise": ("ENTERPRISE", "EnterpriseNumber"), "citizen": ("CITIZEN", "SSIN")}


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An answer in the contract's StatusMessage form."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self, path: str = "") -> JSONResponse:
        # The two Swagger files spell the environment enum differently: upper case in the federation's.
        environment = "SIMULATION" if path.startswith(FEDERATION_PREFIX) else "simulation"
        return JSONResponse(
            {"id": str(uuid.uuid4()), "code": self.code, "message": self.message, "environment": environment},
            status_code=self.status,
        )


def _invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_INPUT", message)


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    public_key_pem: str
    organization_id: str
    application_id: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class IssuedToken:
    client: RegisteredClient
    scopes: frozenset[str]
    expires_at: float


@dataclass
class Faults:
    """Fault injection for contract calls (the token endpoint and /_sandbox are spared).

    The `*_next` counters come first, in the order fail, timeout, drop; then one draw decides
    between error, timeout and drop by their rates. A timeout and a drop happen *after* the call was
    processed (a publication is stored): the answer is lost, which is what an Idempotency-Key is for."""

    error_rate: float = 0.0
    error_status: int = 503  # 429, 500 or 503
    retry_after_seconds: int | None = None
    timeout_rate: float = 0.0
    timeout_delay_seconds: float = 35.0
    fail_next: int = 0  # the next N contract calls answer error_status, whatever the rates
    timeout_next: int = 0  # then the next N contract calls answer late
    seed: int | None = None
    latency_ms: int = 0  # added to every contract call before it is handled
    drop_rate: float = 0.0  # share of contract calls whose connection is closed without an answer
    drop_next: int = 0  # then the next N contract calls are dropped that way
    # Publications answered 201 NO_DIGITAL_USER whatever the recipient's registration (new keys only,
    # recipients never answered without it); the recipient then counts as one who never opened the
    # eBox (no lastConnectionDate from then on): the search and the answers tell the same story.
    no_digital_user_rate: float = 0.0
    no_digital_user_next: int = 0


@dataclass(frozen=True)
class Upload:
    filename: str | None
    content_type: str | None
    content: bytes


_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY, public_key_pem TEXT NOT NULL, organization_id TEXT NOT NULL,
    application_id TEXT NOT NULL, scopes TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recipients (
    kind TEXT NOT NULL, recipient_id TEXT NOT NULL, active INTEGER NOT NULL,
    exclusively_ebox INTEGER NOT NULL, no_digital_user INTEGER NOT NULL, last_connection_date TEXT,
    PRIMARY KEY (kind, recipient_id));
CREATE TABLE IF NOT EXISTS publications (
    message_id TEXT PRIMARY KEY, idempotency_key TEXT, sender_organization_id TEXT NOT NULL,
    sender_application_id TEXT NOT NULL, recipient_kind TEXT NOT NULL, recipient_id TEXT NOT NULL,
    language TEXT NOT NULL, subject TEXT NOT NULL, message_type_id TEXT, registered_mail INTEGER NOT NULL,
    attachments TEXT NOT NULL, code TEXT, published_at TEXT NOT NULL, expiration_date TEXT NOT NULL,
    read_status INTEGER NOT NULL DEFAULT 0, visible INTEGER NOT NULL DEFAULT 1);
CREATE INDEX IF NOT EXISTS publications_recipient ON publications (recipient_kind, recipient_id);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    sender_application_id TEXT NOT NULL, idempotency_key TEXT NOT NULL, message_id TEXT NOT NULL,
    PRIMARY KEY (sender_application_id, idempotency_key));
"""


class SandboxState:
    """Everything the sandbox knows, in SQLite: in memory, or in `path` to survive a restart.

    Thread-safe; tests call it directly while the server thread serves requests. Tokens, seen
    assertion ids and faults live in memory only: after a restart clients simply get a 401 and
    fetch a new token, which is what the real service does too."""

    def __init__(self, path: str | Path | None = None, *, token_lifetime_seconds: int = 600,
                 expiration_days: int = 365):
        self.path = Path(path) if path else None
        self.token_lifetime_seconds = token_lifetime_seconds
        self.expiration_days = expiration_days
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False,
                                   isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if path:  # one fsync per checkpoint rather than per publication: benchmarks publish a lot
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._tokens: dict[str, IssuedToken] = {}
        self._seen_assertions: dict[str, float] = {}
        self._faults = Faults()
        self._rng = random.Random()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- clients and tokens ----------------------------------------------------------------------

    def register_client(self, client_id: str, public_key_pem: str, organization_id: str,
                        application_id: str, scopes: tuple[str, ...] | frozenset[str] = SCOPES) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO clients VALUES (?, ?, ?, ?, ?)",
                (client_id, public_key_pem, organization_id, application_id, " ".join(sorted(scopes))),
            )
            # A changed registration must not keep working through tokens issued before it.
            self._tokens = {k: t for k, t in self._tokens.items() if t.client.client_id != client_id}

    def client(self, client_id: str) -> RegisteredClient | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM clients WHERE client_id = ?", (client_id,)).fetchone()
        if row is None:
            return None
        return RegisteredClient(row["client_id"], row["public_key_pem"], row["organization_id"],
                                row["application_id"], frozenset(row["scopes"].split()))

    def first_use_of_assertion(self, jti: str, expires_at: float) -> bool:
        with self._lock:
            now = time.time()
            self._seen_assertions = {k: v for k, v in self._seen_assertions.items() if v > now}
            if jti in self._seen_assertions:
                return False
            self._seen_assertions[jti] = expires_at
            return True

    def issue_token(self, client: RegisteredClient, scopes: frozenset[str]) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = IssuedToken(client, scopes, time.time() + self.token_lifetime_seconds)
        return token

    def token(self, token: str) -> IssuedToken | None:
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None or issued.expires_at <= time.time():
            return None
        return issued

    def revoke_tokens(self) -> None:
        """Forget every issued token, as if they had all expired (tests of the 401 path)."""
        with self._lock:
            self._tokens.clear()

    # -- recipients ------------------------------------------------------------------------------

    def register_recipient(self, kind: str, recipient_id: str, *, active: bool = True,
                           exclusively_ebox: bool = False, no_digital_user: bool = False,
                           last_connection_date: str | None = None) -> None:
        """`active`: has an activated eBox (found by the federation search). `no_digital_user`:
        never opened it, so a publication answers 201 NO_DIGITAL_USER and the search gives no
        `lastConnectionDate`. Anyone else last connected at `last_connection_date` (default: now).
        Unregistered ids count as inactive and never-opened."""
        if kind not in RECIPIENT_ID_PATTERNS:
            raise ValueError("kind must be citizen or enterprise")
        if no_digital_user and last_connection_date:
            raise ValueError("a recipient who never opened the eBox has no last_connection_date")
        if not no_digital_user and not last_connection_date:
            last_connection_date = _timestamp(_now())
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO recipients VALUES (?, ?, ?, ?, ?, ?)",
                (kind, recipient_id, active, exclusively_ebox, no_digital_user, last_connection_date),
            )

    def mark_never_opened(self, kind: str, recipient_id: str) -> None:
        """The recipient turns out never to have opened the eBox (a configured NO_DIGITAL_USER)."""
        with self._lock:
            self._db.execute(
                "UPDATE recipients SET no_digital_user = 1, last_connection_date = NULL "
                "WHERE kind = ? AND recipient_id = ?", (kind, recipient_id))

    def recipients(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM recipients ORDER BY kind, recipient_id").fetchall()
        return [self._recipient_dict(row) for row in rows]

    def recipient(self, kind: str, recipient_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM recipients WHERE kind = ? AND recipient_id = ?", (kind, recipient_id)
            ).fetchone()
        return self._recipient_dict(row) if row else None

    @staticmethod
    def _recipient_dict(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "kind": row["kind"], "id": row["recipient_id"], "active": bool(row["active"]),
            "exclusively_ebox": bool(row["exclusively_ebox"]), "no_digital_user": bool(row["no_digital_user"]),
            "last_connection_date": row["last_connection_date"],
        }

    def active_among(self, kind: str, ids: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        with self._lock:
            for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT * FROM recipients WHERE kind = ? AND active AND recipient_id IN ({marks})",
                    (kind, *chunk),
                ).fetchall()
                found.extend(self._recipient_dict(row) for row in rows)
        return found

    # -- publications ----------------------------------------------------------------------------

    def publish(self, record: dict[str, Any], idempotency_key: str | None) -> str | None:
        """Answer a validated publication as the eBox would: set its `code` (NO_DIGITAL_USER for
        whoever never opened the eBox) and dates, store it, return its messageId, or None for a used
        Idempotency-Key. One lock around it all: concurrent publications to one recipient agree."""
        kind, recipient_id = record["recipient_kind"], record["recipient_id"]
        with self._lock:
            if idempotency_key is not None and self.idempotency_key_used(record["sender_application_id"],
                                                                         idempotency_key):
                return None  # the content is not compared, as in the real service; checked before
                             # any roll, so a duplicate never uses up a configured answer
            known = self.recipient(kind, recipient_id)
            configured = (known is not None and not known["no_digital_user"]
                          and self.roll_no_digital_user(kind, recipient_id))
            never_opened = known is None or known["no_digital_user"] or configured
            published_at = _now()
            record.update(
                code="NO_DIGITAL_USER" if never_opened else None,
                published_at=_timestamp(published_at),
                expiration_date=_timestamp(published_at + timedelta(days=self.expiration_days)),
            )
            message_id = self._store_publication(record, idempotency_key)
            if configured:
                self.mark_never_opened(kind, recipient_id)
            return message_id

    def _store_publication(self, record: dict[str, Any], idempotency_key: str | None) -> str:
        """Store a publication (the caller holds the lock and checked the Idempotency-Key)."""
        message_id = str(uuid.uuid4())
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "INSERT INTO publications (message_id, idempotency_key, sender_organization_id, "
                    "sender_application_id, recipient_kind, recipient_id, language, subject, "
                    "message_type_id, registered_mail, attachments, code, published_at, expiration_date) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        message_id, idempotency_key, record["sender_organization_id"],
                        record["sender_application_id"], record["recipient_kind"], record["recipient_id"],
                        record["language"], record["subject"], record["message_type_id"],
                        record["registered_mail"], json.dumps(record["attachments"]), record["code"],
                        record["published_at"], record["expiration_date"],
                    ),
                )
                if idempotency_key is not None:
                    self._db.execute(
                        "INSERT INTO idempotency_keys VALUES (?, ?, ?)",
                        (record["sender_application_id"], idempotency_key, message_id),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return message_id

    def publications(self, recipient_kind: str | None = None, recipient_id: str | None = None,
                     idempotency_key: str | None = None) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM publications", []
        conditions = []
        if idempotency_key is not None:
            conditions.append("idempotency_key = ?")
            args.append(idempotency_key)
        if recipient_kind is not None:
            conditions.append("recipient_kind = ?")
            args.append(recipient_kind)
        if recipient_id is not None:
            conditions.append("recipient_id = ?")
            args.append(recipient_id)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY rowid", args).fetchall()
        return [self._publication_dict(row) for row in rows]

    def publication(self, message_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM publications WHERE message_id = ?", (message_id,)).fetchone()
        return self._publication_dict(row) if row else None

    @staticmethod
    def _publication_dict(row: sqlite3.Row) -> dict[str, Any]:
        record = dict(row)
        record["attachments"] = json.loads(record["attachments"])
        for flag in ("registered_mail", "read_status", "visible"):
            record[flag] = bool(record[flag])
        return record

    def letter_count(self, kind: str, recipient_id: str) -> int:
        with self._lock:
            return self._db.execute(
                "SELECT count(*) FROM publications WHERE recipient_kind = ? AND recipient_id = ?",
                (kind, recipient_id),
            ).fetchone()[0]

    def mark_read(self, message_id: str, read: bool = True) -> bool:
        with self._lock:
            changed = self._db.execute(
                "UPDATE publications SET read_status = ? WHERE message_id = ?", (read, message_id)
            ).rowcount
        return changed == 1

    def message_statuses(self, sender_application_id: str, wanted: list[tuple[str, str, str]]
                         ) -> list[dict[str, Any]]:
        answers = []
        for message_id, ebox_type, ebox_id in wanted:
            record = self.publication(message_id)
            if (
                record is None
                or record["sender_application_id"] != sender_application_id
                or (record["recipient_kind"], record["recipient_id"]) != (ebox_type, ebox_id)
            ):
                continue  # unknown, or not this sender's to ask about
            answers.append(
                {
                    "messageId": message_id,
                    "eboxId": {"eboxType": ebox_type, "eboxIdValue": ebox_id},
                    "readStatus": record["read_status"],
                    "expirationDate": record["expiration_date"],
                    "visible": record["visible"],
                }
            )
        return answers

    # -- faults and reset ------------------------------------------------------------------------

    def set_faults(self, **settings: Any) -> Faults:
        """Replace the fault settings (unnamed ones go back to their defaults)."""
        faults = Faults(**settings)
        rates = (faults.error_rate, faults.timeout_rate, faults.drop_rate)
        if not (all(0 <= r <= 1 for r in rates) and sum(rates) <= 1):
            raise ValueError("error_rate, timeout_rate and drop_rate must be within 0..1 and add up to at most 1")
        if not 0 <= faults.no_digital_user_rate <= 1:
            raise ValueError("no_digital_user_rate must be within 0..1")
        if faults.error_status not in (429, 500, 503):
            raise ValueError("error_status must be 429, 500 or 503")
        if faults.latency_ms < 0 or faults.drop_next < 0 or faults.no_digital_user_next < 0:
            raise ValueError("latency_ms, drop_next and no_digital_user_next must be >= 0")
        with self._lock:
            self._faults = faults
            self._rng = random.Random(faults.seed)
        return faults

    def faults(self) -> Faults:
        with self._lock:
            return dataclasses.replace(self._faults)

    def roll_fault(self) -> Literal["error", "timeout", "drop"] | None:
        with self._lock:
            faults = self._faults
            if faults.fail_next > 0:
                faults.fail_next -= 1
                return "error"
            if faults.timeout_next > 0:
                faults.timeout_next -= 1
                return "timeout"
            if faults.drop_next > 0:
                faults.drop_next -= 1
                return "drop"
            if not faults.error_rate and not faults.timeout_rate and not faults.drop_rate:
                return None
            draw = self._rng.random()
            if draw < faults.error_rate:
                return "error"
            if draw < faults.error_rate + faults.timeout_rate:
                return "timeout"
            if draw < faults.error_rate + faults.timeout_rate + faults.drop_rate:
                return "drop"
            return None

    def roll_no_digital_user(self, kind: str, recipient_id: str) -> bool:
        """Whether the next new publication is answered NO_DIGITAL_USER by configuration.

        Never for a recipient already answered without it: that answer said they use the eBox, and
        nobody un-opens it."""
        with self._lock:
            faults = self._faults
            if not faults.no_digital_user_next and not faults.no_digital_user_rate:
                return False
            if self._db.execute("SELECT 1 FROM publications WHERE recipient_kind = ? AND recipient_id = ? "
                                "AND code IS NULL LIMIT 1", (kind, recipient_id)).fetchone():
                return False
            if faults.no_digital_user_next > 0:
                faults.no_digital_user_next -= 1
                return True
            return bool(faults.no_digital_user_rate) and self._rng.random() < faults.no_digital_user_rate

    def idempotency_key_used(self, sender_application_id: str, idempotency_key: str) -> bool:
        with self._lock:
            return self._db.execute(
                "SELECT 1 FROM idempotency_keys WHERE sender_application_id = ? AND idempotency_key = ?",
                (sender_application_id, idempotency_key),
            ).fetchone() is not None

    def reset(self) -> None:
        """Forget recipients, publications, idempotency keys, tokens and faults; keep the clients."""
        with self._lock:
            self._db.executescript(
                "DELETE FROM recipients; DELETE FROM publications; DELETE FROM idempotency_keys;"
            )
            self._tokens.clear()
            self._seen_assertions.clear()
            self._faults = Faults()
            self._rng = random.Random()


# -- validation of a publication --------------------------------------------------------------


def _find_null(value: Any, path: str) -> str | None:
    if value is None:
        return path
    if isinstance(value, dict):
        items = ((f"{path}.{k}", v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for sub_path, sub_value in items:
        found = _find_null(sub_value, sub_path)
        if found:
            return found
    return None


def _expect(value: Any, kind: type, path: str, what: str) -> Any:
    if not isinstance(value, kind):
        raise _invalid(f"{path} must be {what}")
    return value


def _translated(value: Any, path: str, max_length: int | None = None) -> tuple[str, str]:
    """The one (language, text) of a TranslatedString: exactly one language per message."""
    _expect(value, dict, path, "an object with one of nl, fr, de")
    unknown = set(value) - set(LANGUAGES)
    if unknown:
        raise _invalid(f"{path} has unsupported language(s) {sorted(unknown)}")
    if len(value) != 1:
        raise _invalid(f"{path} must have exactly one language (has {len(value)})")
    (language, text), = value.items()
    _expect(text, str, f"{path}.{language}", "a string")
    if not text.strip():
        raise _invalid(f"{path}.{language} is empty")
    if max_length is not None and len(text) > max_length:
        raise _invalid(f"{path}.{language} is {len(text)} characters long (at most {max_length})")
    return language, text


def _digest_value(content: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(content).digest()).decode("ascii").rstrip("=")


def validate_publication(message_json: str, uploads: dict[str, Upload], client: RegisteredClient
                         ) -> dict[str, Any]:
    """Check a publishMessage request the way the contract describes; return what to store.

    Raises ApiError: 400 INVALID_INPUT (shape), INVALID_SENDER, DIGEST_DO_NOT_MATCH, NOT_IMPLEMENTED."""
    try:
        message = json.loads(message_json)
    except ValueError as exc:
        raise _invalid(f"messageToPublish is not valid JSON ({exc})") from None
    _expect(message, dict, "messageToPublish", "a JSON object")
    null_at = _find_null(message, "$")
    if null_at:
        raise _invalid(f"{null_at} is null: leave the field out instead")
    unknown = set(message) - MESSAGE_TO_PUBLISH_KEYS
    if unknown:
        raise _invalid(f"unknown MessageToPublish properties {sorted(unknown)}")
    for required in ("recipient", "subject", "bodyMainContent", "replyAuthorized"):
        if required not in message:
            raise _invalid(f"$.{required} is required")
    if "paymentData" in message:
        raise ApiError(400, "NOT_IMPLEMENTED", "paymentData is not supported")

    recipient = _expect(message["recipient"], dict, "$.recipient", "an EboxId object")
    if set(recipient) != {"eboxType", "eboxIdValue"}:
        raise _invalid("$.recipient must have exactly eboxType and eboxIdValue")
    kind = recipient["eboxType"]
    if kind not in RECIPIENT_ID_PATTERNS:
        raise _invalid("$.recipient.eboxType must be citizen or enterprise")
    recipient_id = _expect(recipient["eboxIdValue"], str, "$.recipient.eboxIdValue", "a string")
    if not RECIPIENT_ID_PATTERNS[kind].fullmatch(recipient_id):
        expected = "an 11-digit SSIN" if kind == "citizen" else "a 10-digit KBO number"
        raise _invalid(f"$.recipient.eboxIdValue must be {expected}")

    language, subject = _translated(message["subject"], "$.subject", MAX_SUBJECT_LENGTH)
    body_main = _expect(message["bodyMainContent"], bool, "$.bodyMainContent", "true or false")
    _expect(message["replyAuthorized"], bool, "$.replyAuthorized", "true or false")
    registered = _expect(message.get("registeredMail", False), bool, "$.registeredMail", "true or false")
    for key in ("messageTypeId", "senderApplicationId", "originalMessageId", "expirationDate"):
        if key in message and not (isinstance(message[key], str) and message[key].strip()):
            raise _invalid(f"$.{key} must be a non-empty string")
    if "forTheAttentionOf" in message:
        attention = _expect(message["forTheAttentionOf"], dict, "$.forTheAttentionOf", "an object")
        for key, value in attention.items():
            _expect(value, str, f"$.forTheAttentionOf.{key}", "a string")

    organization = message.get("senderOrganizationId", client.organization_id)
    _expect(organization, str, "$.senderOrganizationId", "a string")
    if not SENDER_ORGANIZATION_PATTERN.fullmatch(organization):
        raise _invalid("$.senderOrganizationId must match [0-1][0-9]{9}")
    if organization != client.organization_id:
        raise ApiError(400, "INVALID_SENDER", "senderOrganizationId is not the organisation of this client")
    application = message.get("senderApplicationId", client.application_id)
    if application != client.application_id:
        raise ApiError(400, "INVALID_SENDER", "senderApplicationId is not the application of this client")

    if "bodyContent" in message:
        body_language, _ = _translated(message["bodyContent"], "$.bodyContent")
        if body_language != language:
            raise _invalid("$.bodyContent must be in the language of $.subject")
    elif body_main:
        raise _invalid("$.bodyMainContent is true but there is no $.bodyContent")

    for i, data in enumerate(_expect(message.get("businessDataList", []), list, "$.businessDataList",
                                     "an array")):
        path = f"$.businessDataList[{i}]"
        _expect(data, dict, path, "an object")
        _expect(data.get("key"), str, f"{path}.key", "a string")
        for j, value in enumerate(_expect(data.get("values"), list, f"{path}.values", "an array")):
            _, text = _translated(value, f"{path}.values[{j}]")
            if len(text.encode()) > MAX_BUSINESS_VALUE_BYTES:
                raise _invalid(f"{path}.values[{j}] is longer than {MAX_BUSINESS_VALUE_BYTES} bytes")

    attachments = _expect(message.get("attachments", []), list, "$.attachments", "an array")
    if len(attachments) > len(UPLOAD_PARTS):
        raise _invalid(f"at most {len(UPLOAD_PARTS)} attachments")
    stored_attachments, referenced = [], set()
    main_contents = int(body_main)
    for i, attachment in enumerate(attachments):
        path = f"$.attachments[{i}]"
        _expect(attachment, dict, path, "an AttachmentToPublish object")
        unknown = set(attachment) - ATTACHMENT_KEYS
        if unknown:
            raise _invalid(f"{path} has unknown properties {sorted(unknown)}")
        part = _expect(attachment.get("httpPartName"), str, f"{path}.httpPartName", "a string")
        main = _expect(attachment.get("mainContent"), bool, f"{path}.mainContent", "true or false")
        _expect(attachment.get("attachmentSigned", False), bool, f"{path}.attachmentSigned", "true or false")
        if part in referenced:
            raise _invalid(f"{path}.httpPartName {part!r} is used twice")
        if part not in uploads:
            raise _invalid(f"{path}.httpPartName {part!r} names no uploaded part")
        referenced.add(part)
        upload = uploads[part]
        if "attachmentTitle" in attachment:
            title_language, _ = _translated(attachment["attachmentTitle"], f"{path}.attachmentTitle")
            if title_language != language:
                raise _invalid(f"{path}.attachmentTitle must be in the language of $.subject")
        digest = _digest_value(upload.content)
        if "digest" in attachment:
            given = _expect(attachment["digest"], dict, f"{path}.digest", "a Digest object")
            if given.get("digestMethod") != "sha_256":
                raise _invalid(f"{path}.digest.digestMethod must be sha_256")
            value = _expect(given.get("digestValue"), str, f"{path}.digest.digestValue", "a string")
            # Compared without padding, so that padded and unpadded base64url are both accepted.
            if value.rstrip("=") != digest:
                raise ApiError(400, "DIGEST_DO_NOT_MATCH", f"{path}.digest does not match part {part}")
        main_contents += main
        stored_attachments.append(
            {"httpPartName": part, "fileName": upload.filename, "mediaType": upload.content_type,
             "size": len(upload.content), "sha256": digest, "mainContent": main}
        )
    unreferenced = set(uploads) - referenced
    if unreferenced:
        raise _invalid(f"uploaded part(s) {sorted(unreferenced)} are not listed in $.attachments")
    if main_contents != 1:
        raise _invalid(f"a message needs exactly one main content (body or attachment), has {main_contents}")

    return {
        "sender_organization_id": organization, "sender_application_id": application,
        "recipient_kind": kind, "recipient_id": recipient_id, "language": language, "subject": subject,
        "message_type_id": message.get("messageTypeId"), "registered_mail": registered,
        "attachments": stored_attachments,
    }


async def _read_uploads(request: Request) -> tuple[str, dict[str, Upload]]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _invalid("publishMessage takes multipart/form-data")
    try:
        form = await request.form(max_files=len(UPLOAD_PARTS) + 1, max_fields=len(UPLOAD_PARTS) + 1)
    except Exception as exc:  # starlette's MultiPartException and parser errors alike
        raise _invalid(f"unreadable multipart body ({exc})") from None
    message_json: str | None = None
    uploads: dict[str, Upload] = {}
    names = [name for name, _ in form.multi_items()]
    for name in set(names):
        if names.count(name) > 1:
            raise _invalid(f"part {name!r} appears more than once")
    for name, value in form.multi_items():
        if name == "messageToPublish":
            message_json = value if isinstance(value, str) else (await value.read()).decode("utf-8", "replace")
            continue
        if name not in UPLOAD_PARTS:
            raise _invalid(f"unexpected part {name!r} (expected messageToPublish and upfile1..upfile6)")
        if not isinstance(value, UploadFile) or not value.filename:
            raise _invalid(f"part {name!r} has no filename")
        if len(value.filename) > MAX_FILENAME_LENGTH:
            raise _invalid(f"part {name!r}: filename is {len(value.filename)} characters (at most "
                           f"{MAX_FILENAME_LENGTH})")
        content_type = (value.content_type or "").split(";")[0].strip()
        if content_type not in MEDIA_TYPES:
            raise _invalid(f"part {name!r}: Content-Type {content_type!r} is not an accepted media type")
        content = await value.read()
        if not content:
            raise _invalid(f"part {name!r} is empty")
        uploads[name] = Upload(value.filename, content_type, content)
    if message_json is None:
        raise _invalid("part 'messageToPublish' is required")
    return message_json, uploads


# -- the application --------------------------------------------------------------------------


class RecipientIn(BaseModel):
    kind: Literal["citizen", "enterprise"]
    id: str
    active: bool = True
    exclusively_ebox: bool = False
    no_digital_user: bool = False
    last_connection_date: str | None = None


class FaultsIn(BaseModel):
    error_rate: float = Field(0.0, ge=0, le=1)
    error_status: Literal[429, 500, 503] = 503
    retry_after_seconds: int | None = Field(None, ge=0)
    timeout_rate: float = Field(0.0, ge=0, le=1)
    timeout_delay_seconds: float = Field(35.0, ge=0)
    fail_next: int = Field(0, ge=0)
    timeout_next: int = Field(0, ge=0)
    seed: int | None = None
    latency_ms: int = Field(0, ge=0, le=600_000)
    drop_rate: float = Field(0.0, ge=0, le=1)
    drop_next: int = Field(0, ge=0)
    no_digital_user_rate: float = Field(0.0, ge=0, le=1)
    no_digital_user_next: int = Field(0, ge=0)


class _Faults:
    """Outermost ASGI layer: the faults injected into the eBox API calls (`PUT /_sandbox/faults`):
    latency, error answers, answers that come too late, and dropped connections. The token endpoint
    and the sandbox's own admin routes never fail.

    A dropped call is processed; its answer is swallowed and the connection aborted (TCP reset, no TLS
    close_notify, no HTTP answer). Reaching the connection needs the server's own `send` (uvicorn's
    request-response cycle holds the transport); when it cannot be found the call fails instead of
    silently answering. Plain ASGI rather than a Starlette `BaseHTTPMiddleware`, which costs a task
    group and a memory stream per call: in the scale benchmark the sandbox shares the cores with
    the pipeline it serves."""

    def __init__(self, app, state: SandboxState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or path == TOKEN_PATH or not path.startswith("/REST/"):
            return await self.app(scope, receive, send)
        faults = self.state.faults()
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        fault = self.state.roll_fault()
        if fault == "error":
            response = ApiError(faults.error_status, "INJECTED_FAULT", "injected fault").response(path)
            if faults.retry_after_seconds is not None:
                response.headers["Retry-After"] = str(faults.retry_after_seconds)
            return await response(scope, receive, send)
        if fault == "drop":
            async def swallow(message):
                pass

            await self.app(scope, receive, swallow)
            cycle = getattr(send, "__self__", None)
            transport = getattr(cycle, "transport", None)
            if transport is None:
                raise RuntimeError("cannot reach the connection to drop it")
            cycle.disconnected = True  # uvicorn: do not answer 500 for a response never started
            transport.abort()
            return
        if fault == "timeout":
            # The work is done but the answer comes too late: the case an Idempotency-Key is for.
            held: list[dict] = []

            async def hold(message):
                held.append(message)

            await self.app(scope, receive, hold)
            await asyncio.sleep(faults.timeout_delay_seconds)
            for message in held:
                await send(message)
            return
        await self.app(scope, receive, send)


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def create_app(state: SandboxState) -> FastAPI:
    """The sandbox's routes over `state`; `SandboxServer` serves them behind `_Faults`."""
    app = FastAPI(title="dijlepost eBox sandbox", docs_url=f"{ADMIN_PREFIX}/docs",
                  openapi_url=f"{ADMIN_PREFIX}/openapi.json", redoc_url=None,
                  swagger_ui_oauth2_redirect_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response(request.url.path)

    def authorize(request: Request, scope: str) -> IssuedToken:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise ApiError(401, "UNAUTHORIZED", "a bearer token is required")
        issued = state.token(header.removeprefix("Bearer ").strip())
        if issued is None:
            raise ApiError(401, "UNAUTHORIZED", "the bearer token is unknown or expired")
        if scope not in issued.scopes:
            raise ApiError(403, "FORBIDDEN", f"the token lacks scope {scope}")
        return issued

    async def json_body(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise _invalid("the body is not valid JSON") from None

    @app.post(TOKEN_PATH, tags=["contract"])
    async def token(request: Request) -> JSONResponse:
        form = await request.form()
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return _oauth_error(400, "invalid_request", "client_assertion_type must be jwt-bearer")
        assertion = form.get("client_assertion")
        if not isinstance(assertion, str):
            return _oauth_error(400, "invalid_request", "client_assertion is required")
        try:
            issuer = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
        except jwt.InvalidTokenError:
            return _oauth_error(401, "invalid_client", "client_assertion is not a JWT")
        client = state.client(issuer) if isinstance(issuer, str) else None
        if client is None or form.get("client_id", issuer) != issuer:
            return _oauth_error(401, "invalid_client", "unknown client")
        audience = str(request.url.replace(query=""))
        try:
            claims = jwt.decode(
                assertion, client.public_key_pem, algorithms=["RS256"], audience=audience, issuer=issuer,
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]}, leeway=5,
            )
        except jwt.InvalidTokenError as exc:
            return _oauth_error(401, "invalid_client", f"client_assertion rejected: {exc}")
        if claims["sub"] != issuer:
            return _oauth_error(401, "invalid_client", "client_assertion sub must equal iss")
        if claims["exp"] - time.time() > MAX_ASSERTION_LIFETIME_SECONDS:
            return _oauth_error(401, "invalid_client", "client_assertion lives too long")
        if not state.first_use_of_assertion(str(claims["jti"]), float(claims["exp"])):
            return _oauth_error(401, "invalid_client", "client_assertion was used before (jti)")
        # As RFC 6749 allows, grant what was both asked for and registered; the answer's `scope`
        # says which, and a call outside it answers 403.
        requested = frozenset(str(form.get("scope") or "").split()) or client.scopes
        granted = requested & client.scopes
        if not granted:
            return _oauth_error(400, "invalid_scope", "none of the requested scopes is granted to this client")
        return JSONResponse({
            "access_token": state.issue_token(client, granted), "token_type": "Bearer",
            "expires_in": state.token_lifetime_seconds, "scope": " ".join(sorted(granted)),
        })

    async def federation_search(request: Request, kind: str) -> list[dict[str, Any]]:
        authorize(request, PREFERENCE_SCOPE)
        ebox_type, id_type = FEDERATION_KINDS[kind]
        body = _expect(await json_body(request), dict, "body", "an EboxIdSameTypeList object")
        if body.get("eboxType") != ebox_type or body.get("eboxIdType") != id_type:
            raise _invalid(f"eboxType must be {ebox_type} and eboxIdType {id_type}")
        ids = _expect(body.get("eboxIdValueList"), list, "eboxIdValueList", "an array")
        if len(ids) > MAX_IDS_PER_SEARCH:
            raise _invalid(f"at most {MAX_IDS_PER_SEARCH} ids per search (got {len(ids)})")
        if not all(isinstance(i, str) for i in ids):
            raise _invalid("eboxIdValueList must hold strings")
        answer = []
        for found in state.active_among(kind, ids):
            item = {"eboxId": {"eboxType": ebox_type, "eboxIdValue": found["id"]},
                    "exclusivelyEbox": found["exclusively_ebox"]}
            if found["last_connection_date"]:
                item["lastConnectionDate"] = found["last_connection_date"]
            answer.append(item)
        return answer

    @app.post(f"{FEDERATION_PREFIX}/eboxPreferences/search", tags=["contract"])
    async def ebox_preferences_search(request: Request) -> list[dict[str, Any]]:
        return await federation_search(request, "enterprise")

    @app.post(f"{FEDERATION_PREFIX}/citizenEboxConsents/search", tags=["contract"])
    async def citizen_consents_search(request: Request) -> list[dict[str, Any]]:
        return await federation_search(request, "citizen")

    @app.post(f"{MESSAGE_REGISTRY_PREFIX}/publishMessage", status_code=201, tags=["contract"])
    async def publish_message(request: Request) -> JSONResponse:
        issued = authorize(request, PUBLICATION_SCOPE)
        key = request.headers.get("idempotency-key")
        if key is not None:
            try:
                key = str(uuid.UUID(key.strip().strip('"')))
            except ValueError:
                raise _invalid("the Idempotency-Key header must be a UUID") from None
        message_json, uploads = await _read_uploads(request)
        record = validate_publication(message_json, uploads, issued.client)
        message_id = state.publish(record, key)
        if message_id is None:
            raise ApiError(409, "CONFLICT", "this Idempotency-Key was used before by this sender application")
        answer = {"messageId": message_id, "expirationDate": record["expiration_date"]}
        if record["code"] == "NO_DIGITAL_USER":
            answer.update(code="NO_DIGITAL_USER", message="the recipient never consulted their eBox")
        return JSONResponse(answer, status_code=201)

    @app.post(f"{MESSAGE_REGISTRY_PREFIX}/searchMessageStatus", status_code=201, tags=["contract"])
    async def search_message_status(request: Request) -> JSONResponse:
        issued = authorize(request, PUBLICATION_SCOPE)
        body = _expect(await json_body(request), list, "body", "an array of {messageId, eboxId}")
        if len(body) > MAX_IDS_PER_SEARCH:
            raise _invalid(f"at most {MAX_IDS_PER_SEARCH} messages per search")
        wanted = []
        for i, item in enumerate(body):
            try:
                wanted.append((str(item["messageId"]), str(item["eboxId"]["eboxType"]),
                               str(item["eboxId"]["eboxIdValue"])))
            except (KeyError, TypeError):
                raise _invalid(f"[{i}] must be {{messageId, eboxId{{eboxType, eboxIdValue}}}}") from None
        return JSONResponse(state.message_statuses(issued.client.application_id, wanted), status_code=201)

    # -- /_sandbox: administration, not part of the contract ----------------------------------

    @app.get(f"{ADMIN_PREFIX}/health", tags=["sandbox"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(f"{ADMIN_PREFIX}/recipients", tags=["sandbox"])
    async def register_recipients(recipients: list[RecipientIn]) -> dict[str, int]:
        for recipient in recipients:
            try:
                state.register_recipient(
                    recipient.kind, recipient.id, active=recipient.active,
                    exclusively_ebox=recipient.exclusively_ebox, no_digital_user=recipient.no_digital_user,
                    last_connection_date=recipient.last_connection_date,
                )
            except ValueError as exc:
                raise _invalid(f"recipient {recipient.kind}: {exc}") from None
        return {"registered": len(recipients)}

    @app.get(f"{ADMIN_PREFIX}/recipients", tags=["sandbox"])
    async def list_recipients() -> list[dict[str, Any]]:
        return state.recipients()

    @app.get(f"{ADMIN_PREFIX}/publications", tags=["sandbox"])
    async def list_publications(recipient_kind: str | None = None, recipient_id: str | None = None,
                                idempotency_key: str | None = None) -> list[dict[str, Any]]:
        return state.publications(recipient_kind, recipient_id, idempotency_key)

    @app.get(f"{ADMIN_PREFIX}/publications/{{message_id}}", tags=["sandbox"])
    async def get_publication(message_id: str) -> dict[str, Any]:
        record = state.publication(message_id)
        if record is None:
            raise ApiError(404, "NOT_FOUND", "no such messageId")
        return record

    @app.post(f"{ADMIN_PREFIX}/publications/{{message_id}}/read", tags=["sandbox"])
    async def mark_read(message_id: str) -> Response:
        if not state.mark_read(message_id):
            raise ApiError(404, "NOT_FOUND", "no such messageId")
        return Response(status_code=204)

    @app.put(f"{ADMIN_PREFIX}/faults", tags=["sandbox"])
    async def set_faults(faults: FaultsIn) -> dict[str, Any]:
        try:
            return dataclasses.asdict(state.set_faults(**faults.model_dump()))
        except ValueError as exc:
            raise _invalid(str(exc)) from None

    @app.get(f"{ADMIN_PREFIX}/faults", tags=["sandbox"])
    async def get_faults() -> dict[str, Any]:
        return dataclasses.asdict(state.faults())

    @app.post(f"{ADMIN_PREFIX}/reset", tags=["sandbox"])
    async def reset() -> Response:
        state.reset()
        return Response(status_code=204)

    return app


# -- running it -------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


class SandboxServer:
    """The sandbox on 127.0.0.1 over real TLS, in a background thread.

    `directory` keeps the CA, the server certificate, the client key and connection.json; reusing
    a directory reuses its CA and client key, so trust and credentials survive a restart. Without
    one, a temporary directory is used and removed on stop(). `state_path` (a SQLite file) makes
    publications and Idempotency-Keys survive a restart too."""

    def __init__(self, directory: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 public_host: str | None = None, state_path: str | Path | None = None,
                 token_lifetime_seconds: int = 600):
        self._temporary = directory is None
        self.directory = (Path(tempfile.mkdtemp(prefix="ebox-sandbox-")) if directory is None
                          else Path(directory).absolute())
        self.directory.mkdir(parents=True, exist_ok=True)
        self.host, self._port = host, port
        self.public_host = public_host or ("127.0.0.1" if host in ("0.0.0.0", "") else host)
        self.state = SandboxState(state_path, token_lifetime_seconds=token_lifetime_seconds)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def client_key_path(self) -> Path:
        return self.directory / "client_key.pem"

    @property
    def connection_path(self) -> Path:
        return self.directory / "connection.json"

    @property
    def client_private_key_pem(self) -> str:
        return self.client_key_path.read_text()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not running")
        host = f"[{self.public_host}]" if ":" in self.public_host else self.public_host
        return f"https://{host}:{self._port}"

    def _prepare_credentials(self) -> tuple[Path, Path]:
        ca_key_path = self.directory / "ca_key.pem"
        if self.ca_path.exists() and ca_key_path.exists():
            ca = trustme.CA.from_pem(self.ca_path.read_bytes(), ca_key_path.read_bytes())
        else:
            ca = trustme.CA(organization_name="dijlepost eBox sandbox")
            self.ca_path.write_bytes(ca.cert_pem.bytes())
            _write_private(ca_key_path, ca.private_key_pem.bytes())
        identities = dict.fromkeys(["localhost", "127.0.0.1", "::1", self.public_host])
        leaf = ca.issue_cert(*identities)
        cert_path, key_path = self.directory / "server.pem", self.directory / "server_key.pem"
        cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        _write_private(key_path, leaf.private_key_pem.bytes())

        if not self.client_key_path.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write_private(self.client_key_path, key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        private_key = serialization.load_pem_private_key(self.client_key_path.read_bytes(), password=None)
        public_pem = private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        self.state.register_client(DEFAULT_CLIENT_ID, public_pem, DEFAULT_SENDER_ORGANIZATION_ID,
                                   DEFAULT_SENDER_APPLICATION_ID)
        return cert_path, key_path

    def start(self) -> "SandboxServer":
        if self._server is not None:
            return self
        cert_path, key_path = self._prepare_credentials()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # Bound here rather than by uvicorn, so that port 0 gives a free port we know before serving.
        sock = self._socket = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        sock.listen(128)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            _Faults(create_app(self.state), self.state), ssl_certfile=str(cert_path), ssl_keyfile=str(key_path),
            log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="ebox-sandbox", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                self._server = None
                sock.close()
                raise RuntimeError("the eBox sandbox did not start")
            time.sleep(0.01)
        self.connection_path.touch(mode=0o600, exist_ok=True)
        self.connection_path.write_text(json.dumps(self.airflow_connection(), indent=2) + "\n")
        log.info("eBox sandbox listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._server = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        self.state.close()
        if self._temporary:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def message_registry_url(self) -> str:
        return f"{self.base_url}{MESSAGE_REGISTRY_PREFIX}/"

    @property
    def federation_url(self) -> str:
        return f"{self.base_url}{FEDERATION_PREFIX}/"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}{TOKEN_PATH}"

    def config(self, **overrides: Any) -> EboxConfig:
        """An EboxConfig for this sandbox; keyword arguments replace fields."""
        fields: dict[str, Any] = {
            "message_registry_url": self.message_registry_url,
            "federation_url": self.federation_url,
            "token_url": self.token_url,
            "client_id": DEFAULT_CLIENT_ID,
            "private_key_pem": self.client_private_key_pem,
            "sender_organization_id": DEFAULT_SENDER_ORGANIZATION_ID,
            "sender_application_id": DEFAULT_SENDER_APPLICATION_ID,
            "ca_bundle": str(self.ca_path),
        }
        fields.update(overrides)
        return EboxConfig(**fields)

    def airflow_connection(self) -> dict[str, Any]:
        """The JSON form of an Airflow Connection (e.g. AIRFLOW_CONN_EBOX_DEFAULT) for this sandbox."""
        return {
            "conn_type": "ebox",
            "host": self.message_registry_url,
            "login": DEFAULT_CLIENT_ID,
            "password": self.client_private_key_pem,
            "extra": {
                "federation_url": self.federation_url,
                "token_url": self.token_url,
                "sender_organization_id": DEFAULT_SENDER_ORGANIZATION_ID,
                "sender_application_id": DEFAULT_SENDER_APPLICATION_ID,
                "ca_bundle": str(self.ca_path),
            },
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; /_sandbox needs no token, so "
                             "keep it off shared networks)")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--dir", default="var/ebox-sandbox", type=Path,
                        help="where ca.pem, client_key.pem, connection.json and state.sqlite live")
    parser.add_argument("--public-host", help="host name clients use (added to the certificate)")
    parser.add_argument("--state", type=Path, help="SQLite state file (default DIR/state.sqlite)")
    parser.add_argument("--token-lifetime", type=int, default=600, help="access token lifetime, seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = SandboxServer(args.dir, host=args.host, port=args.port, public_host=args.public_host,
                           state_path=args.state or args.dir / "state.sqlite",
                           token_lifetime_seconds=args.token_lifetime)
    with server:
        print(f"eBox sandbox at {server.base_url}; CA {server.ca_path}; "
              f"Airflow connection in {server.connection_path}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
