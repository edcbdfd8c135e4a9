"""The outbox contract for department systems, as `letters import` checks it (docs/letters-import.md):
the fields, their limits and rules, and the errors an import raises."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from babel import Locale

LETTER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
KNOWN_COUNTRIES = frozenset(code for code in Locale("nl").territories if COUNTRY_RE.match(str(code)))
REQUIRED = (
    "letter_id",
    "department",
    "letter_type",
    "recipient_kind",
    "recipient_id",
    "recipient_name",
    "street",
    "postal_code",
    "city",
    "language",
)
OPTIONAL = ("country", "registered", "payload")
FIELDS = REQUIRED + OPTIONAL
TRUE, FALSE = {"true", "1", "yes", "ja", "oui", "t"}, {"false", "0", "no", "nee", "non", "f", ""}
# A letter imported again is the same letter when every field but its id (the key) is the same.
COMPARED = tuple(f for f in FIELDS if f != "letter_id")

# The longest value each text field may hold, in characters, after leading and trailing spaces are
# removed. Migration 0009 checks the same limits in the table (constraints letters_<field>_length), so
# a department system writing into `letters` directly meets them too.
LIMITS = {
    "letter_id": 64,
    "department": 40,
    "letter_type": 40,
    "recipient_kind": 10,
    "recipient_id": 32,
    "recipient_name": 200,
    "street": 150,
    "postal_code": 12,
    "city": 80,
    "country": 2,
    "language": 2,
}
MAX_PAYLOAD_BYTES = 65_536  # the payload as compact UTF-8 JSON
MAX_PAYLOAD_DEPTH = 8  # objects and arrays inside each other
MAX_LINE_BYTES = 1_048_576  # one JSON Lines line
LAYOUT_BUDGET_SECONDS = 2.0  # the renderer's layout of one letter at import (a normal one: milliseconds)
MAX_CSV_FIELD = 1_048_576  # one CSV value as the csv module reads it (its default is 131,072)
CSV_DELIMITERS = {",": "comma", ";": "semicolon"}

IMPORT_LOCK_ID = 0x64696A69  # "diji": held by one import transaction at a time
# Checked rows written per transaction: memory stays flat in the file's size, a crash loses one batch.
IMPORT_BATCH = 1000


class RowError(ValueError):
    """One row is refused; the message starts with the field: `recipient_name: longer than ...`."""


@dataclass
class ImportReport:
    inserted: list[str] = field(default_factory=list)
    duplicates: list[tuple[int, str, bool]] = field(default_factory=list)  # line, letter_id, same content
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(same for _, _, same in self.duplicates)


class ImportInterrupted(Exception):
    """An import stopped part-way; `report` holds what the batches before the stop imported."""

    report: ImportReport | None = None


class FileRefused(ImportInterrupted, ValueError):
    """The file cannot be read on from the line the message names; `report` (set by `import_rows`) holds
    what the batches before it imported."""


class ImportFailed(ImportInterrupted, RuntimeError):
    """Checking a row failed in an unexpected way (a fault of dijlepost, not of the row): the import stops
    there, the batches before it stay imported (`report`). The message names the line and the kind of
    error, never the error's own text."""


# A value that is shown in a refusal because it looks like a code (a department, a column name), never
# anything that may be personal data.
CODE_RE = re.compile(r"[a-z][a-z_]{0,31}")


class NotFinite(ValueError):
    """A JSON number that is not one JSON allows (NaN, Infinity) or too large for a float."""


def _refuse_constant(name: str):
    raise NotFinite(f"{name} is not a number JSON allows")  # Python's json accepts NaN and Infinity


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotFinite("a number too large for a float")
    return value


def strict_json(text: str) -> Any:
    """`json.loads` that refuses NaN, Infinity and numbers too large for a float (`NotFinite`)."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
