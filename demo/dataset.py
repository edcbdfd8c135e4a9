"""The demo (and benchmark) data set: letters over the three departments plus the world around them
(who has an active eBox, who never opened it, who keeps paper, who is in a pilot).

Deterministic for a given seed. A few letters are wrong on purpose, the way real source data is:
an id with a bad checksum written straight into the outbox table, a payload missing a field, and a
file of rows that `letters import` must refuse.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date

from demo.population import Recipient, make_recipient
from demo.sample_payloads import sample_payload
from include.dijlepost import clock
from include.dijlepost.waves import WAVES

DEFAULT_MIX = {"finance": 320, "gas": 160, "economy_housing": 120}


@dataclass
class DemoDataset:
    letters: list[dict] = field(default_factory=list)  # valid rows for `letters import`
    direct_rows: list[dict] = field(default_factory=list)  # written straight into the table
    refused_rows: list[dict] = field(default_factory=list)  # rows `letters import` must refuse
    ebox_active: dict[tuple[str, str], bool] = field(default_factory=dict)  # (kind, id) -> exclusively
    no_digital_user: set[tuple[str, str]] = field(default_factory=set)
    paper_exempt: set[tuple[str, str]] = field(default_factory=set)
    pilot: set[tuple[str, str]] = field(default_factory=set)


def _row(
    letter_id: str, department: str, letter_type: str, r: Recipient, registered: bool, payload: dict
) -> dict:
    return {
        "letter_id": letter_id,
        "department": department,
        "letter_type": letter_type,
        "recipient_kind": r.kind,
        "recipient_id": r.recipient_id,
        "recipient_name": r.name,
        "street": r.street,
        "postal_code": r.postal_code,
        "city": r.city,
        "country": r.country,
        "language": r.language,
        "registered": registered,
        "payload": payload,
    }


def build(
    seed: int = 2800,
    mix: dict[str, int] | None = None,
    today: date | None = None,
    prefix: str = "DEMO",
    ebox_share: float = 0.55,
    mistakes: bool = True,
) -> DemoDataset:
    rng = random.Random(seed)
    today = today or clock.today()
    mix = mix or DEFAULT_MIX
    total = sum(mix.values())
    # People receive several letters over the departments, as in a real city.
    people = [make_recipient(rng) for _ in range(max(10, int(total * 0.7)))]
    ds = DemoDataset()
    for p in people:
        if rng.random() < ebox_share:
            ds.ebox_active[(p.kind, p.recipient_id)] = rng.random() < 0.1
    active = list(ds.ebox_active)
    ds.no_digital_user = set(rng.sample(active, k=min(len(active), max(1, total // 120))))
    ds.paper_exempt = set(rng.sample(active, k=min(len(active), max(1, total // 100))))
    ds.pilot = set(rng.sample(active, k=min(len(active), max(2, len(active) // 4))))

    n = 0
    for department, count in mix.items():
        wave = WAVES[department]
        for _ in range(count):
            n += 1
            letter_type = rng.choice(wave.letter_types)
            r = rng.choice(people)
            registered = department == "gas" and letter_type == "gas_decision"
            payload = sample_payload(letter_type, rng, today)
            ds.letters.append(
                _row(
                    f"{prefix}-{department[:3].upper()}-{n:06d}",
                    department,
                    letter_type,
                    r,
                    registered,
                    payload,
                )
            )
    if mistakes:
        _add_mistakes(ds, rng, prefix, today)
    return ds


def _add_mistakes(ds: DemoDataset, rng: random.Random, prefix: str, today: date) -> None:
    # A source system that writes into the outbox table directly, with a mistyped national number.
    for i in range(3):
        base = dict(rng.choice([l for l in ds.letters if l["recipient_kind"] == "citizen"]))
        rid = base["recipient_id"]
        base.update(
            letter_id=f"{prefix}-BADID-{i + 1}", recipient_id=rid[:-2] + f"{(int(rid[-2:]) + 1) % 100:02d}"
        )
        ds.direct_rows.append(base)
    # Letters whose payload lacks a field the template needs: quarantined at rendering, with the field.
    from include.dijlepost.rendering import LetterRenderer

    renderer = LetterRenderer()
    for i in range(2):
        base = dict(rng.choice(ds.letters))
        payload = dict(base["payload"])
        payload.pop(rng.choice(renderer.required_fields(base["letter_type"])))
        base.update(letter_id=f"{prefix}-NOFIELD-{i + 1}", payload=payload)
        ds.direct_rows.append(base)
    # Rows that `letters import` refuses, each with its own reason.
    good = ds.letters[0]
    ds.refused_rows = [
        {**good, "letter_id": f"{prefix}-REFUSED-1", "recipient_id": "12345678901"},
        {**good, "letter_id": f"{prefix}-REFUSED-2", "department": "parking"},
        {**good, "letter_id": f"{prefix}-REFUSED-3", "postal_code": "28000"},
        {**good, "letter_id": f"{prefix}-REFUSED-4", "language": "en"},
    ]
