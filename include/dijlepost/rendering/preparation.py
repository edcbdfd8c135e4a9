"""Checking a letter row and preparing it for layout: the row's columns, the address, and the payload
against the template of its letter type, turned into a `PreparedLetter` (texts filled in and formatted
in the letter's language). Anything wrong raises `LetterDataError` naming the field, never echoing its
value. The templates' own texts are checked once, when the renderer starts (`check_template_texts`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from typing import Any

from babel import Locale

from .. import clock
from ..recipients import RECIPIENT_KINDS
from ..waves import LANGUAGES
from . import fields
from .errors import LetterDataError, TemplateError, TemplateFieldMissing
from .fonts import LetterFonts
from .templates import LetterTemplate, Paragraph, TemplateSet

LETTER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # as the outbox table checks it
ADDRESS_FIELDS = ("recipient_name", "street", "postal_code", "city")
# No address line longer than this fits the window even wrapped at the smallest size; refusing it
# first keeps an absurd value from costing any layout work.
MAX_ADDRESS_FIELD = 200
_NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "ZZ"})


@dataclass(frozen=True)
class Payment:
    amount: Decimal
    due_date: date
    ogm: str  # 12 digits


@dataclass(frozen=True)
class PreparedLetter:
    """A letter row checked and formatted, ready for layout."""

    template: LetterTemplate
    language: str
    letter_id: str
    letter_date: date
    registered: bool
    address: tuple[str, ...]
    abroad: bool  # the address is outside Belgium
    subject: str
    details: tuple[tuple[str, str], ...]
    body: tuple[Paragraph, ...]
    payment: Payment | None
    lines: tuple[fields.InvoiceLine, ...] = ()


@dataclass(frozen=True)
class _Row:
    """The row's own columns, checked (the address and the payload come after)."""

    template: LetterTemplate
    language: str
    letter_id: str
    registered: bool
    payload: Mapping[str, Any]


@dataclass
class _Payload:
    """The payload's fields parsed (`parsed`), as printed (`values`), and its itemised lines."""

    parsed: dict[str, Any]
    values: dict[str, str]
    lines: tuple[fields.InvoiceLine, ...] = ()


