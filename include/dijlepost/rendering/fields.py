"""Payload field kinds: check a raw payload value and write it out in the letter's language.

A template declares each payload field with a kind (`text`, `date`, `amount`, ...). `parse` turns the
raw JSON value into a Python value or raises `LetterDataError` naming the field; a `choice` field
carries a code whose wording per language the template lists (`parse_choice`). `display` writes the
parsed value the way a Belgian letter in Dutch, French or German does (`1 maart 2026`,
`1er mars 2026`, `1. März 2026`; `1.250,50 EUR`, `1 250,50 EUR`). Amounts are `Decimal` throughout: a
float has already lost the cents, so it is refused rather than converted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from stdnum.be import ogm_vcs
from stdnum.exceptions import ValidationError

from .errors import LetterDataError

FIELD_KINDS = ("text", "date", "amount", "iban", "ogm", "integer", "time", "choice", "lines")

MAX_TEXT_LENGTH = 4000
MAX_AMOUNT = Decimal("999999999.99")  # the EPC QR code's ceiling; no city letter comes near it

NBSP = "\u00a0"
NARROW_NBSP = "\u202f"
# Thousands separator per language; French follows the Belgian-French (CLDR fr-BE) narrow space.
_THOUSANDS = {"nl": ".", "fr": NARROW_NBSP, "de": "."}

_MONTHS = {
    "nl": (
        "januari",
        "februari",
        "maart",
        "april",
        "mei",
        "juni",
        "juli",
        "augustus",
        "september",
        "oktober",
        "november",
        "december",
    ),
    "fr": (
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ),
    "de": (
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ),
}

# Itemised lines of an invoice or reminder (kind `lines`, optional): what they add up to is amount_due.
MAX_LINES = 50
MAX_LINE_DESCRIPTION = 200
MAX_QUANTITY = Decimal("100000")
VAT_RATES = (0, 6, 12, 21)  # the Belgian VAT rates, percent
LINE_KEYS = ("description", "quantity", "unit_price", "vat_rate")
_CENT = Decimal("0.01")

# ASCII digits only: `\d` would take Arabic-Indic or fullwidth digits, which Decimal() reads as well.
_AMOUNT_RE = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,2})?\Z")
_QUANTITY_RE = re.compile(r"^[0-9]{1,6}(\.[0-9]{1,3})?\Z")
_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_TIME_RE = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z")
_INTEGER_RE = re.compile(r"[0-9]{1,18}")
_WHITESPACE_RE = re.compile(r"\s+")


@dataclass(frozen=True)
class InvoiceLine:
    """One itemised line: `quantity` x `unit_price` (excluding VAT), plus VAT at `vat_rate` percent,
    each rounded to the cent (half up) as a Belgian invoice rounds them."""

    description: str
    quantity: Decimal
    unit_price: Decimal
    vat_rate: int

    @property
    def net(self) -> Decimal:
        return (self.quantity * self.unit_price).quantize(_CENT, ROUND_HALF_UP)

    @property
    def vat(self) -> Decimal:
        return (self.net * self.vat_rate / 100).quantize(_CENT, ROUND_HALF_UP)

    @property
    def total(self) -> Decimal:
        return self.net + self.vat


def format_date(value: date, language: str) -> str:
    month = _MONTHS[language][value.month - 1]
    if language == "fr":
        return f"{'1er' if value.day == 1 else value.day} {month} {value.year}"
    if language == "de":
        return f"{value.day}. {month} {value.year}"
    return f"{value.day} {month} {value.year}"


def format_amount(value: Decimal, language: str) -> str:
    """`1250.5` -> `1.250,50 EUR` (nl, de) or `1 250,50 EUR` (fr); the space before EUR does not break."""
    units, cents = f"{abs(value):.2f}".split(".")
    groups: list[str] = []
    while len(units) > 3:
        groups.insert(0, units[-3:])
        units = units[:-3]
    groups.insert(0, units)
    sign = "-" if value < 0 else ""
    return f"{sign}{_THOUSANDS[language].join(groups)},{cents}{NBSP}EUR"


_TIME_FORMATS = {
    "fr": "{hour}" + NBSP + "h" + NBSP + "{minute:02d}",
    "de": "{hour}:{minute:02d}" + NBSP + "Uhr",
    "nl": "{hour}.{minute:02d}" + NBSP + "uur",
}


def format_time(value: time, language: str) -> str:
    """`14.30 uur` (nl), `14 h 30` (fr), `14:30 Uhr` (de), the spaces not breaking."""
    return _TIME_FORMATS.get(language, _TIME_FORMATS["nl"]).format(hour=value.hour, minute=value.minute)


def format_quantity(value: Decimal, language: str) -> str:
    """`2` -> `2`, `1.5` -> `1,5`: a decimal comma in all three languages, no trailing zeros."""
    text = f"{value.normalize():f}"
    return text.replace(".", ",")


def format_vat_rate(rate: int, language: str) -> str:
    return f"{rate}{NBSP}%"


def parse_lines(value: Any, field: str) -> tuple[InvoiceLine, ...]:
    """The itemised lines of the payload: a list of {description, quantity, unit_price, vat_rate}."""
    if not isinstance(value, list) or not value:
        raise LetterDataError(
            f"payload field {field!r} must be a list of lines, each with {', '.join(LINE_KEYS)}"
        )
    if len(value) > MAX_LINES:
        raise LetterDataError(f"payload field {field!r} has more than {MAX_LINES} lines")
    lines = []
    for number, raw in enumerate(value, start=1):
        where = f"{field}[{number}]"
        if not isinstance(raw, Mapping):
            raise LetterDataError(f"payload field {where!r} must be an object with {', '.join(LINE_KEYS)}")
        unknown = sorted(str(key) for key in raw if key not in LINE_KEYS)
        if unknown:
            raise LetterDataError(
                f"payload field {where + '.' + unknown[0]!r} is not a line field "
                f"(expected {', '.join(LINE_KEYS)})"
            )
        for key in LINE_KEYS:
            if is_missing(raw.get(key)):
                raise LetterDataError(f"payload field {where + '.' + key!r} is missing or empty")
        description = _parse_text(raw["description"], f"{where}.description")
        if len(description) > MAX_LINE_DESCRIPTION:
            raise LetterDataError(
                f"payload field {where + '.description'!r} is longer than {MAX_LINE_DESCRIPTION} characters"
            )
        quantity = raw["quantity"]
        if isinstance(quantity, int) and not isinstance(quantity, bool):
            quantity = str(quantity)
        if not isinstance(quantity, str) or not _QUANTITY_RE.match(quantity.strip()):
            raise LetterDataError(
                f"payload field {where + '.quantity'!r} must be a number such as '2' or "
                "'1.5' (a point before the decimals, at most three), written as text"
            )
        quantity = Decimal(quantity.strip())
        if not 0 < quantity <= MAX_QUANTITY:
            raise LetterDataError(
                f"payload field {where + '.quantity'!r} must be above 0 and at most {MAX_QUANTITY}"
            )
        unit_price = _parse_amount(raw["unit_price"], f"{where}.unit_price")
        rate = raw["vat_rate"]
        if isinstance(rate, str) and rate.strip().isdecimal():
            rate = int(rate.strip())
        if isinstance(rate, bool) or rate not in VAT_RATES:
            raise LetterDataError(
                f"payload field {where + '.vat_rate'!r} must be one of the Belgian VAT "
                f"rates {', '.join(map(str, VAT_RATES))} (percent)"
            )
        line = InvoiceLine(description, quantity, unit_price, int(rate))
        if line.total > MAX_AMOUNT:
            raise LetterDataError(f"payload field {where!r} comes to more than {MAX_AMOUNT} EUR")
        lines.append(line)
    return tuple(lines)


def format_ogm(compact: str) -> str:
    """`010806817183` -> `+++010/8068/17183+++`, as printed on Belgian payment slips."""
    return f"+++{ogm_vcs.format(compact)}+++"


def clean_text(value: str) -> str:
    """NFC (so `O` + combining diaeresis prints as one `Ö`) and single spaces, no line breaks."""
    return _WHITESPACE_RE.sub(" ", unicodedata.normalize("NFC", value)).strip()


def invisible_format_character(text: str) -> str | None:
    """The first invisible format character (Unicode category Cf) in `text`, if any: the bidirectional
    controls (U+202A-202E, U+2066-2069) that make a name read differently from how it is stored, zero-width
    spaces and joiners, the soft hyphen, the byte order mark, tag characters... No letter needs one, and
    what they do to the text is invisible in the data and unpredictable on paper."""
    for char in text:
        if char > "\u00ac" and unicodedata.category(char) == "Cf":
            return char
    return None


# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties) that are not of category Cf or Cn:
# combining grapheme joiner, Hangul fillers, Khmer inherent vowels, Mongolian and other variation selectors.
_IGNORABLE = frozenset(
    (0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0, *range(0x180B, 0x1810), *range(0xFE00, 0xFE10))
) | frozenset(range(0xE0100, 0xE01F0))
# Categories of characters that print nothing or break the line: controls (TAB, LF, CR, U+0085 ...),
# format characters, line and paragraph separators, private use, surrogates, unassigned.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})


def hidden_character(text: str) -> str | None:
    """The first control, line or paragraph separator, format or otherwise invisible character in
    `text` (categories Cc Cf Zl Zp Co Cs Cn, and the default-ignorable code points), if any."""
    for char in text:
        if (char < " " or char > "~") and (
            unicodedata.category(char) in _HIDDEN_CATEGORIES or ord(char) in _IGNORABLE
        ):
            return char
    return None


def hidden_character_problem(text: str, where: str) -> str | None:
    """A refusal naming `where` and the character (never the value), or None when there is none: for
    an address field, which is one line on the envelope and one cell in the print manifest."""
    char = hidden_character(text)
    if char is None:
        return None
    name = unicodedata.name(char, f"category {unicodedata.category(char)}")
    category = unicodedata.category(char)
    if category in ("Zl", "Zp") or char in "\n\r\x0b\x0c\x1c\x1d\x1e\x85":
        what = "a line break"
    elif category == "Cf":
        what = "an invisible formatting character"
    else:
        what = "a control or invisible character"
    return f"{where} contains {what}, U+{ord(char):04X} ({name}), which is not allowed in an address"


def format_character_problem(text: str, where: str) -> str | None:
    """A refusal naming `where` and the character, or None when `text` has no format character."""
    char = invisible_format_character(text)
    if char is None:
        return None
    name = unicodedata.name(char, "format character")
    return (
        f"{where} contains an invisible formatting character, U+{ord(char):04X} ({name}), "
        "which is not allowed in a letter"
    )


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def parse(kind: str, value: Any, field: str) -> Any:
    """The payload value as a Python value of the kind; LetterDataError names the field if it is not."""
    return _PARSERS[kind](value, field)


def display(kind: str, value: Any, language: str) -> str:
    """The parsed value as it is printed in a letter in `language`."""
    return _DISPLAY[kind](value, language)


def parse_choice(value: Any, field: str, codes: Collection[str]) -> str:
    if not isinstance(value, str) or value not in codes:
        raise LetterDataError(f"payload field {field!r} must be one of {', '.join(sorted(codes))}")
    return value


def _parse_text(value: Any, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise LetterDataError(f"payload field {field!r} must be text, got {type(value).__name__}")
    if isinstance(value, str) and len(value) > 4 * MAX_TEXT_LENGTH:  # not worth cleaning first
        raise LetterDataError(f"payload field {field!r} is longer than {MAX_TEXT_LENGTH} characters")
    text = clean_text(str(value))
    if len(text) > MAX_TEXT_LENGTH:
        raise LetterDataError(f"payload field {field!r} is longer than {MAX_TEXT_LENGTH} characters")
    return text


def _parse_date(value: Any, field: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE_RE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise LetterDataError(f"payload field {field!r} must be a date written YYYY-MM-DD")


def _parse_amount(value: Any, field: str) -> Decimal:
    if isinstance(value, float):
        raise LetterDataError(
            f"payload field {field!r} must be an amount written as a string such as '125.50', not a float"
        )
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str) and _AMOUNT_RE.match(value.strip()):
        amount = Decimal(value.strip())
    else:
        raise LetterDataError(
            f"payload field {field!r} must be an amount in euro such as '125.50' "
            "(a point before the cents, at most two decimals, not negative)"
        )
    try:
        if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
            raise InvalidOperation
    except InvalidOperation:
        raise LetterDataError(
            f"payload field {field!r} must be a non-negative amount in euro with at most two decimals"
        ) from None
    if amount == 0:
        # Every amount a template declares is one the letter states ("a fine of at most ...", "a
        # premium of ...", "to pay ..."): 0,00 EUR there means the source system lost the amount.
        raise LetterDataError(f"payload field {field!r} must be above 0.00 EUR")
    if amount > MAX_AMOUNT:
        raise LetterDataError(f"payload field {field!r} is above the maximum of {MAX_AMOUNT} EUR")
    return amount.quantize(Decimal("0.01"))


def _parse_iban(value: Any, field: str) -> IBAN:
    if not isinstance(value, str):
        raise LetterDataError(f"payload field {field!r} must be an IBAN written as text")
    try:
        return IBAN(value)
    except SchwiftyException as exc:
        raise LetterDataError(f"payload field {field!r} is not a valid IBAN ({exc})") from None


def _parse_ogm(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise LetterDataError(f"payload field {field!r} must be a structured communication written as text")
    try:
        return ogm_vcs.validate(value)
    except ValidationError as exc:
        raise LetterDataError(
            f"payload field {field!r} is not a valid structured communication "
            f"(+++ddd/dddd/ddddd+++ with mod-97 check digits): {exc}"
        ) from None


def _parse_integer(value: Any, field: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER_RE.fullmatch(value.strip()):
        return int(value.strip())
    raise LetterDataError(f"payload field {field!r} must be a whole number")


def _parse_time(value: Any, field: str) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str) and _TIME_RE.match(value.strip()):
        return time.fromisoformat(value.strip())
    raise LetterDataError(f"payload field {field!r} must be a time of day written HH:MM")


_PARSERS = {
    "text": _parse_text,
    "date": _parse_date,
    "amount": _parse_amount,
    "iban": _parse_iban,
    "ogm": _parse_ogm,
    "integer": _parse_integer,
    "time": _parse_time,
}

_DISPLAY = {
    "text": lambda value, language: value,
    "date": format_date,
    "amount": format_amount,
    "iban": lambda value, language: value.formatted,
    "ogm": lambda value, language: format_ogm(value),
    "integer": lambda value, language: str(value),
    "time": format_time,
}
