"""Recipient identifiers: validation with python-stdnum and keyed pseudonyms for logs and audit."""

from __future__ import annotations

import hashlib
import hmac

from stdnum.be import bis, nn, vat
from stdnum.exceptions import ValidationError

CITIZEN = "citizen"
ENTERPRISE = "enterprise"
RECIPIENT_KINDS = (CITIZEN, ENTERPRISE)
MAX_INPUT_LENGTH = 32  # room for any way of writing an 11-digit SSIN or a "BE 0123.456.789"


class InvalidRecipientId(ValueError):
    pass


def normalize_recipient_id(kind: str, value: str) -> str:
    """Return the compact, checksum-verified id or raise InvalidRecipientId saying why.

    Citizens carry an 11-digit social security identification number (SSIN): the national register
    number (rijksregisternummer, `stdnum.be.nn`) or, for people not in the register, a BIS number
    (`stdnum.be.bis`); the eBox knows citizens by either.
    enterprises a 10-digit KBO number (same number as the Belgian VAT number, `stdnum.be.vat`).
    The message never contains the id itself: it may end up in a log.
    """
    if not isinstance(value, str):
        raise InvalidRecipientId(f"must be text, not {type(value).__name__}")
    if len(value) > MAX_INPUT_LENGTH:
        raise InvalidRecipientId(f"longer than {MAX_INPUT_LENGTH} characters")
    if kind == CITIZEN:
        try:
            return nn.validate(value)
        except ValidationError as exc:
            if bis.is_valid(value):
                return bis.compact(value)
            raise InvalidRecipientId(f"not a valid national register or BIS number ({exc})") from None
    if kind == ENTERPRISE:
        try:
            return vat.validate(value)
        except ValidationError as exc:
            raise InvalidRecipientId(f"not a valid KBO enterprise number ({exc})") from None
    raise InvalidRecipientId(f"unknown recipient kind {kind!r} (expected citizen or enterprise)")


def pseudonym(key: bytes, kind: str, recipient_id: str) -> str:
    """A keyed, stable pseudonym: the same recipient always gets the same value, and without the
    key nobody can test a guessed national register number against it."""
    digest = hmac.new(key, f"{kind}:{recipient_id}".encode(), hashlib.sha256).hexdigest()
    return f"r-{digest[:20]}"
