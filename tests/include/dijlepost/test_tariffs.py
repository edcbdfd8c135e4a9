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
    )
    assert t.paper_cost(1) == Decimal("1.20")
    assert t.paper_cost(3) == Decimal("1.40")
    assert t.paper_cost(None) == Decimal("1.20")  # not rendered yet: one page
    assert t.paper_cost(2, registered=True) == Decimal("6.30")
    assert t.saving(2, registered=True) == Decimal("6.30")


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


@pytest.mark.parametrize("value", ["free", "-0.10", "NaN", "Infinity", "1,10"])
def test_a_bad_amount_is_a_clear_error(value):
    with pytest.raises(TariffError, match="DIJLEPOST_TARIFF_POSTAGE_EUR"):
        Tariffs.from_env({"DIJLEPOST_TARIFF_POSTAGE_EUR": value})
