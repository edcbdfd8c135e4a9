"""Checking one raw row: every field for its type, its limit and its rule, and the letter as a whole by
the renderer's own check, so that a letter that imports also renders. A refusal names the line's field,
never its value."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

from include.dijlepost.intake.contract import (
    CODE_RE,
    COUNTRY_RE,
    FALSE,
    FIELDS,
    KNOWN_COUNTRIES,
    LAYOUT_BUDGET_SECONDS,
    LETTER_ID_RE,
    LIMITS,
    MAX_PAYLOAD_BYTES,
    MAX_PAYLOAD_DEPTH,
    TRUE,
    NotFinite,
    RowError,
    strict_json,
)
from include.dijlepost.intake.reading import Unreadable
from include.dijlepost.recipients import RECIPIENT_KINDS, InvalidRecipientId, normalize_recipient_id
from include.dijlepost.waves import LANGUAGES, WAVES


def _shown(value) -> str:
    """A refused value is echoed only when it looks like a code (a typo such as 'fnance'); anything else may
    be a name or a number that slipped into the wrong column, and the message may end up in a log."""
    return repr(value) if isinstance(value, str) and CODE_RE.fullmatch(value) else "a value not shown here"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _bad_character(text: str) -> str | None:
    """Why this text cannot be stored as PostgreSQL text, or None."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an invalid character (an unpaired surrogate)"
    return None


def _text(row: Mapping, name: str) -> str:
    """A required field as stripped text; RowError names the field when it is missing or wrong."""
    value = _optional_text(row, name, required=True)
    if value is None:  # cannot happen: a required field that is missing raises
        raise RowError(f"{name}: missing")
    return value


def _optional_text(row: Mapping, name: str, required: bool = False) -> str | None:
    """The field as stripped text, or None when absent and optional; RowError names the field otherwise."""
    value = row.get(name)
    if value is None:
        if required:
            raise RowError(f"{name}: missing")
        return None
    if name == "postal_code" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # as the renderer accepts it; any other field must be text
    if not isinstance(value, str):
        raise RowError(f"{name}: must be text, not {_json_type(value)}")
    bad = _bad_character(value)
    if bad:
        raise RowError(f"{name}: {bad}")
    value = value.strip()
    if not value:
        if required:
            raise RowError(f"{name}: missing")
        return None
    if len(value) > LIMITS[name]:
        raise RowError(f"{name}: longer than {LIMITS[name]} characters ({len(value)})")
    return value


