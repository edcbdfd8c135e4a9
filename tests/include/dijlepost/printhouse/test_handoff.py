"""Batch planning (print day from the daily cut-off, limits in letters and megabytes) and the batch's
checksum file. Pure functions: no database, no server."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from include.dijlepost.printhouse.batch import BuiltBatch, checksum_line, write_checksum_file
from include.dijlepost.printhouse.handoff import (
    MIB,
    PER_LETTER_OVERHEAD,
    PlannedLetter,
    parse_cutoff,
    plan_batches,
    print_day,
)

UTC = UTC


@pytest.mark.parametrize(
    "value, expected", [("15:00", time(15, 0)), ("00:05", time(0, 5)), ("23:59", time(23, 59))]
)
def test_parse_cutoff(value, expected):
    assert parse_cutoff(value) == expected


@pytest.mark.parametrize("value", ["15", "24:00", "7:30", "15:60", "", "15:00:00", "noon"])
def test_parse_cutoff_refuses_anything_else(value):
    with pytest.raises(ValueError, match="HH:MM"):
        parse_cutoff(value)


def test_print_day_uses_brussels_time_across_daylight_saving():
    cutoff = time(15, 0)
    # Winter (UTC+1): 13:59 UTC is 14:59 in Brussels, 14:00 UTC is 15:00.
    assert print_day(datetime(2026, 1, 12, 13, 59, tzinfo=UTC), cutoff) == date(2026, 1, 12)
    assert print_day(datetime(2026, 1, 12, 14, 0, tzinfo=UTC), cutoff) == date(2026, 1, 13)
    # Summer (UTC+2): 12:59 UTC is 14:59, 13:00 UTC is 15:00.
    assert print_day(datetime(2026, 7, 6, 12, 59, tzinfo=UTC), cutoff) == date(2026, 7, 6)
    assert print_day(datetime(2026, 7, 6, 13, 0, tzinfo=UTC), cutoff) == date(2026, 7, 7)
    # 23:30 UTC on 31 December is already 1 January in Brussels, before the cut-off.
    assert print_day(datetime(2026, 12, 31, 23, 30, tzinfo=UTC), cutoff) == date(2027, 1, 1)
    with pytest.raises(ValueError):
        print_day(datetime(2026, 1, 12, 10, 0), cutoff)  # noqa: DTZ001 - a naive time is what is refused


def letters(n, day=date(2026, 3, 2), postage="non_prior", size=10_000, prefix="L"):
    return [PlannedLetter(f"{prefix}{i:04d}", postage, day, size) for i in range(n)]


def test_batches_by_print_day_and_postage_class_within_the_letter_limit():
    planned = (
        letters(5)
        + letters(3, postage="registered", prefix="R")
        + letters(4, day=date(2026, 3, 3), prefix="T")
    )
    batches = plan_batches("finance", planned, max_letters=2, max_bytes=MIB * 100)
    shape = [(b.print_day, b.postage_class, len(b.letter_ids)) for b in batches]
    assert shape == [
        (date(2026, 3, 2), "non_prior", 2),
        (date(2026, 3, 2), "non_prior", 2),
        (date(2026, 3, 2), "non_prior", 1),
        (date(2026, 3, 2), "registered", 2),
        (date(2026, 3, 2), "registered", 1),
        (date(2026, 3, 3), "non_prior", 2),
        (date(2026, 3, 3), "non_prior", 2),
    ]
    every = [lid for b in batches for lid in b.letter_ids]
    assert sorted(every) == sorted(l.letter_id for l in planned)  # each letter exactly once
    assert len({b.batch_id for b in batches}) == len(batches)


def test_batches_cut_by_megabytes():
    planned = letters(10, size=300 * 1024)  # ~0.3 MB each
    batches = plan_batches("gas", planned, max_letters=1000, max_bytes=1 * MIB)
    assert [len(b.letter_ids) for b in batches] == [3, 3, 3, 1]
    assert all(b.estimated_bytes <= MIB for b in batches)
    assert batches[0].estimated_bytes == 3 * (300 * 1024 + PER_LETTER_OVERHEAD)


def test_a_letter_larger_than_the_limit_gets_a_batch_of_its_own():
    planned = letters(1, size=5 * MIB, prefix="BIG") + letters(2, size=1000)
    batches = plan_batches("gas", planned, max_letters=1000, max_bytes=MIB)
    assert [b.letter_ids for b in batches] == [("BIG0000",), ("L0000", "L0001")]


def test_plan_is_stable_whatever_the_input_order():
    planned = letters(7, size=200 * 1024)
    a = plan_batches("finance", planned, 3, MIB)
    b = plan_batches("finance", list(reversed(planned)), 3, MIB)
    assert [x.batch_id for x in a] == [x.batch_id for x in b]
    with pytest.raises(ValueError):
        plan_batches("finance", planned, 0, MIB)


def test_checksum_file_is_in_sha256sum_format(tmp_path: Path):
    zip_path = tmp_path / "finance-prior-0123456789abcdef.zip"
    zip_path.write_bytes(b"zip bytes")
    digest = hashlib.sha256(b"zip bytes").hexdigest()
    built = BuiltBatch("finance-prior-0123456789abcdef", zip_path, digest, 9, 1)
    assert checksum_line(built) == f"{digest}  finance-prior-0123456789abcdef.zip\n".encode()
    path = write_checksum_file(built)
    assert path.name == "finance-prior-0123456789abcdef.zip.sha256"
    assert path.read_bytes() == checksum_line(built)
