"""Print batches: the zip of PDFs plus manifest that the print house receives for one department and
postage class, and the zip's own checksum file.

A batch is identified by its department, postage class and exact set of letters, and its zip is
byte-for-byte reproducible from the same letters. A retry after a crash therefore rebuilds the very
file that may already sit at the print house, which is what lets the upload recognise it instead
of sending a second copy. No Airflow import: this runs in tasks and in plain tests alike.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from babel import Locale

POSTAGE_CLASSES = ("non_prior", "prior", "registered")
MAX_ADDRESS_LINES = 6
HOME_COUNTRY = "BE"

# Same rule as the outbox's CHECK constraint: safe as a file name inside the zip.
_LETTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DEPARTMENT = re.compile(r"^[a-z0-9][a-z0-9_]{0,39}$")
# Zip entries carry a DOS timestamp; a fixed one keeps the archive reproducible.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1024 * 1024
# Country names on envelopes are written in the language of the sending post office.
_DUTCH = Locale.parse("nl")
# CLDR also names groupings and placeholders (EU, UN, "unknown region", pseudo-locales): not countries.
_NOT_COUNTRIES = frozenset({"EU", "EZ", "QO", "UN", "XA", "XB", "ZZ"})
MANIFEST_NAME = "manifest.csv"
CHECKSUM_SUFFIX = ".sha256"
MANIFEST_COLUMNS = (
    "letter_id",
    "file_name",
    "sha256",
    "pages",
    "sheets",
    "postage_class",
    "registered",
    *(f"address_line_{i}" for i in range(1, MAX_ADDRESS_LINES + 1)),
    "country",
)


class BatchIntegrityError(RuntimeError):
    """A PDF on disk is not the one that was rendered for its letter."""


@dataclass(frozen=True)
class BatchLetter:
    letter_id: str
    pdf_path: Path
    pdf_sha256: str
    pages: int
    postage_class: str
    registered: bool
    address_lines: tuple[str, ...]
    country: str

    def __post_init__(self) -> None:
        if not _LETTER_ID.match(self.letter_id):
            raise ValueError(f"letter id {self.letter_id!r} is not a safe file name")
        if self.postage_class not in POSTAGE_CLASSES:
            raise ValueError(f"letter {self.letter_id}: unknown postage class {self.postage_class!r}")
        if self.registered != (self.postage_class == "registered"):
            raise ValueError(f"letter {self.letter_id}: registered flag and postage class disagree")
        if self.pages < 1:
            raise ValueError(f"letter {self.letter_id}: a PDF has at least one page")
        if not 1 <= len(self.address_lines) <= MAX_ADDRESS_LINES:
            raise ValueError(f"letter {self.letter_id}: 1 to {MAX_ADDRESS_LINES} address lines required")
        if not re.fullmatch(r"[0-9a-f]{64}", self.pdf_sha256):
            raise ValueError(f"letter {self.letter_id}: pdf_sha256 must be 64 lowercase hex digits")

    @property
    def file_name(self) -> str:
        return f"{self.letter_id}.pdf"

    @property
    def sheets(self) -> int:
        # Printed duplex: two pages per sheet.
        return math.ceil(self.pages / 2)


@dataclass(frozen=True)
class BuiltBatch:
    batch_id: str
    path: Path
    sha256: str
    size: int
    letter_count: int


def postage_class_for(registered: bool, default: str = "non_prior") -> str:
    """Registered letters go registered; everything else goes at the department's default class."""
    if default not in ("non_prior", "prior"):
        raise ValueError(f"default postage class must be 'non_prior' or 'prior', not {default!r}")
    return "registered" if registered else default


def address_lines(name: str, street: str, postal_code: str, city: str, country: str) -> tuple[str, ...]:
    """The address block as printed in the envelope window.

    `country` is an ISO 3166 alpha-2 code. Abroad, the last line is the country's name in capitals
    (in Dutch); for Belgium there is no country line.
    """
    code = country.strip().upper()
    lines = [name.strip(), street.strip(), f"{postal_code.strip()} {city.strip()}".strip()]
    if any(not line for line in lines):
        raise ValueError("name, street and postal code/city are all required on an address")
    if code != HOME_COUNTRY:
        country_name = _DUTCH.territories.get(code) if re.fullmatch(r"[A-Z]{2}", code) else None
        if country_name is None or code in _NOT_COUNTRIES:
            raise ValueError(f"unknown country code {country!r}")
        lines.append(country_name.upper())
    return tuple(lines)