def _payload(value: Any) -> tuple[dict, str]:
    """The payload object and its JSON text as stored; RowError('payload: ...') otherwise."""
    if value is None or value == "":
        value = {}
    if isinstance(value, str):
        if len(value) > MAX_PAYLOAD_BYTES * 2:
            raise RowError(f"payload: longer than {MAX_PAYLOAD_BYTES} bytes")
        try:
            value = strict_json(value)
        except NotFinite as exc:
            raise RowError(f"payload: not valid JSON: {exc}") from None
        except (ValueError, RecursionError):
            raise RowError("payload: not valid JSON") from None
    if not isinstance(value, Mapping):
        raise RowError(f"payload: must be a JSON object, not {_json_type(value)}")
    _check_payload_values(value, 1)
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if len(text.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise RowError(f"payload: longer than {MAX_PAYLOAD_BYTES} bytes as JSON")
    return dict(value), text


def _check_payload_values(value: Any, depth: int, where: str = "payload") -> None:
    if depth > MAX_PAYLOAD_DEPTH:
        raise RowError(f"payload: nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or _bad_character(key):
                raise RowError("payload: a field name that is not valid text")
            name = f"payload field {key!r}" if where == "payload" and CODE_RE.fullmatch(key) else where
            _check_payload_values(item, depth + 1, name)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_payload_values(item, depth + 1, where)
    elif isinstance(value, str):
        bad = _bad_character(value)
        if bad:
            raise RowError(f"payload: {where} {bad}" if where != "payload" else f"payload: a value {bad}")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise RowError(
                f"payload: {where} is not a finite number"
                if where != "payload"
                else "payload: a number that is not finite"
            )
    elif value is not None and not isinstance(value, (bool, int)):
        raise RowError(f"payload: {where} is not a JSON value")


def validate_row(raw: Mapping | Unreadable) -> dict:
    """Return a clean letter row or raise RowError('field: why'); never echoes a personal value."""
    if isinstance(raw, Unreadable):
        raise RowError(raw.reason)
    if not isinstance(raw, Mapping):
        raise RowError("a row must be one JSON object")
    unknown = [k for k in raw if k not in FIELDS]
    if unknown:
        key = unknown[0]
        shown = repr(key) if isinstance(key, str) and CODE_RE.fullmatch(key) else "(a name not shown)"
        raise RowError(f"{shown}: not a field of the outbox contract (the fields are {', '.join(FIELDS)})")
    letter_id = _text(raw, "letter_id")
    if not LETTER_ID_RE.match(letter_id):
        raise RowError("letter_id: must be 1-64 characters A-Z a-z 0-9 . _ - starting with a letter or digit")
    department = _text(raw, "department")
    wave = WAVES.get(department)
    if wave is None:
        raise RowError(f"department: unknown {_shown(department)}; expected one of {', '.join(WAVES)}")
    letter_type = _text(raw, "letter_type")
    if letter_type not in wave.letter_types:
        raise RowError(
            f"letter_type: {_shown(letter_type)} is not a {wave.department} letter type "
            f"({', '.join(wave.letter_types)})"
        )
    recipient_kind = _text(raw, "recipient_kind")
    if recipient_kind not in RECIPIENT_KINDS:
        raise RowError(f"recipient_kind: must be citizen or enterprise, not {_shown(recipient_kind)}")
    try:
        recipient_id = normalize_recipient_id(recipient_kind, _text(raw, "recipient_id"))
    except InvalidRecipientId as exc:
        raise RowError(f"recipient_id: {exc}") from None
    recipient_name = _text(raw, "recipient_name")
    street = _text(raw, "street")
    postal_code = _text(raw, "postal_code")
    city = _text(raw, "city")
    language = _text(raw, "language")
    if language not in LANGUAGES:
        raise RowError(f"language: must be nl, fr or de, not {_shown(language)}")
    country = (_optional_text(raw, "country") or "BE").upper()
    if not COUNTRY_RE.match(country) or country not in KNOWN_COUNTRIES:
        raise RowError("country: must be a two-letter ISO 3166 country code such as BE")
    registered = raw.get("registered", False)
    if registered is None:
        registered = False
    elif isinstance(registered, str):
        word = registered.strip().lower()
        if word not in TRUE | FALSE:
            raise RowError("registered: must be true or false")
        registered = word in TRUE
    elif not isinstance(registered, bool):
        raise RowError(f"registered: must be true or false, not {_json_type(registered)}")
    payload, payload_json = _payload(raw.get("payload"))
    row = {
        "letter_id": letter_id,
        "department": wave.department,
        "letter_type": letter_type,
        "recipient_kind": recipient_kind,
        "recipient_id": recipient_id,
        "recipient_name": recipient_name,
        "street": street,
        "postal_code": postal_code,
        "city": city,
        "country": country,
        "language": language,
        "registered": registered,
        "payload": payload,
    }
    _check_renders(row)
    row["payload_json"] = payload_json
    return row


def _check_renders(row: dict) -> None:
    """The renderer's own check of the letter: template fields, amounts, dates, printable characters, the
    address in the envelope window and the layout, within `LAYOUT_BUDGET_SECONDS`."""
    from include.dijlepost.rendering.errors import LetterDataError
    from include.dijlepost.rendering.validation import validate_letter

    try:
        validate_letter(row, deadline=time.monotonic() + LAYOUT_BUDGET_SECONDS)
    except LetterDataError as exc:
        raise RowError(_without_values(_renderer_refusal(exc), row)) from None


_PERSONAL_FIELDS = ("recipient_id", "recipient_name", "street", "postal_code", "city", "payload")


def _without_values(message: str, row: Mapping) -> str:
    """The message with every value of the row it quotes replaced: a library's own wording inside the
    renderer's reason may quote the value it refused (schwifty: "Invalid characters in IBAN <value>"), and
    that value may be a national register number in the wrong field. Codes are left as they are."""
    personal = [row.get(name) for name in _PERSONAL_FIELDS]
    values = sorted(
        {v for v in _strings(personal) if len(v) >= 4 and not CODE_RE.fullmatch(v)}, key=len, reverse=True
    )
    for value in values:
        if value in message:
            message = message.replace(value, "(a value not shown)")
    # ... and a part of one, rewritten: a run of letters and digits with a digit in it that occurs in a value
    # written without separators ("Invalid BBAN structure: '53900754703X'" of "BE68 5390 0754 703X").
    compact = [re.sub(r"[\W_]+", "", v).upper() for v in values]

    def hide(match: re.Match) -> str:
        token = match.group().upper()
        return "(a value not shown)" if any(token in v for v in compact) else match.group()

    return re.sub(r"(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{4,}", hide, message)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value.strip()
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 100_000:
        yield str(value)


_RENDER_FIELD_RE = re.compile(r"\b(letter|payload) field '([a-z][a-z0-9_]*)'")


def _renderer_refusal(exc: Exception) -> str:
    """The renderer's reason, word for word (it is what a quarantine would say), after the field it is
    about: `postal_code: ...`, `payload.amount_due: ...`, or `letter: ...` for the letter as a whole."""
    message = str(exc)
    missing = getattr(exc, "field", None)  # TemplateFieldMissing
    if isinstance(missing, str):
        return f"payload.{missing}: {message}"
    match = _RENDER_FIELD_RE.search(message)
    if match:
        return f"{match[2]}: {message}" if match[1] == "letter" else f"payload.{match[2]}: {message}"
    for name in FIELDS:
        if re.search(rf"\b{name}\b", message):
            return f"{name}: {message}"
    if "address" in message:
        return f"address: {message}"
    if "amount" in message or "EPC" in message or "beneficiary" in message:
        return f"payload: {message}"
    return f"letter: {message}"
