"""The demo's sample payloads: valid for their template, JSON-ready, deterministic."""

import json
import random
import re
from datetime import date
from decimal import Decimal

import pytest

from demo.sample_payloads import sample_payload
from include.dijlepost.rendering.templates import load_templates
from include.dijlepost.settings import TEMPLATES_DIR
from include.dijlepost.waves import ALL_LETTER_TYPES
from tests.include.dijlepost.rendering.letters import TODAY, make_letter, renderer

AMOUNT_RE = re.compile(r"^\d+\.\d\d$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@pytest.mark.parametrize("letter_type", sorted(ALL_LETTER_TYPES))
def test_sample_payloads_fit_their_template(letter_type):
    template = load_templates(TEMPLATES_DIR).templates[letter_type]
    kinds = {name: spec.kind for name, spec in template.fields.items()}
    for seed in range(40):
        payload = sample_payload(letter_type, random.Random(seed), TODAY)
        assert set(payload) == set(renderer().required_fields(letter_type))  # itemised lines are optional
        assert json.loads(json.dumps(payload)) == payload
        for name, kind in kinds.items():
            if kind == "amount":
                assert AMOUNT_RE.match(payload[name]), (name, payload[name])
            if kind == "date":
                assert DATE_RE.match(payload[name]), (name, payload[name])
        renderer().subject(make_letter(letter_type, payload=payload))  # checks every field


def test_sample_payloads_are_deterministic_and_varied():
    first = [sample_payload("invoice", random.Random(7), TODAY) for _ in range(2)]
    assert first[0] == first[1]
    rng = random.Random(7)
    assert len({json.dumps(sample_payload("invoice", rng, TODAY)) for _ in range(20)}) == 20


def test_a_reminder_adds_its_costs_to_the_open_amount():
    for seed in range(20):
        p = sample_payload("reminder", random.Random(seed), TODAY)
        assert Decimal(p["amount_due"]) == Decimal(p["original_amount"]) + Decimal(p["reminder_costs"])
        assert p["original_due_date"] < TODAY.isoformat() < p["due_date"]


def test_an_inspection_falls_on_a_weekday_after_today():
    for seed in range(20):
        p = sample_payload("inspection_notice", random.Random(seed), TODAY)
        day = date.fromisoformat(p["inspection_date"])
        assert day > TODAY and day.weekday() < 5 and p["reschedule_deadline"] < p["inspection_date"]


def test_unknown_letter_type():
    with pytest.raises(ValueError, match="no sample payload for letter type 'parking'"):
        sample_payload("parking", random.Random(1), TODAY)
