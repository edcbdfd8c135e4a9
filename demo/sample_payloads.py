"""Realistic payloads for every letter type, so the demo, the benchmarks and the tests can seed letters.

`sample_payload(letter_type, rng, today)` returns what the department's source system would put in the
outbox row's `payload` column: JSON-ready (amounts as strings like "125.50", dates as ISO strings),
valid for the template of that type (check digits of structured communications and IBANs included)
and deterministic for a seeded `rng`. Coded fields (the tax, the offence, ...) carry codes from the
template's choices, so the letter reads in one language whatever the recipient's.
"""

from __future__ import annotations

import calendar
import random
from datetime import date, timedelta
from decimal import Decimal

from schwifty import IBAN

from include.dijlepost.rendering.fields import format_ogm
from include.dijlepost.rendering.payment import make_ogm

# Streets of Mechelen (postal code 2800) for places and properties named in letters.
STREETS = (
    "Bruul",
    "IJzerenleen",
    "Onze-Lieve-Vrouwestraat",
    "Befferstraat",
    "Hoogstraat",
    "Keizerstraat",
    "Katelijnestraat",
    "Hanswijkstraat",
    "Begijnenstraat",
    "Schaalstraat",
    "Adegemstraat",
    "Frederik de Merodestraat",
    "Leopoldstraat",
    "Nekkerspoel",
    "Liersesteenweg",
    "Battelsesteenweg",
)
SQUARES = (
    "Grote Markt",
    "Vismarkt",
    "Veemarkt",
    "Kardinaal Mercierplein",
    "Haverwerf",
    "Zoutwerf",
    "Botanique",
    "Vijfhoek",
)
HALLS = ("Zaal Lamot", "Zaal De Garage", "Feestzaal Hof van Busleyden", "Zaal Nekkerspoel")
INSPECTORS = (
    "Sofie Wouters",
    "Pieter Claes",
    "Nadia El Khattabi",
    "Bram Verbruggen",
    "Ilse Goossens",
    "Kenan Yıldız",
    "Hanne Van Roey",
)
# Bank codes of Belgian banks (BNP Paribas Fortis, KBC, ING, Belfius, Argenta, Crelan, bpost bank).
BANK_CODES = ("001", "230", "734", "363", "310", "068", "973", "103", "000")

_INVOICE_PRICES = {
    "hall_rental": (150, 900),
    "bulky_waste": (25, 75),
    "parking_permit": (30, 60),
    "public_domain": (40, 400),
    "event_support": (50, 450),
}
_TAX_AMOUNTS = {
    "second_home": (450, 750),
    "vacancy": (1000, 4000),
    "neglect": (1500, 3500),
    "advertising": (60, 600),
    "business_premises": (200, 2500),
}
# The article of the general police regulation and the usual fine per GAS offence (max 350 EUR).
_OFFENCES = {
    "littering": ("14", 150),
    "dumping": ("15", 350),
    "noise": ("47", 100),
    "urinating": ("30", 150),
    "graffiti": ("22", 250),
    "waste_out_early": ("16", 80),
}
_PREMIUMS = {
    "roof_insulation": (400, 1500),
    "facade_renovation": (1000, 5000),
    "shopfront": (1500, 7500),
    "starter": (2500, 5000),
    "green_roof": (500, 2000),
}
_TIMES = ("09:00", "09:30", "10:00", "10:30", "11:00", "13:30", "14:00", "14:30", "15:00", "15:30")


def sample_payload(letter_type: str, rng: random.Random, today: date) -> dict:
    try:
        make = _MAKERS[letter_type]
    except KeyError:
        raise ValueError(f"no sample payload for letter type {letter_type!r}") from None
    return make(rng, today)


def _invoice(rng: random.Random, today: date) -> dict:
    invoice_date = today - timedelta(days=rng.randint(0, 4))
    service = rng.choice(sorted(_INVOICE_PRICES))
    return {
        "invoice_number": f"{invoice_date.year}/FA/{rng.randint(1, 99999):05d}",
        "invoice_date": invoice_date.isoformat(),
        "service": service,
        "service_detail": _service_detail(service, rng, today),
        "amount_due": _amount(rng, *_INVOICE_PRICES[service]),
        "due_date": (invoice_date + timedelta(days=30)).isoformat(),
        "ogm": _ogm(rng),
    }


def _reminder(rng: random.Random, today: date) -> dict:
    invoice_date = today - timedelta(days=rng.randint(45, 100))
    original = Decimal(_amount(rng, 25, 900))
    costs = Decimal(rng.choice(("7.50", "10.00", "15.00")))
    return {
        "invoice_number": f"{invoice_date.year}/FA/{rng.randint(1, 99999):05d}",
        "invoice_date": invoice_date.isoformat(),
        "original_due_date": (invoice_date + timedelta(days=30)).isoformat(),
        "original_amount": str(original),
        "reminder_costs": str(costs),
        "amount_due": str(original + costs),
        "due_date": (today + timedelta(days=15)).isoformat(),
        "ogm": _ogm(rng),
    }


