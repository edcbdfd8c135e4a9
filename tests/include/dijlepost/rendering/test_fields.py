"""Payload field kinds: what is accepted, what is refused with which message, how it is printed."""

from datetime import date, time
from decimal import Decimal

import pytest

from include.dijlepost.rendering import LetterDataError
from include.dijlepost.rendering.fields import (
    NARROW_NBSP,
    NBSP,
    clean_text,
    format_amount,
    format_date,
    format_ogm,
    format_time,
    parse,
    parse_choice,
)


@pytest.mark.parametrize(
    "day, nl, fr, de",
    [
        (date(2026, 3, 1), "1 maart 2026", "1er mars 2026", "1. März 2026"),
        (date(2026, 2, 28), "28 februari 2026", "28 février 2026", "28. Februar 2026"),
        (date(2026, 8, 15), "15 augustus 2026", "15 août 2026", "15. August 2026"),
        (date(2026, 12, 2), "2 december 2026", "2 décembre 2026", "2. Dezember 2026"),
    ],
)
def test_dates_are_written_in_the_letters_language(day, nl, fr, de):
    assert (format_date(day, "nl"), format_date(day, "fr"), format_date(day, "de")) == (nl, fr, de)


@pytest.mark.parametrize(
    "amount, nl, fr",
    [
        ("125.50", "125,50", "125,50"),
        ("0.05", "0,05", "0,05"),
        ("1250.5", "1.250,50", f"1{NARROW_NBSP}250,50"),
        ("1234567.89", "1.234.567,89", f"1{NARROW_NBSP}234{NARROW_NBSP}567,89"),
    ],
)
def test_amounts_are_written_in_the_letters_language(amount, nl, fr):
    value = Decimal(amount)
    assert format_amount(value, "nl") == f"{nl}{NBSP}EUR"
    assert format_amount(value, "de") == f"{nl}{NBSP}EUR"
    assert format_amount(value, "fr") == f"{fr}{NBSP}EUR"


def test_times_are_written_in_the_letters_language():
    assert format_time(time(9, 5), "nl") == f"9.05{NBSP}uur"
    assert format_time(time(14, 30), "fr") == f"14{NBSP}h{NBSP}30"
    assert format_time(time(14, 30), "de") == f"14:30{NBSP}Uhr"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("125.50", Decimal("125.50")),
        ("125.5", Decimal("125.50")),
        ("7", Decimal("7.00")),
        (12, Decimal("12.00")),
        (Decimal("3.1"), Decimal("3.10")),
        (" 99.99 ", Decimal("99.99")),
    ],
)
def test_amounts_are_parsed_as_decimals(raw, expected):
    value = parse("amount", raw, "amount_due")
    assert value == expected and isinstance(value, Decimal)
    assert value.as_tuple().exponent == -2


@pytest.mark.parametrize(
    "raw, words",
    [
        (125.5, "not a float"),
        ("125,50", "a point before the cents"),
        ("125.505", "at most two decimals"),
        ("-5.00", "not negative"),
        (Decimal("-5"), "non-negative"),
        (Decimal("1.234"), "at most two decimals"),
        (Decimal("NaN"), "non-negative"),
        ("1e3", "a point before the cents"),
        ("", "a point before the cents"),
        (True, "a point before the cents"),
        ("1000000000.00", "a point before the cents"),
        # digits other than ASCII, which Decimal() would read: Arabic-Indic, fullwidth, Devanagari
        ("\u0661\u0662.\u0665\u0660", "a point before the cents"),
        ("\uff11\uff12.\uff15\uff10", "a point before the cents"),
        ("\u0967\u0968", "a point before the cents"),
        ("1\u034f2.50", "a point before the cents"),
    ],
)
def test_malformed_amounts_are_refused_naming_the_field(raw, words):
    with pytest.raises(LetterDataError) as caught:
        parse("amount", raw, "amount_due")
    assert "'amount_due'" in str(caught.value) and words in str(caught.value)


def test_dates_must_be_iso():
    assert parse("date", "2026-03-01", "due_date") == date(2026, 3, 1)
    for raw in ("01/03/2026", "2026-02-30", "20260301", 20260301):
        with pytest.raises(LetterDataError, match="'due_date' must be a date written YYYY-MM-DD"):
            parse("date", raw, "due_date")


def test_iban_is_checked_and_printed_in_groups():
    assert parse("iban", "be68 5390 0754 7034", "iban").formatted == "BE68 5390 0754 7034"
    with pytest.raises(LetterDataError, match="'iban' is not a valid IBAN"):
        parse("iban", "BE68 5390 0754 7035", "iban")
    with pytest.raises(LetterDataError, match="'iban' is not a valid IBAN"):
        parse("iban", "NL00 BANK 0123", "iban")


def test_structured_communication_is_checked_with_its_check_digits():
    assert parse("ogm", "+++010/8068/17183+++", "ogm") == "010806817183"
    assert parse("ogm", "010806817183", "ogm") == "010806817183"
    assert format_ogm("010806817183") == "+++010/8068/17183+++"
    for wrong in ("+++010/8068/17180+++", "+++010/8068/1718+++", "abc", "000000000000"):
        with pytest.raises(LetterDataError, match="'ogm' is not a valid structured communication"):
            parse("ogm", wrong, "ogm")


def test_times_integers_and_choices():
    assert parse("time", "09:30", "inspection_time") == time(9, 30)
    assert parse("integer", "2026", "tax_year") == 2026
    assert parse_choice("vacancy", "tax", {"vacancy", "second_home"}) == "vacancy"
    with pytest.raises(LetterDataError, match="'inspection_time' must be a time of day written HH:MM"):
        parse("time", "9u30", "inspection_time")
    with pytest.raises(LetterDataError, match="'tax_year' must be a whole number"):
        parse("integer", "2026.5", "tax_year")
    with pytest.raises(LetterDataError, match="'tax' must be one of second_home, vacancy"):
        parse_choice("dog", "tax", {"vacancy", "second_home"})


def test_text_is_normalised_to_composed_characters_and_single_spaces():
    assert clean_text("Mu\u0308ller \n  Jo\u0308rg\t") == "Müller Jörg"
    assert parse("text", 12345, "invoice_number") == "12345"
    with pytest.raises(LetterDataError, match="'invoice_number' must be text"):
        parse("text", ["x"], "invoice_number")


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        ("integer", "\u0662\u0660\u0662\u0666"),
        ("integer", "\uff12\uff10\uff12\uff16"),
        ("date", "\u0662\u0660\u0662\u0666-03-01"),
        ("time", "\uff10\uff19:30"),
    ],
)
def test_numbers_dates_and_times_take_ascii_digits_only(kind, raw):
    with pytest.raises(LetterDataError, match="'f'"):
        parse(kind, raw, "f")
