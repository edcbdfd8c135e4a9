"""Letters handed over by department systems: validation and idempotent insertion into the outbox.

`dijlepost letters import FILE` reads CSV or JSON Lines. Each row is validated on its own; a bad row
is refused with a message naming the line and field (never the personal value itself), a letter id
that is already in the outbox is reported as a duplicate and not inserted again, and the good rows
are inserted in one transaction.
"""
from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from babel import Locale
from stdnum.exceptions import ValidationError

from include.dijlepost.outbox import RunContext, record_events
from include.dijlepost.recipients import RECIPIENT_KINDS, InvalidRecipientId, normalize_recipient_id
from include.dijlepost.waves import LANGUAGES, WAVES

LETTER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
KNOWN_COUNTRIES = frozenset(code for code in Locale("nl").territories if COUNTRY_RE.match(code))
REQUIRED = ("letter_id", "department", "letter_type", "recipient_kind", "recipient_id", "recipient_name",
            "street", "postal_code", "city", "language")
TRUE, FALSE = {"true", "1", "yes", "ja", "oui", "t"}, {"false", "0", "no", "nee", "non", "f", ""}
COMPARED = ("department", "letter_type", "recipient_kind", "recipient_id", "recipient_name", "street",
            "postal_code", "city", "country", "language", "registered", "payload")


_IMPORT_LOCK_ID = 0x64696A69  # "diji": held by one import transaction at a time


class RowError(ValueError):
    pass


@dataclass
class ImportReport:
    inserted: list[str] = field(default_factory=list)
    duplicates: list[tuple[int, str, bool]] = field(default_factory=list)   # line, letter_id, same content
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(same for _, _, same in self.duplicates)


