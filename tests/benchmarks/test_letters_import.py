"""The import benchmark's file: the asked number of letters, each id once, every row one the import takes."""

from __future__ import annotations

import json

from benchmarks.letters_import import write_file
from include.dijlepost.intake import validate_row


def test_the_file_holds_n_distinct_valid_letters(tmp_path):
    path = tmp_path / "f.jsonl"
    write_file(path, 7)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 7 and len({r["letter_id"] for r in rows}) == 7
    assert {r["department"] for r in rows} <= {"finance", "gas", "economy_housing"}
    for r in rows[:3]:
        assert validate_row(r)["letter_id"] == r["letter_id"]