def _tax_assessment(rng: random.Random, today: date) -> dict:
    tax = rng.choice(sorted(_TAX_AMOUNTS))
    return {
        "tax": tax,
        "tax_year": today.year if today.month > 3 else today.year - 1,
        "assessment_number": str(rng.randint(1, 24000)),
        "tax_object": f"{rng.choice(STREETS)} {rng.randint(1, 180)}, 2800 Mechelen",
        "roll_date": (today - timedelta(days=rng.randint(3, 10))).isoformat(),
        "amount_due": _amount(rng, *_TAX_AMOUNTS[tax], cents=False),
        "due_date": _months_later(today, 2).isoformat(),
        "ogm": _ogm(rng),
    }


def _gas_finding(rng: random.Random, today: date) -> dict:
    offence = rng.choice(sorted(_OFFENCES))
    return {
        "finding_number": f"GAS/{today.year}/{rng.randint(1, 9999):05d}",
        "offence": offence,
        "offence_date": (today - timedelta(days=rng.randint(7, 40))).isoformat(),
        "offence_time": f"{rng.randint(0, 23):02d}:{rng.choice((0, 10, 15, 25, 30, 40, 45, 55)):02d}",
        "offence_location": _place(rng),
        "regulation_article": _OFFENCES[offence][0],
        "max_fine": "350.00",
        "defence_deadline": (today + timedelta(days=30)).isoformat(),
    }


def _gas_decision(rng: random.Random, today: date) -> dict:
    offence = rng.choice(sorted(_OFFENCES))
    number = rng.randint(1, 9999)
    return {
        "decision_number": f"GAS/B/{today.year}/{number:05d}",
        "finding_number": f"GAS/{today.year}/{number:05d}",
        "offence": offence,
        "offence_date": (today - timedelta(days=rng.randint(40, 120))).isoformat(),
        "offence_location": _place(rng),
        "regulation_article": _OFFENCES[offence][0],
        "amount_due": f"{_OFFENCES[offence][1]}.00",
        # Enforceable after the one-month appeal term, then one month to pay.
        "due_date": _months_later(today, 2).isoformat(),
        "ogm": _ogm(rng),
    }


def _premium_decision(rng: random.Random, today: date) -> dict:
    premium = rng.choice(sorted(_PREMIUMS))
    decision_date = today - timedelta(days=rng.randint(3, 10))
    return {
        "premium": premium,
        "application_number": f"EW/{today.year}/{rng.randint(1, 9999):05d}",
        "application_date": (decision_date - timedelta(days=rng.randint(30, 120))).isoformat(),
        "property_address": f"{rng.choice(STREETS)} {rng.randint(1, 180)}, 2800 Mechelen",
        "decision_date": decision_date.isoformat(),
        "premium_amount": _amount(rng, *_PREMIUMS[premium], cents=False),
        "iban": _belgian_iban(rng),
        "payment_date": (today + timedelta(days=30)).isoformat(),
    }


def _inspection_notice(rng: random.Random, today: date) -> dict:
    inspection_date = today + timedelta(days=rng.randint(14, 28))
    while inspection_date.weekday() >= 5:
        inspection_date += timedelta(days=1)
    return {
        "inspection": rng.choice(("housing_quality", "vacancy", "business_premises")),
        "case_number": f"EW/C/{today.year}/{rng.randint(1, 9999):05d}",
        "property_address": f"{rng.choice(STREETS)} {rng.randint(1, 180)}, 2800 Mechelen",
        "inspection_date": inspection_date.isoformat(),
        "inspection_time": rng.choice(_TIMES),
        "inspector_name": rng.choice(INSPECTORS),
        "reschedule_deadline": (inspection_date - timedelta(days=5)).isoformat(),
    }


_MAKERS = {
    "invoice": _invoice,
    "reminder": _reminder,
    "tax_assessment": _tax_assessment,
    "gas_finding": _gas_finding,
    "gas_decision": _gas_decision,
    "premium_decision": _premium_decision,
    "inspection_notice": _inspection_notice,
}


def _service_detail(service: str, rng: random.Random, today: date) -> str:
    day = today + timedelta(days=rng.randint(7, 60))
    if service == "hall_rental":
        return f"{rng.choice(HALLS)}, {day:%d/%m/%Y}"
    if service == "parking_permit":
        return f"1-{''.join(rng.choice('ABCDEFGHJKLMNPRSTVWXYZ') for _ in range(3))}-{rng.randint(100, 999)}"
    if service == "bulky_waste":
        return f"{rng.randint(1, 4)} m³, {day:%d/%m/%Y}"
    return f"{rng.choice(STREETS)} {rng.randint(1, 180)}, {day:%d/%m/%Y}"


def _place(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(SQUARES)
    return f"{rng.choice(STREETS)} {rng.randint(1, 180)}"


def _amount(rng: random.Random, low: int, high: int, cents: bool = True) -> str:
    value = Decimal(rng.randint(low * 100, high * 100)) / 100
    if not cents:
        value = value.to_integral_value()
    return str(value.quantize(Decimal("0.01")))


def _ogm(rng: random.Random) -> str:
    return format_ogm(make_ogm(rng.randint(1, 10**10 - 1)))


def _belgian_iban(rng: random.Random) -> str:
    account = f"{rng.randint(0, 9999999):07d}"
    return str(IBAN.generate("BE", bank_code=rng.choice(BANK_CODES), account_code=account))


def _months_later(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))