class LetterPreparer:
    """Checks letter rows against one template set, with the letter fonts' character coverage."""

    def __init__(self, template_set: TemplateSet, fonts: LetterFonts, today: date | None = None):
        self._set = template_set
        self._fonts = fonts
        self._today = today

    def template(self, letter_type: Any) -> LetterTemplate:
        template = self._set.templates.get(letter_type) if isinstance(letter_type, str) else None
        if template is None:
            raise LetterDataError(f"unknown letter type {code_for_message(letter_type)}")
        return template

    def prepare(self, letter: Mapping[str, Any]) -> PreparedLetter:
        """The letter checked and formatted; `LetterDataError` naming the first field that is wrong."""
        row = self._row(letter)
        address = self._address(letter, row.language)
        payload = self._payload(row)
        letter_date = self._today or clock.today()
        payload.values.update(
            recipient_name=address[0],
            letter_id=row.letter_id,
            letter_date=fields.format_date(letter_date, row.language),
        )
        payment = _checked_amounts(row.template, payload)
        texts = row.template.texts[row.language]
        values = payload.values
        return PreparedLetter(
            template=row.template,
            language=row.language,
            letter_id=row.letter_id,
            letter_date=letter_date,
            registered=row.registered,
            address=address,
            abroad=len(address) > 3,
            subject=texts.subject.format_map(values),
            details=tuple((label, value.format_map(values)) for label, value in texts.details),
            body=tuple(Paragraph(p.text.format_map(values), p.bullet) for p in texts.body),
            payment=payment,
            lines=payload.lines,
        )

    def _row(self, letter: Mapping[str, Any]) -> _Row:
        if not isinstance(letter, Mapping):
            raise LetterDataError(f"a letter is a mapping of its columns, not {type(letter).__name__}")
        template = self.template(letter.get("letter_type"))
        language = letter.get("language")
        if not isinstance(language, str) or language not in LANGUAGES:
            raise LetterDataError(
                f"language must be one of {', '.join(LANGUAGES)}, got {code_for_message(language)}"
            )
        letter_id = letter.get("letter_id")
        if not isinstance(letter_id, str) or not LETTER_ID_RE.match(letter_id):
            raise LetterDataError("letter_id must be 1 to 64 letters, digits, '.', '_' or '-'")
        department = letter.get("department")
        if department is not None and department != template.department:
            raise LetterDataError(
                f"letter type {template.letter_type!r} belongs to department {template.department!r}, "
                f"not {code_for_message(department)}"
            )
        if letter.get("recipient_kind") not in RECIPIENT_KINDS:
            raise LetterDataError(f"recipient_kind must be one of {', '.join(RECIPIENT_KINDS)}")
        registered = letter.get("registered", False)
        if not isinstance(registered, bool):
            raise LetterDataError("registered must be true or false")
        payload = letter.get("payload") or {}
        if not isinstance(payload, Mapping):
            raise LetterDataError("payload must be a JSON object")
        return _Row(template, language, letter_id, registered, payload)

    def _payload(self, row: _Row) -> _Payload:
        """The payload's fields, in the template's order: parsed, formatted in the letter's language."""
        template, language = row.template, row.language
        result = _Payload(parsed={}, values={})
        for name, spec in template.fields.items():
            raw = row.payload.get(name)
            if spec.kind == "lines":  # optional: no lines, no table
                if raw is not None and raw != []:
                    result.lines = fields.parse_lines(raw, name)
                    for number, line in enumerate(result.lines, start=1):
                        self.require_printable(
                            line.description, f"payload field '{name}[{number}].description'"
                        )
                continue
            if fields.is_missing(raw):
                raise TemplateFieldMissing(template.letter_type, name)
            if spec.kind == "choice":
                choices = spec.choices or {}
                result.parsed[name] = fields.parse_choice(raw, name, choices)
                result.values[name] = choices[result.parsed[name]][language]
                continue
            result.parsed[name] = fields.parse(spec.kind, raw, name)
            result.values[name] = fields.display(spec.kind, result.parsed[name], language)
            if spec.kind == "text":
                self.require_printable(result.values[name], f"payload field {name!r}")
        return result

    def _address(self, letter: Mapping[str, Any], language: str) -> tuple[str, ...]:
        lines = {name: self._address_field(letter.get(name), name) for name in ADDRESS_FIELDS}
        country = letter.get("country") or "BE"
        if not isinstance(country, str) or not re.fullmatch(r"[A-Za-z]{2}", country):
            raise LetterDataError("country must be a two-letter ISO 3166 code such as BE")
        country = country.upper()
        if country == "BE" and not re.fullmatch(r"[1-9]\d{3}", lines["postal_code"]):
            raise LetterDataError("a Belgian postal_code is four digits")
        address = [lines["recipient_name"], lines["street"], f"{lines['postal_code']} {lines['city']}"]
        if country != "BE":
            address.append(_country_name(country, language).upper())
        return tuple(address)

    def _address_field(self, value: Any, name: str) -> str:
        """One field of the address as one printed line, cleaned, or `LetterDataError`."""
        if isinstance(value, int) and not isinstance(value, bool) and name == "postal_code":
            value = str(value)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise LetterDataError(f"letter field {name!r} is missing or empty")
        if not isinstance(value, str):
            raise LetterDataError(f"letter field {name!r} must be text, got {type(value).__name__}")
        if len(value) > 4 * MAX_ADDRESS_FIELD:  # not worth cleaning first
            raise LetterDataError(f"letter field {name!r} is longer than {MAX_ADDRESS_FIELD} characters")
        problem = fields.hidden_character_problem(value, f"letter field {name!r}")
        if problem:  # one line per field, as printed and as handed to the print house
            raise LetterDataError(problem)
        line = fields.clean_text(value)
        if len(line) > MAX_ADDRESS_FIELD:
            raise LetterDataError(f"letter field {name!r} is longer than {MAX_ADDRESS_FIELD} characters")
        self.require_printable(line, f"letter field {name!r}")
        return line

    def require_printable(self, text: str, where: str) -> None:
        problem = fields.format_character_problem(text, where)
        if problem:
            raise LetterDataError(problem)
        char = self._fonts.unprintable(text)
        if char is not None:
            raise LetterDataError(
                f"{where} contains a character the letter font cannot print: {char!r} (U+{ord(char):04X})"
            )


