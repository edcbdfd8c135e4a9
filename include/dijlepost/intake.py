"""Letters handed over by department systems: validation and idempotent insertion into the outbox.

`dijlepost letters import FILE` reads CSV or JSON Lines (the contract is docs/letters-import.md). Each
row is checked on its own: every field for its type, its length limit (`LIMITS`) and its rule, and the
letter as a whole, payload included, by the renderer's own check (`rendering.validation.validate_letter`),
so a letter that imports also renders. A bad row is refused with a message naming the line and the field,
never the value itself; a letter id that is already in the outbox is reported as a duplicate and not
inserted again. The file is read as a stream and the good rows are inserted in transactions of
`IMPORT_BATCH` rows: memory stays flat in the file's size, and a rerun after a crash imports the rest (the
letters already in reported as duplicates). A problem with the file itself (not UTF-8, an unknown column,
no letters at all) is a `FileRefused` naming the line; found in the header, nothing is imported, found
further down, the batches before that line are (the exception's `report` says which).
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from babel import Locale

from include.dijlepost.db.connection import describe_db_error, is_row_error
from include.dijlepost.outbox import RunContext, record_events
from include.dijlepost.recipients import RECIPIENT_KINDS, InvalidRecipientId, normalize_recipient_id
from include.dijlepost.waves import LANGUAGES, WAVES

LETTER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
KNOWN_COUNTRIES = frozenset(code for code in Locale("nl").territories if COUNTRY_RE.match(code))
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
COMPARED = (
    "department",
    "letter_type",
    "recipient_kind",
    "recipient_id",
    "recipient_name",
    "street",
    "postal_code",
    "city",
    "country",
    "language",
    "registered",
    "payload",
)

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

_IMPORT_LOCK_ID = 0x64696A69  # "diji": held by one import transaction at a time
# Checked rows written per transaction: memory stays flat in the file's size, a crash loses one batch.
IMPORT_BATCH = 1000


class RowError(ValueError):
    """One row is refused; the message starts with the field: `recipient_name: longer than ...`."""


class FileRefused(ValueError):
    """The file cannot be read on from the line the message names; `report` (set by `import_rows`) holds
    what the batches before it imported."""


class ImportFailed(RuntimeError):
    """Checking a row failed in an unexpected way (a fault of dijlepost, not of the row): the import stops
    there, the batches before it stay imported (`report`). The message names the line and the kind of
    error, never the error's own text."""


@dataclass
class ImportReport:
    inserted: list[str] = field(default_factory=list)
    duplicates: list[tuple[int, str, bool]] = field(default_factory=list)  # line, letter_id, same content
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(same for _, _, same in self.duplicates)


# --------------------------------------------------------------------------- reading files


@dataclass(frozen=True)
class Unreadable:
    """A line that could not be parsed into a row; `reason` says why without quoting it."""

    reason: str


def read_rows(path: Path) -> Iterator[tuple[int, dict | Unreadable]]:
    """Yield (line number, raw row) from a .csv or .jsonl/.ndjson/.json file.

    Raises FileRefused for a file that cannot be read as a whole (type, encoding, header, no letters);
    a row that cannot be parsed is yielded as `Unreadable(why)` so that it is refused on its own."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = _read_csv
    elif suffix in (".jsonl", ".ndjson", ".json"):
        reader = _read_jsonl
    else:
        raise FileRefused(f"unsupported file type {suffix or '(none)'!r} (use .csv or .jsonl)")
    count = 0
    with path.open("rb") as fh:
        for item in reader(_utf8_lines(fh)):
            count += 1
            yield item
    if count == 0:
        raise FileRefused(
            "no letters in the file (it is empty)"
            if reader is _read_jsonl or path.stat().st_size == 0
            else "no letters in the file (only the header line)"
        )


def _utf8_lines(fh) -> Iterator[str]:
    """The file's lines as text, each decoded on its own so that a byte that is not UTF-8 is named by line."""
    for n, raw in enumerate(fh, start=1):
        if n == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
            raise FileRefused(
                f"line {n}: not UTF-8 (byte 0x{raw[exc.start]:02X} at column {column}); "
                "save the file as UTF-8 (Excel: 'CSV UTF-8')"
            ) from None


