"""Reading a department system's file: CSV or JSON Lines into (line number, raw row), streamed, a line
that cannot be parsed as an `Unreadable` with the reason, a file that cannot be read as `FileRefused`."""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from include.dijlepost.intake.contract import (
    CODE_RE,
    CSV_DELIMITERS,
    FIELDS,
    MAX_CSV_FIELD,
    MAX_LINE_BYTES,
    REQUIRED,
    FileRefused,
    NotFinite,
    strict_json,
)


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
            obj = strict_json(text)
        except NotFinite as exc:
            yield n, Unreadable(f"not valid JSON: {exc}")
            continue
        except json.JSONDecodeError as exc:
            yield n, Unreadable(f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except (ValueError, RecursionError):  # e.g. an integer of more than 4300 digits, or nesting
            yield n, Unreadable("not valid JSON (a number too long or objects nested too deeply)")
            continue
        yield n, obj if isinstance(obj, dict) else Unreadable("a line must hold one JSON object")


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
        shown = ", ".join(repr(h) if CODE_RE.fullmatch(h) else "(a name not shown)" for h in unknown[:5])
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
