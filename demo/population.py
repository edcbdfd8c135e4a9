"""A synthetic but realistic Mechelen population for the demo and the benchmarks.

Every identifier is generated with a valid checksum (checked with python-stdnum) but belongs to
nobody; names and streets reflect the city's mix (Flemish, French- and German-speaking Belgians,
Moroccan, Turkish, Polish, Spanish and other residents) so that rendering meets real-world text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from stdnum.be import nn, vat

FIRST = {
    "nl": [
        "Jan",
        "Els",
        "Wouter",
        "An",
        "Pieter",
        "Lotte",
        "Bram",
        "Sofie",
        "Jef",
        "Marleen",
        "Lander",
        "Fien",
    ],
    "fr": ["Françoise", "Jérôme", "Anaïs", "Cédric", "Hélène", "Benoît", "Gaëlle", "François"],
    "de": ["Jürgen", "Günther", "Käthe", "Jörg", "Björn", "Maximilian"],
    "x": [
        "Mohamed",
        "Fatima",
        "Yasmina",
        "Ayşe",
        "Mehmet",
        "Łukasz",
        "Małgorzata",
        "Zofia",
        "José",
        "Nuñez",
        "Søren",
        "Ærøe",
        "Şükrü",
        "Gökhan",
        "Ödön",
        "Nguyễn",
        "Oleksandr",
        "Ioana",
    ],
}
LAST = {
    "nl": [
        "Peeters",
        "Janssens",
        "Maes",
        "Van den Broeck",
        "De Smedt",
        "Wouters",
        "Van Dessel",
        "Verbruggen",
        "Claes",
        "Goossens",
        "Van Roey",
        "Vermeulen",
    ],
    "fr": ["Dubois", "Lefèvre", "Lambert", "Dupont", "Mertens", "Gérard", "Renard"],
    "de": ["Müller", "Schröder", "Weiß", "Groß", "Kessler", "Bäcker"],
    "x": [
        "El Amrani",
        "Benali",
        "Yılmaz",
        "Şahin",
        "Öztürk",
        "Kowalski",
        "Wiśniewska",
        "Łukaszewicz",
        "García Núñez",
        "Ødegård",
        "Szőke",
        "Çelik",
        "Dvořák",
        "Nowak-Brzęczyszczykiewicz",
    ],
}
STREETS = [
    ("Bruul", "2800"),
    ("IJzerenleen", "2800"),
    ("Onze-Lieve-Vrouwestraat", "2800"),
    ("Befferstraat", "2800"),
    ("Hoogstraat", "2800"),
    ("Nekkerspoel", "2800"),
    ("Adegemstraat", "2800"),
    ("Keizerstraat", "2800"),
    ("Veemarkt", "2800"),
    ("Zandpoortvest", "2800"),
    ("Leuvensesteenweg", "2812"),
    ("Heffensesteenweg", "2801"),
    ("Hombeeksesteenweg", "2811"),
    ("Leestsesteenweg", "2811"),
    ("Liersesteenweg", "2800"),
    ("Tervuursesteenweg", "2800"),
    ("Koningin Astridlaan", "2800"),
    ("Guido Gezellelaan", "2800"),
    ("Battelsesteenweg", "2800"),
    ("Brusselsesteenweg", "2800"),
]
CITY_BY_POSTCODE = {"2800": "Mechelen", "2801": "Heffen", "2811": "Hombeek", "2812": "Muizen"}
FOREIGN = [
    ("Rue de la Loi", "1000", "Bruxelles", "BE"),
    ("Kerkstraat", "4811 ZX", "Breda", "NL"),
    ("Rue Nationale", "59000", "Lille", "FR"),
    ("Hauptstraße", "52062", "Aachen", "DE"),
]
COMPANY_WORDS = [
    "Dijle",
    "Sint-Rombouts",
    "Vijfhoek",
    "Malinwa",
    "Brouwerij",
    "Bakkerij",
    "Garage",
    "Atelier",
    "Keukens",
    "Bouw",
    "Schrijnwerkerij",
    "Handelshuis",
    "Boekhandel",
    "Apotheek",
]
COMPANY_FORMS = ["BV", "NV", "CV", "VZW", "SRL", "BVBA"]


def national_register_number(rng: random.Random) -> str:
    """A checksum-valid 11-digit national register number for a birth date in 1940-2006."""
    born = date(rng.randint(1940, 2006), rng.randint(1, 12), rng.randint(1, 28))
    base = f"{born:%y%m%d}{rng.randint(1, 997):03d}"
    check = 97 - int(("2" if born.year >= 2000 else "") + base) % 97
    value = f"{base}{check:02d}"
    assert nn.is_valid(value), value
    return value


def kbo_number(rng: random.Random) -> str:
    """A checksum-valid 10-digit KBO enterprise number."""
    first8 = f"{rng.choice('01')}{rng.randint(2000000, 9999999):07d}"
    value = f"{first8}{97 - int(first8) % 97:02d}"
    assert vat.is_valid(value), value
    return value


@dataclass(frozen=True)
class Recipient:
    kind: str
    recipient_id: str
    name: str
    street: str
    postal_code: str
    city: str
    country: str
    language: str


def make_recipient(rng: random.Random, kind: str | None = None) -> Recipient:
    kind = kind or ("enterprise" if rng.random() < 0.2 else "citizen")
    language = rng.choices(["nl", "fr", "de"], weights=[80, 15, 5])[0]
    if rng.random() < 0.05:
        street, postal_code, city, country = rng.choice(FOREIGN)
        street = f"{street} {rng.randint(1, 200)}"
    else:
        street_name, postal_code = rng.choice(STREETS)
        street, city, country = f"{street_name} {rng.randint(1, 180)}", CITY_BY_POSTCODE[postal_code], "BE"
        if rng.random() < 0.15:
            street += f" bus {rng.randint(1, 12)}"
    if kind == "enterprise":
        name = f"{rng.choice(COMPANY_WORDS)} {rng.choice(LAST['nl'] + LAST['x'])} {rng.choice(COMPANY_FORMS)}"
        return Recipient(kind, kbo_number(rng), name, street, postal_code, city, country, language)
    pool = rng.choice([language, language, "x"])
    name = f"{rng.choice(FIRST[pool])} {rng.choice(LAST[pool])}"
    return Recipient(kind, national_register_number(rng), name, street, postal_code, city, country, language)