def _read_jsonl(lines: Iterable[str]) -> Iterator[tuple[int, dict | Unreadable]]:
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        if len(text) > MAX_LINE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
            yield n, Unreadable(f"line longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            obj = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except _NotFinite as exc:
            yield n, Unreadable(f"not valid JSON: {exc}")
            continue
        except json.JSONDecodeError as exc:
            yield n, Unreadable(f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError):  # e.g. an integer of more than 4300 digits, or nesting
            yield n, Unreadable("not valid JSON (a number too long or objects nested too deeply)")
            continue
        yield n, obj if isinstance(obj, dict) else Unreadable("a line must hold one JSON object")


class _NotFinite(ValueError):
    pass


def _refuse_constant(name: str):
    raise _NotFinite(f"{name} is not a number JSON allows")  # Python's json accepts NaN and Infinity


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite("a number too large for a float")
    return value


def _read_csv(lines: Iterator[str]) -> Iterator[tuple[int, dict | Unreadable]]:
    first = next(lines, None)
    if first is None:
        return
    delimiter = _delimiter(first)
    header = [name.strip() for name in next(csv.reader([first], delimiter=delimiter))]
    _check_header(header, delimiter)
    # csv.reader instead of DictReader: DictReader skips blank lines silently, so counting its rows gives
    # wrong line numbers; `line_num` before a record is where that record starts (plus the header line).
    old_limit = csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_FIELD))
    try:
        reader = csv.reader(lines, delimiter=delimiter)
        while True:
            start = reader.line_num + 2
            try:
                values = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                problem = (
                    f"a value longer than {MAX_CSV_FIELD} characters"
                    if "field limit" in str(exc)
                    else f"not valid CSV ({exc})"
                )
                yield start, Unreadable(problem)
                continue
            if not values:
                continue  # blank line
            if len(values) > len(header):
                yield (
                    start,
                    Unreadable(
                        f"{len(values) - len(header)} value(s) more than the header's "
                        f"{len(header)} columns (a {CSV_DELIMITERS[delimiter]} in an "
                        "unquoted value?)"
                    ),
                )
                continue
            row: dict = dict(zip(header, values))
            row.update(dict.fromkeys(header[len(values) :]))
            yield start, row
    finally:
        csv.field_size_limit(old_limit)


def _delimiter(first_line: str) -> str:
    """Comma-separated (RFC 4180), or semicolon-separated as Excel writes CSV in a Belgian locale."""
    best = max(CSV_DELIMITERS, key=lambda d: len(set(_split(first_line, d)) & set(FIELDS)))
    if not set(_split(first_line, best)) & set(FIELDS):
        raise FileRefused(
            "line 1: not a header line: the first line must name the columns, separated by "
            f"commas (or semicolons), e.g. {','.join(REQUIRED[:3])},..."
        )
    return best


def _split(line: str, delimiter: str) -> list[str]:
    try:
        return [v.strip() for v in next(csv.reader([line], delimiter=delimiter))]
    except (csv.Error, StopIteration):
        return []


def _check_header(header: list[str], delimiter: str) -> None:
    name = CSV_DELIMITERS[delimiter]
    if "" in header:
        raise FileRefused(
            f"line 1: column {header.index('') + 1} of the {name}-separated header has no name "
            f"(a {name} too many at the end?)"
        )
    unknown = [h for h in header if h not in FIELDS]
    if unknown:
        shown = ", ".join(repr(h) if _CODE_RE.fullmatch(h) else "(a name not shown)" for h in unknown[:5])
        raise FileRefused(
            f"line 1: unknown column(s) {shown} in the {name}-separated header; "
            f"the columns are {', '.join(FIELDS)}"
        )
    doubled = sorted({h for h in header if header.count(h) > 1})
    if doubled:
        raise FileRefused(f"line 1: column(s) {', '.join(doubled)} appear more than once in the header")
    missing = [f for f in REQUIRED if f not in header]
    if missing:
        raise FileRefused(
            f"line 1: the {name}-separated header lacks the required column(s) {', '.join(missing)}"
        )


# --------------------------------------------------------------------------- checking a row


_CODE_RE = re.compile(r"[a-z][a-z_]{0,31}")


def _shown(value) -> str:
    """A refused value is echoed only when it looks like a code (a typo such as 'fnance'); anything else may
    be a name or a number that slipped into the wrong column, and the message may end up in a log."""
    return repr(value) if isinstance(value, str) and _CODE_RE.fullmatch(value) else "a value not shown here"


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


def _text(row: Mapping, name: str, required: bool = True) -> str | None:
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
            value = json.loads(value, parse_constant=_refuse_constant, parse_float=_finite_float)
        except _NotFinite as exc:
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
            name = f"payload field {key!r}" if where == "payload" and _CODE_RE.fullmatch(key) else where
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
        shown = repr(key) if isinstance(key, str) and _CODE_RE.fullmatch(key) else "(a name not shown)"
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
    country = (_text(raw, "country", required=False) or "BE").upper()
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
        {v for v in _strings(personal) if len(v) >= 4 and not _CODE_RE.fullmatch(v)}, key=len, reverse=True
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


# --------------------------------------------------------------------------- importing


_COLUMNS = ("letter_id", *COMPARED)
_INSERT = (
    f"INSERT INTO letters ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * (len(_COLUMNS) - 1))}, "
    "%s::jsonb) ON CONFLICT (letter_id) DO NOTHING"
)