def batch_id_for(department: str, postage_class: str, letter_ids: Iterable[str]) -> str:
    """A name that depends only on the department, postage class and the set of letters in it."""
    if not _DEPARTMENT.match(department):
        raise ValueError(f"department {department!r} is not a valid batch name part")
    if postage_class not in POSTAGE_CLASSES:
        raise ValueError(f"unknown postage class {postage_class!r}")
    ids = list(letter_ids)
    unique = sorted(set(ids))
    if not unique:
        raise ValueError("a batch needs at least one letter")
    if len(unique) != len(ids):
        raise ValueError("a letter id occurs twice in the batch")
    digest = hashlib.sha256("\n".join(unique).encode()).hexdigest()
    return f"{department}-{postage_class}-{digest[:16]}"


def build_batch_zip(batch_id: str, letters: Sequence[BatchLetter], work_dir: Path) -> BuiltBatch:
    """Write `<work_dir>/<batch_id>.zip` with every PDF and a manifest, atomically.

    Each PDF is streamed into the archive while its sha256 is checked against the one recorded at
    rendering; a mismatch aborts the batch. Entries are stored uncompressed (PDFs are compressed
    already) so that the bytes do not depend on the zlib version of whichever worker builds it.
    """
    if not letters:
        raise ValueError("a batch needs at least one letter")
    ordered = sorted(letters, key=lambda letter: letter.letter_id)
    ids = [letter.letter_id for letter in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError(f"batch {batch_id}: a letter id occurs twice")

    work_dir.mkdir(parents=True, exist_ok=True)
    final = work_dir / f"{batch_id}.zip"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{batch_id}.", suffix=".tmp", dir=work_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as out:
            with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
                for letter in ordered:
                    _add_pdf(zf, letter)
                zf.writestr(_entry(MANIFEST_NAME), _manifest(ordered))
            out.flush()
            os.fsync(out.fileno())
            out.seek(0)
            digest = hashlib.file_digest(out, "sha256").hexdigest()
            size = out.tell()
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(work_dir)
    return BuiltBatch(batch_id=batch_id, path=final, sha256=digest, size=size, letter_count=len(ordered))


def checksum_line(built: BuiltBatch) -> bytes:
    """`<sha256>  <batch_id>.zip`: the `sha256sum` format, so `sha256sum -c` checks the zip."""
    return f"{built.sha256}  {built.path.name}\n".encode("ascii")


def write_checksum_file(built: BuiltBatch) -> Path:
    """`<batch_id>.zip.sha256` next to the built zip, written atomically."""
    path = built.path.with_name(built.path.name + CHECKSUM_SUFFIX)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(checksum_line(built))
    os.replace(tmp, path)
    return path


def _entry(name: str, size: int = 0) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    info.create_system = 3  # unix, whatever the building host is
    info.file_size = size
    return info


def _add_pdf(zf: zipfile.ZipFile, letter: BatchLetter) -> None:
    digest = hashlib.sha256()
    with letter.pdf_path.open("rb") as pdf:
        size = os.fstat(pdf.fileno()).st_size
        # file_size up front lets zipfile decide on zip64 before writing, from the size alone.
        with zf.open(_entry(letter.file_name, size), "w") as entry:
            while chunk := pdf.read(_CHUNK):
                digest.update(chunk)
                entry.write(chunk)
    if digest.hexdigest() != letter.pdf_sha256:
        raise BatchIntegrityError(
            f"letter {letter.letter_id}: PDF sha256 {digest.hexdigest()} does not match the recorded "
            f"{letter.pdf_sha256}; the file changed after rendering"
        )


# A cell a spreadsheet would run as a formula starts with one of these (OWASP, "CSV Injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def manifest_cell(text: str) -> str:
    """A text cell of the manifest as data, never as a formula or a second line: line breaks and other
    control characters become a space (the import and the renderer refuse them in an address already;
    this holds for rows written before that), and a cell starting with `=`, `+`, `-`, `@`, TAB or CR
    gets a leading apostrophe, as OWASP advises, so that a spreadsheet shows it as text (also when
    spaces come first, which some spreadsheets skip)."""
    text = _BREAKS.sub(" ", text)
    return "'" + text if text.lstrip(" ").startswith(FORMULA_TRIGGERS) else text


def _manifest(letters: Sequence[BatchLetter]) -> bytes:
    """The manifest CSV: RFC 4180 quoting, one physical line per letter, every text cell from the
    letter's data through `manifest_cell`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(MANIFEST_COLUMNS)
    for letter in letters:
        lines = list(letter.address_lines) + [""] * (MAX_ADDRESS_LINES - len(letter.address_lines))
        writer.writerow(
            [
                letter.letter_id,
                letter.file_name,
                letter.pdf_sha256,
                letter.pages,
                letter.sheets,
                letter.postage_class,
                "true" if letter.registered else "false",
                *(manifest_cell(line) for line in lines),
                manifest_cell(letter.country),
            ]
        )
    return buf.getvalue().encode("utf-8")


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable, not only the file contents.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
