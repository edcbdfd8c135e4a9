"""What a paper letter costs the city, and so what a letter sent to the eBox saves.

One module for every figure in euro, so the rollout page's shadow report and the evaluation count
the same way. The defaults are *planning estimates*, not contract prices: replace them with the
figures of the city's bpost and print-house contracts through the environment variables below (or by
passing a `Tariffs` explicitly). Sources of the defaults:

- postage: bpost's published 2025-2026 tariff for a standard national non-prior letter up to 50 g,
  bought in bulk as franked administrative mail, rounded to EUR 1.10 (the single-stamp price is
  higher; contract prices for presorted mail are lower, so this is a middle estimate);
- registered letter surcharge: bpost registered-letter option on top of postage, EUR 6.00 estimate;
- printing, enveloping and handling by the print house: EUR 0.20 per letter (first sheet, C5/DL window
  envelope, inserting) plus EUR 0.06 per additional printed page, typical for municipal print-and-mail
  contracts of this size (an estimate);
- paper: letters are printed duplex, so a letter of `pages` pages takes `ceil(pages / 2)` sheets (as in
  the print-house manifest); each sheet after the first costs EUR 0.02 (A4 80 g paper and inserting,
  an estimate);
- eBox: free of charge for Belgian public authorities (the federal eBox is provided by BOSA/FOD BOSA).

Override with DIJLEPOST_TARIFF_POSTAGE_EUR, DIJLEPOST_TARIFF_REGISTERED_SURCHARGE_EUR,
DIJLEPOST_TARIFF_PRINT_PER_LETTER_EUR, DIJLEPOST_TARIFF_PRINT_PER_EXTRA_PAGE_EUR,
DIJLEPOST_TARIFF_PRINT_PER_EXTRA_SHEET_EUR, DIJLEPOST_TARIFF_SOURCE.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from decimal import Decimal

DEFAULT_SOURCE = "planning estimates in include/dijlepost/tariffs.py (not contract prices)"

_ENV = {
    "postage": "DIJLEPOST_TARIFF_POSTAGE_EUR",
    "registered_surcharge": "DIJLEPOST_TARIFF_REGISTERED_SURCHARGE_EUR",
    "print_per_letter": "DIJLEPOST_TARIFF_PRINT_PER_LETTER_EUR",
    "print_per_extra_page": "DIJLEPOST_TARIFF_PRINT_PER_EXTRA_PAGE_EUR",
    "print_per_extra_sheet": "DIJLEPOST_TARIFF_PRINT_PER_EXTRA_SHEET_EUR",
}


_AMOUNT = re.compile(r"[0-9]{1,6}(\.[0-9]{1,4})?")


class TariffError(ValueError):
    pass


@dataclass(frozen=True)
class Tariffs:
    postage: Decimal = Decimal("1.10")
    registered_surcharge: Decimal = Decimal("6.00")
    print_per_letter: Decimal = Decimal("0.20")
    print_per_extra_page: Decimal = Decimal("0.06")
    print_per_extra_sheet: Decimal = Decimal("0.02")
    ebox: Decimal = Decimal("0.00")
    source: str = DEFAULT_SOURCE

    def postage_for(self, registered: bool = False) -> Decimal:
        return self.postage + (self.registered_surcharge if registered else Decimal("0"))

    @staticmethod
    def sheets_for(pages: int | None = 1) -> int:
        """Sheets of a letter printed duplex (a letter not rendered yet counts as one page)."""
        return math.ceil(max(int(pages or 1), 1) / 2)

    def printing_for(self, pages: int | None = 1) -> Decimal:
        """Printing, paper and enveloping of one letter of `pages` pages."""
        pages = max(int(pages or 1), 1)
        return (
            self.print_per_letter
            + self.print_per_extra_page * (pages - 1)
            + self.print_per_extra_sheet * (self.sheets_for(pages) - 1)
        )

    def paper_cost(self, pages: int | None = 1, registered: bool = False) -> Decimal:
        """Postage plus printing of one paper letter."""
        return self.postage_for(registered) + self.printing_for(pages)

    def saving(self, pages: int | None = 1, registered: bool = False) -> Decimal:
        """What one letter saves by going to the eBox instead of on paper."""
        return self.paper_cost(pages, registered) - self.ebox

    @classmethod
    def from_env(cls, environ=None) -> Tariffs:
        environ = os.environ if environ is None else environ
        values: dict = {}
        for name, var in _ENV.items():
            raw = environ.get(var)
            if raw is None or raw.strip() == "":
                continue
            if not _AMOUNT.fullmatch(raw.strip()):  # Decimal() would also read "１.10" or "1_0"
                raise TariffError(
                    f"{var}={raw[:40]!r} is not a non-negative amount in euro in digits 0-9 (e.g. 1.10)"
                )
            values[name] = Decimal(raw.strip())
        if values:
            values["source"] = (
                environ.get("DIJLEPOST_TARIFF_SOURCE")
                or "environment ("
                + ", ".join(_ENV[n] for n in values)
                + "); other figures: "
                + DEFAULT_SOURCE
            )
        return cls(**values)
