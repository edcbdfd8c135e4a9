"""Tariffs (`include.dijlepost.tariffs`): what a paper letter costs, from defaults or the environment."""

from __future__ import annotations

from decimal import Decimal

import pytest

from include.dijlepost.tariffs import DEFAULT_SOURCE, TariffError, Tariffs


def test_defaults_are_documented_and_used_without_environment():
    t = Tariffs.from_env({})
    assert t == Tariffs()
    assert t.source == DEFAULT_SOURCE and "not contract prices" in t.source
    assert t.ebox == Decimal("0.00")


def test_paper_cost_adds_postage_registered_surcharge_and_printing_per_page():
    t = Tariffs(
        postage=Decimal("1.00"),
        registered_surcharge=Decimal("5.00"),
        print_per_letter=Decimal("0.20"),
        print_per_extra_page=Decimal("0.10"),
        print_per_extra_sheet=Decimal("0.05"),
    )
    assert t.paper_cost(1) == Decimal("1.20")
    assert t.paper_cost(3) == Decimal("1.45")  # 2 extra pages, 2 sheets duplex: 1 extra sheet
    assert t.paper_cost(None) == Decimal("1.20")  # not rendered yet: one page
    assert t.paper_cost(2, registered=True) == Decimal("6.30")  # 2 pages on one sheet
    assert t.saving(2, registered=True) == Decimal("6.30")


@pytest.mark.parametrize(
    "pages, sheets", [(None, 1), (0, 1), (1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (12, 6)]
)
def test_letters_are_printed_duplex_two_pages_a_sheet(pages, sheets):
    assert Tariffs.sheets_for(pages) == sheets


def test_printing_counts_each_extra_page_and_each_extra_sheet():
    t = Tariffs(
        print_per_letter=Decimal("0.20"),
        print_per_extra_page=Decimal("0.06"),
        print_per_extra_sheet=Decimal("0.02"),
    )
    assert [t.printing_for(p) for p in (1, 2, 3, 4, 5)] == [
        Decimal("0.20"),
        Decimal("0.26"),
        Decimal("0.34"),
        Decimal("0.40"),
        Decimal("0.48"),
    ]
    sheet = Tariffs.from_env({"DIJLEPOST_TARIFF_PRINT_PER_EXTRA_SHEET_EUR": "0.10"})
    assert sheet.print_per_extra_sheet == Decimal("0.10")
    assert "DIJLEPOST_TARIFF_PRINT_PER_EXTRA_SHEET_EUR" in sheet.source


def test_environment_overrides_and_names_its_source():
    t = Tariffs.from_env(
        {"DIJLEPOST_TARIFF_POSTAGE_EUR": " 0.95 ", "DIJLEPOST_TARIFF_PRINT_PER_LETTER_EUR": "0.18"}
    )
    assert (t.postage, t.print_per_letter, t.registered_surcharge) == (
        Decimal("0.95"),
        Decimal("0.18"),
        Tariffs().registered_surcharge,
    )
    assert "DIJLEPOST_TARIFF_POSTAGE_EUR" in t.source and "DIJLEPOST_TARIFF_PRINT_PER_LETTER_EUR" in t.source
    named = Tariffs.from_env(
        {"DIJLEPOST_TARIFF_POSTAGE_EUR": "0.95", "DIJLEPOST_TARIFF_SOURCE": "bpost contract 2026"}
    )
    assert named.source == "bpost contract 2026"


@pytest.mark.parametrize(
    "value", ["free", "-0.10", "NaN", "Infinity", "1,10", "１.10", "1_0", "1e3", "+1", ".5", "1234567.00"]
)
def test_a_bad_amount_is_a_clear_error(value):
    with pytest.raises(TariffError, match="DIJLEPOST_TARIFF_POSTAGE_EUR"):
        Tariffs.from_env({"DIJLEPOST_TARIFF_POSTAGE_EUR": value})