def read_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, raw row) from a .csv or .jsonl/.ndjson file."""
    suffix = path.suffix.lower()
    with path.open(encoding="utf-8-sig", newline="") as fh:
        if suffix == ".csv":
            # csv.reader instead of DictReader: DictReader skips blank lines silently, so counting its rows
            # gives wrong line numbers; `line_num` before a record is where that record starts.
            reader = csv.reader(fh)
            header = next(reader, None) or []
            while True:
                start = reader.line_num + 1
                try:
                    values = next(reader)
                except StopIteration:
                    break
                if not values:
                    continue  # blank line
                row: dict = dict(zip(header, values))
                if len(values) > len(header):
                    row[None] = values[len(header):]  # extra values, as DictReader's restkey
                row.update({name: None for name in header[len(values):]})
                yield start, row
        elif suffix in (".jsonl", ".ndjson", ".json"):
            for n, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield n, {"__error__": f"not valid JSON ({exc.msg} at column {exc.colno})"}
                    continue
                yield n, obj if isinstance(obj, dict) else {"__error__": "a line must hold one JSON object"}
        else:
            raise ValueError(f"{path.name}: unsupported file type {suffix!r} (use .csv or .jsonl)")


_CODE_RE = re.compile(r"[a-z][a-z_]{0,31}")


def _shown(value) -> str:
    """A refused value is echoed only when it looks like a code (a typo such as 'fnance'); anything else may
    be a name or a number that slipped into the wrong column, and the message may end up in a log."""
    return repr(value) if isinstance(value, str) and _CODE_RE.fullmatch(value) else "a value not shown here"


def validate_row(raw: dict) -> dict:
    """Return a clean letter row or raise RowError('field: why')."""
    if "__error__" in raw:
        raise RowError(raw["__error__"])
    row = {k: (v.strip() if isinstance(v, str) else v) for k, v in raw.items() if k is not None}
    for name in REQUIRED:
        if row.get(name) in (None, ""):
            raise RowError(f"{name}: missing")
    if not LETTER_ID_RE.match(str(row["letter_id"])):
        raise RowError("letter_id: must be 1-64 characters A-Z a-z 0-9 . _ - starting with a letter or digit")
    wave = WAVES.get(row["department"])
    if wave is None:
        raise RowError(f"department: unknown {_shown(row['department'])}; expected one of {', '.join(WAVES)}")
    if row["letter_type"] not in wave.letter_types:
        raise RowError(f"letter_type: {_shown(row['letter_type'])} is not a {wave.department} letter type "
                       f"({', '.join(wave.letter_types)})")
    if row["recipient_kind"] not in RECIPIENT_KINDS:
        raise RowError(f"recipient_kind: must be citizen or enterprise, not {_shown(row['recipient_kind'])}")
    try:
        recipient_id = normalize_recipient_id(row["recipient_kind"], str(row["recipient_id"]))
    except InvalidRecipientId as exc:
        raise RowError(f"recipient_id: {exc}") from None
    if row["language"] not in LANGUAGES:
        raise RowError(f"language: must be nl, fr or de, not {_shown(row['language'])}")
    country = (row.get("country") or "BE").upper()
    if not COUNTRY_RE.match(country) or country not in KNOWN_COUNTRIES:
        raise RowError("country: must be a two-letter ISO 3166 country code such as BE")
    if country == "BE" and not re.fullmatch(r"[1-9][0-9]{3}", str(row["postal_code"])):
        raise RowError("postal_code: a Belgian postal code has four digits")
    registered = row.get("registered", False)
    if isinstance(registered, str):
        if registered.lower() not in TRUE | FALSE:
            raise RowError("registered: must be true or false")
        registered = registered.lower() in TRUE
    elif not isinstance(registered, bool):
        raise RowError("registered: must be true or false")
    payload = row.get("payload") or {}
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError:
            raise RowError("payload: not valid JSON") from None
    if not isinstance(payload, dict):
        raise RowError("payload: must be a JSON object")
    return {
        "letter_id": str(row["letter_id"]), "department": wave.department, "letter_type": row["letter_type"],
        "recipient_kind": row["recipient_kind"], "recipient_id": recipient_id,
        "recipient_name": str(row["recipient_name"]), "street": str(row["street"]),
        "postal_code": str(row["postal_code"]), "city": str(row["city"]), "country": country,
        "language": row["language"], "registered": registered, "payload": payload,
    }


def import_rows(conn, rows: Iterable[tuple[int, dict]], ctx: RunContext | None = None) -> ImportReport:
    report = ImportReport()
    clean: dict[str, tuple[int, dict]] = {}
    for line_no, raw in rows:
        try:
            row = validate_row(raw)
        except (RowError, ValidationError) as exc:
            report.errors.append((line_no, str(exc)))
            continue
        if row["letter_id"] in clean:
            same = _same(clean[row["letter_id"]][1], row)
            report.duplicates.append((line_no, row["letter_id"], same))
            continue
        clean[row["letter_id"]] = (line_no, row)
    if not clean:
        return report
    with conn.cursor() as cur:
        # Serialise imports: without it, two imports of the same file both see "not yet in the outbox", the
        # second INSERT silently does nothing (ON CONFLICT), yet both report and record the letters as accepted.
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_IMPORT_LOCK_ID,))
        cur.execute(f"SELECT {', '.join(('letter_id',) + COMPARED)} FROM letters WHERE letter_id = ANY(%s)",
                    (list(clean),))
        existing = {r[0]: dict(zip(("letter_id",) + COMPARED, r)) for r in cur.fetchall()}
        for letter_id, (line_no, row) in list(clean.items()):
            if letter_id in existing:
                report.duplicates.append((line_no, letter_id, _same(existing[letter_id], row)))
                del clean[letter_id]
        cols = ("letter_id",) + COMPARED
        cur.executemany(
            f"INSERT INTO letters ({', '.join(cols)}) VALUES ({', '.join(['%s'] * (len(cols) - 1))}, %s::jsonb) "
            "ON CONFLICT (letter_id) DO NOTHING",
            [tuple(json.dumps(r["payload"]) if c == "payload" else r[c] for c in cols) for _, r in clean.values()],
        )
        record_events(cur, ctx or RunContext(task_id="letters_import"),
                      ((lid, "accepted", {"department": r["department"], "letter_type": r["letter_type"]})
                       for lid, (_, r) in clean.items()))
    conn.commit()
    report.inserted = list(clean)
    report.duplicates.sort()
    return report


def import_file(conn, path: Path, ctx: RunContext | None = None) -> ImportReport:
    return import_rows(conn, read_rows(path), ctx)


def _same(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in COMPARED)