def _checked_amounts(template: LetterTemplate, payload: _Payload) -> Payment | None:
    """A payment letter asks for more than nothing; stated totals and itemised lines add up."""
    parsed = payload.parsed
    payment = None
    if template.payment:
        if parsed["amount_due"] <= 0:
            raise LetterDataError("payload field 'amount_due' must be above 0.00 EUR for a payment letter")
        payment = Payment(parsed["amount_due"], parsed["due_date"], parsed["ogm"])
    for total_field, parts in template.sums.items():
        if sum(parsed[part] for part in parts) != parsed[total_field]:
            raise LetterDataError(f"payload field {total_field!r} must be the sum of {' + '.join(parts)}")
    if payload.lines:
        total = sum(line.total for line in payload.lines)
        if total != parsed["amount_due"]:
            raise LetterDataError(
                f"payload field 'lines' adds up to {total} EUR (VAT included), "
                f"not to amount_due {parsed['amount_due']} EUR"
            )
    return payment


def check_template_texts(template_set: TemplateSet, fonts: LetterFonts) -> None:
    """The fixed texts, checked once when the renderer starts, so a letter only has its own data
    checked: no invisible format character, nothing the font cannot print (`TemplateError`)."""

    def check(template: str, where: str, text: str) -> None:
        hidden = fields.invisible_format_character(text)
        if hidden is not None:
            raise TemplateError(
                template,
                where,
                f"contains the invisible formatting character U+{ord(hidden):04X}; write the text without it",
            )
        char = fonts.unprintable(text)
        if char is not None:
            raise TemplateError(
                template, where, f"contains {char!r} (U+{ord(char):04X}), which the font lacks"
            )

    for template, where, text in _template_texts(template_set):
        check(template, where, text)


def _template_texts(s: TemplateSet):
    """Every fixed text of the set as (template, where, text), in the order they are checked."""
    for key in ("street", "postal_code", "city", "website", "enterprise_number", "account_name"):
        yield "common", f"sender.{key}", getattr(s.sender, key)
    for dep_name, dep in s.departments.items():
        yield "common", f"departments.{dep_name}.email", dep.email
        yield "common", f"departments.{dep_name}.phone", dep.phone
    for lang in LANGUAGES:
        yield "common", f"sender.name.{lang}", s.sender.names[lang]
        for key, label in s.labels[lang].items():
            yield "common", f"labels.{lang}.{key}", label
        for dep_name, dep in s.departments.items():
            yield "common", f"departments.{dep_name}.name.{lang}", dep.names[lang]
            for line in dep.signature[lang]:
                yield "common", f"departments.{dep_name}.signature.{lang}", line
        for letter_type, template in s.templates.items():
            for name, spec in template.fields.items():
                for code, wording in (spec.choices or {}).items():
                    yield letter_type, f"{name}.{code}.{lang}", wording[lang]
            texts = template.texts[lang]
            for where, text in [
                ("document_name", texts.document_name),
                ("subject", texts.subject),
                *(("details", f"{label} {value}") for label, value in texts.details),
                *(("body", paragraph.text) for paragraph in texts.body),
            ]:
                yield letter_type, f"{lang}.{where}", text


def code_for_message(value: Any) -> str:
    """A code from the row for an error message: quoted when it looks like a code (letters, digits,
    `_.-`, at most 40), else only its type, so that a misplaced name or address is never echoed."""
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", value):
        return repr(value)
    return "(empty)" if value is None or value == "" else f"a value of type {type(value).__name__}"


@cache
def _country_name(code: str, language: str) -> str:
    # CLDR also names regions and groupings (EU, UN, ZZ "unknown region"); no letter goes there.
    name = None if code in _NOT_COUNTRIES else Locale(language).territories.get(code)
    if name is None:
        raise LetterDataError(f"country {code!r} is not an ISO 3166 country code")
    return name
