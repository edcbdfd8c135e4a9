"""What the sandbox knows: registered clients and their tokens, recipients, publications with their
Idempotency-Keys, and the message-type registry (`referenceData/messageTypes`).

In SQLite: in memory, or in a file so that a restarted sandbox keeps its publications and keys.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dateutil.relativedelta import relativedelta

from include.dijlepost.ebox.client import SCOPES
from sandboxes.ebox.faults import Fault, FaultInjector, Faults
from sandboxes.ebox.validation import RECIPIENT_ID_PATTERNS, RegisteredClient

DEFAULT_CLIENT_ID = "dijlepost-sandbox"
DEFAULT_SENDER_ORGANIZATION_ID = "0200000043"  # fictitious, but a valid KBO checksum
DEFAULT_SENDER_APPLICATION_ID = "dijlepost"
# No size limit is published; the sandbox refuses larger messages (413) so that the path is exercised.
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
VALIDITY_UNITS = ("day", "month", "year")


def _now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class IssuedToken:
    client: RegisteredClient
    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class MessageType:
    """One entry of the message-type registry (the Swagger's MessageType).

    The validity period decides a publication's `expirationDate`. Empty sender lists mean any
    sender may publish the type."""

    message_type_id: str
    name: dict[str, str]
    validity_number: int
    validity_unit: str  # "day" | "month" | "year"
    sender_organization_ids: tuple[str, ...] = ()
    sender_application_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.message_type_id, str) or not self.message_type_id.strip():
            raise ValueError("messageTypeId must be a non-empty string")
        if self.validity_unit not in VALIDITY_UNITS:
            raise ValueError("validityPeriodUnit must be day, month or year")
        if not isinstance(self.validity_number, int) or self.validity_number < 1:
            raise ValueError("validityPeriodNumber must be a whole number >= 1")
        if not self.name or set(self.name) - {"nl", "fr", "de"}:
            raise ValueError("messageTypeName must have one or more of nl, fr, de")

    def allows(self, organization_id: str, application_id: str) -> bool:
        return (not self.sender_organization_ids or organization_id in self.sender_organization_ids) and (
            not self.sender_application_ids or application_id in self.sender_application_ids
        )

    def expiry(self, published_at: datetime) -> datetime:
        return published_at + relativedelta(**{f"{self.validity_unit}s": self.validity_number})

    def as_json(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "messageTypeId": self.message_type_id,
            "messageTypeName": dict(self.name),
            "validityPeriod": {
                "validityPeriodNumber": self.validity_number,
                "validityPeriodUnit": self.validity_unit,
            },
        }
        if self.sender_organization_ids:
            answer["senderOrganizationIds"] = list(self.sender_organization_ids)
        if self.sender_application_ids:
            answer["senderApplicationIds"] = list(self.sender_application_ids)
        return answer


def _default_type(type_id: str, nl: str, fr: str, de: str, number: int, unit: str) -> MessageType:
    return MessageType(
        type_id,
        {"nl": nl, "fr": fr, "de": de},
        number,
        unit,
        (DEFAULT_SENDER_ORGANIZATION_ID,),
        (DEFAULT_SENDER_APPLICATION_ID,),
    )


# The types registered for the sandbox's own sender at start and after a reset: the ones the city's
# waves publish (include/dijlepost/waves.py), as they would be registered with the eBox.
DEFAULT_MESSAGE_TYPES = (
    _default_type("MECH-FIN-INVOICE", "Factuur", "Facture", "Rechnung", 1, "year"),
    _default_type("MECH-FIN-REMINDER", "Herinnering", "Rappel", "Mahnung", 1, "year"),
    _default_type(
        "MECH-FIN-TAX", "Aanslagbiljet", "Avertissement-extrait de rôle", "Steuerbescheid", 5, "year"
    ),
    _default_type("MECH-GAS-FINDING", "GAS-vaststelling", "Constat SAC", "GAS-Feststellung", 2, "year"),
    _default_type("MECH-GAS-DECISION", "GAS-beslissing", "Décision SAC", "GAS-Entscheidung", 5, "year"),
    _default_type(
        "MECH-EW-PREMIUM", "Premiebeslissing", "Décision de prime", "Prämienentscheidung", 5, "year"
    ),
    _default_type(
        "MECH-EW-INSPECTION",
        "Aankondiging inspectie",
        "Avis d'inspection",
        "Inspektionsankündigung",
        6,
        "month",
    ),
)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY, public_key_pem TEXT NOT NULL, organization_id TEXT NOT NULL,
    application_id TEXT NOT NULL, scopes TEXT NOT NULL, certificate_thumbprint TEXT);
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
    assertion ids, faults, limits and the message-type registry live in memory only (the registry
    starts as DEFAULT_MESSAGE_TYPES): after a restart clients simply get a 401 and fetch a new token,
    which is what the real service does too.

    `expiration_days` is the validity of a publication without a messageTypeId; `max_message_bytes`
    bounds a publishMessage request (None: no limit)."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        token_lifetime_seconds: int = 600,
        expiration_days: int = 365,
        max_message_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES,
        message_types: Iterable[MessageType] = DEFAULT_MESSAGE_TYPES,
    ):
        self.path = Path(path) if path else None
        self.token_lifetime_seconds = token_lifetime_seconds
        self.expiration_days = expiration_days
        self._default_max_message_bytes = self.max_message_bytes = max_message_bytes
        self._default_message_types = tuple(message_types)
        self._message_types = {t.message_type_id: t for t in self._default_message_types}
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(path) if path else ":memory:", check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        if path:  # one fsync per checkpoint rather than per publication: benchmarks publish a lot
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(clients)")}
        if "certificate_thumbprint" not in columns:  # a state file written before certificates
            self._db.execute("ALTER TABLE clients ADD COLUMN certificate_thumbprint TEXT")
        self._tokens: dict[str, IssuedToken] = {}
        self._seen_assertions: dict[str, float] = {}
        self.fault_injector = FaultInjector()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- clients and tokens ----------------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        public_key_pem: str,
        organization_id: str,
        application_id: str,
        scopes: tuple[str, ...] | frozenset[str] = SCOPES,
        certificate_thumbprint: str | None = None,
    ) -> None:
        """`certificate_thumbprint`: the `x5t#S256` of the client's registered X.509 certificate; when
        set, the token endpoint wants it (as `x5t#S256` or `kid`) in the assertion's header."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO clients (client_id, public_key_pem, organization_id, application_id, "
                "scopes, certificate_thumbprint) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    client_id,
                    public_key_pem,
                    organization_id,
                    application_id,
                    " ".join(sorted(scopes)),
                    certificate_thumbprint,
                ),
            )
            # A changed registration must not keep working through tokens issued before it.
            self._tokens = {k: t for k, t in self._tokens.items() if t.client.client_id != client_id}

    def client(self, client_id: str) -> RegisteredClient | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM clients WHERE client_id = ?", (client_id,)).fetchone()
        if row is None:
            return None
        return RegisteredClient(
            row["client_id"],
            row["public_key_pem"],
            row["organization_id"],
            row["application_id"],
            frozenset(row["scopes"].split()),
            row["certificate_thumbprint"],
        )

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

    def revoke_token(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def revoke_tokens(self) -> None:
        """Forget every issued token, as if they had all expired (tests of the 401 path)."""
        with self._lock:
            self._tokens.clear()

    # -- recipients ------------------------------------------------------------------------------

    def register_recipient(
        self,
        kind: str,
        recipient_id: str,
        *,
        active: bool = True,
        exclusively_ebox: bool = False,
        no_digital_user: bool = False,
        last_connection_date: str | None = None,
    ) -> None:
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
                "WHERE kind = ? AND recipient_id = ?",
                (kind, recipient_id),
            )

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
            "kind": row["kind"],
            "id": row["recipient_id"],
            "active": bool(row["active"]),
            "exclusively_ebox": bool(row["exclusively_ebox"]),
            "no_digital_user": bool(row["no_digital_user"]),
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
            if idempotency_key is not None and self.idempotency_key_used(
                record["sender_application_id"], idempotency_key
            ):
                return None  # the content is not compared, as in the real service; checked before
                # any roll, so a duplicate never uses up a configured answer
            known = self.recipient(kind, recipient_id)
            configured = (
                known is not None
                and not known["no_digital_user"]
                and self.roll_no_digital_user(kind, recipient_id)
            )
            never_opened = known is None or known["no_digital_user"] or configured
            published_at = _now()
            message_type = self._message_types.get(record["message_type_id"] or "")
            expires = (
                message_type.expiry(published_at)
                if message_type
                else published_at + relativedelta(days=self.expiration_days)
            )
            record.update(
                code="NO_DIGITAL_USER" if never_opened else None,
                published_at=_timestamp(published_at),
                expiration_date=_timestamp(expires),
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
                        message_id,
                        idempotency_key,
                        record["sender_organization_id"],
                        record["sender_application_id"],
                        record["recipient_kind"],
                        record["recipient_id"],
                        record["language"],
                        record["subject"],
                        record["message_type_id"],
                        record["registered_mail"],
                        json.dumps(record["attachments"]),
                        record["code"],
                        record["published_at"],
                        record["expiration_date"],
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

    def publications(
        self,
        recipient_kind: str | None = None,
        recipient_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> list[dict[str, Any]]:
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
            row = self._db.execute(
                "SELECT * FROM publications WHERE message_id = ?", (message_id,)
            ).fetchone()
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

    def message_statuses(
        self, sender_application_id: str, wanted: list[tuple[str, str, str]]
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

    # -- message types and limits ----------------------------------------------------------------

    def message_types(self) -> dict[str, MessageType]:
        with self._lock:
            return dict(self._message_types)

    def register_message_types(self, types: Iterable[MessageType], *, replace: bool = False) -> None:
        """Add (or, with `replace`, replace the registry with) these message types."""
        with self._lock:
            if replace:
                self._message_types = {}
            self._message_types.update({t.message_type_id: t for t in types})

    def set_max_message_bytes(self, limit: int | None) -> None:
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError("max_message_bytes must be a whole number >= 1, or null for no limit")
        with self._lock:
            self.max_message_bytes = limit

    # -- faults and reset ------------------------------------------------------------------------

    def set_faults(self, **settings: Any) -> Faults:
        """Replace the fault settings (unnamed ones go back to their defaults)."""
        return self.fault_injector.set(**settings)

    def faults(self) -> Faults:
        return self.fault_injector.get()

    def roll_fault(self) -> Fault | None:
        return self.fault_injector.roll()

    def roll_no_digital_user(self, kind: str, recipient_id: str) -> bool:
        """Whether the next new publication is answered NO_DIGITAL_USER by configuration.

        Never for a recipient already answered without it: that answer said they use the eBox, and
        nobody un-opens it."""
        with self._lock:
            if not self.fault_injector.wants_no_digital_user():
                return False
            if self._db.execute(
                "SELECT 1 FROM publications WHERE recipient_kind = ? AND recipient_id = ? "
                "AND code IS NULL LIMIT 1",
                (kind, recipient_id),
            ).fetchone():
                return False
            return self.fault_injector.take_no_digital_user()

    def idempotency_key_used(self, sender_application_id: str, idempotency_key: str) -> bool:
        with self._lock:
            return (
                self._db.execute(
                    "SELECT 1 FROM idempotency_keys WHERE sender_application_id = ? AND idempotency_key = ?",
                    (sender_application_id, idempotency_key),
                ).fetchone()
                is not None
            )

    def reset(self) -> None:
        """Forget recipients, publications, idempotency keys, tokens and faults, and go back to the
        default message types and size limit; keep the clients."""
        with self._lock:
            self._db.executescript(
                "DELETE FROM recipients; DELETE FROM publications; DELETE FROM idempotency_keys;"
            )
            self._tokens.clear()
            self._seen_assertions.clear()
            self._message_types = {t.message_type_id: t for t in self._default_message_types}
            self.max_message_bytes = self._default_max_message_bytes
        self.fault_injector.reset()