def import_rows(
    conn,
    rows: Iterable[tuple[int, Mapping | Unreadable]],
    ctx: RunContext | None = None,
    batch_size: int = IMPORT_BATCH,
) -> ImportReport:
    """Check the rows and insert the good ones, committing every `batch_size` checked rows, so memory
    stays flat whatever the file's size and a crash loses at most the batch being written.

    A rerun after a crash, or of the same file, finds the letters already in the outbox and reports them
    as duplicates (identical or not), so it imports exactly the rest. A row the database still refuses
    (a constraint added after this code, say) is refused by line with the field or constraint name; the
    database's own message, which may quote the row, is never passed on.

    FileRefused (from reading), ImportFailed and the renderer's TemplateError propagate; the batches
    before the one they interrupt stay committed, and the exception's `report` says what they imported."""
    from include.dijlepost.rendering.errors import TemplateError

    report = ImportReport()
    batch: dict[str, tuple[int, dict]] = {}
    try:
        for line_no, raw in rows:
            try:
                row = validate_row(raw)
            except RowError as exc:
                report.errors.append((line_no, str(exc)))
                continue
            except TemplateError:
                raise  # the templates cannot be loaded: no row can be checked
            except Exception as exc:
                raise ImportFailed(
                    f"line {line_no}: checking the row failed unexpectedly "
                    f"({type(exc).__name__}); please report it"
                ) from None
            if row["letter_id"] in batch:
                same = _same(batch[row["letter_id"]][1], row)
                report.duplicates.append((line_no, row["letter_id"], same))
                continue
            batch[row["letter_id"]] = (line_no, row)
            if len(batch) >= batch_size:
                _write_batch(conn, batch, ctx, report)
                batch = {}
        _write_batch(conn, batch, ctx, report)
    except (FileRefused, ImportFailed, TemplateError) as exc:
        conn.rollback()
        report.duplicates.sort()
        report.errors.sort()
        exc.report = report  # type: ignore[attr-defined]  # what the committed batches imported
        raise
    report.duplicates.sort()
    report.errors.sort()
    return report


def _write_batch(
    conn, batch: dict[str, tuple[int, dict]], ctx: RunContext | None, report: ImportReport
) -> None:
    """Insert one batch of checked rows in one transaction: those already in the outbox become duplicates,
    those the database refuses become errors, the rest are inserted with their `accepted` event."""
    if not batch:
        return
    clean = dict(batch)
    with conn.cursor() as cur:
        # Serialise imports: without it, two imports of the same file both see "not yet in the outbox", the
        # second INSERT silently does nothing (ON CONFLICT), yet both report and record the letters as accepted.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_IMPORT_LOCK_ID,))
        cur.execute(f"SELECT {', '.join(_COLUMNS)} FROM letters WHERE letter_id = ANY(%s)", (list(clean),))
        existing = {r[0]: dict(zip(_COLUMNS, r)) for r in cur.fetchall()}
        for letter_id, (line_no, row) in list(clean.items()):
            if letter_id in existing:
                report.duplicates.append((line_no, letter_id, _same(existing[letter_id], row)))
                del clean[letter_id]
        for letter_id, line_no, message in _insert(conn, cur, clean):
            report.errors.append((line_no, message))
            del clean[letter_id]
        record_events(
            cur,
            ctx or RunContext(task_id="letters_import"),
            (
                (lid, "accepted", {"department": r["department"], "letter_type": r["letter_type"]})
                for lid, (_, r) in clean.items()
            ),
        )
    conn.commit()
    report.inserted.extend(clean)


def _insert(conn, cur, clean: dict[str, tuple[int, dict]]) -> list[tuple[str, int, str]]:
    """Insert the rows; return (letter_id, line, refusal) of those the database refused. All rows go in one
    statement; only when the database refuses one are they tried one by one, each in a savepoint."""
    params = {
        lid: tuple(r["payload_json"] if c == "payload" else r[c] for c in _COLUMNS)
        for lid, (_, r) in clean.items()
    }
    try:
        with conn.transaction():
            cur.executemany(_INSERT, list(params.values()))
        return []
    except psycopg.Error as exc:
        if not is_row_error(exc):
            raise
    refused = []
    for lid, values in params.items():
        try:
            with conn.transaction():
                cur.execute(_INSERT, values)
        except psycopg.Error as exc:
            if not is_row_error(exc):
                raise
            refused.append((lid, clean[lid][0], describe_db_error(exc)))
    return refused


def import_file(conn, path: Path, ctx: RunContext | None = None) -> ImportReport:
    return import_rows(conn, read_rows(path), ctx)


def _same(a: Mapping, b: Mapping) -> bool:
    return all(a.get(k) == b.get(k) for k in COMPARED)
