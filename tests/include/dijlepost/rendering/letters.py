"""Shared by the rendering tests: one renderer for the whole session and letter rows to feed it."""

from __future__ import annotations

import functools
import random
from datetime import UTC, date, datetime

from demo.sample_payloads import sample_payload
from include.dijlepost.rendering import LetterRenderer
from include.dijlepost.waves import ALL_LETTER_TYPES

TODAY = date(2026, 3, 1)


@functools.cache
def renderer() -> LetterRenderer:
    """Loading templates and preparing fonts takes a moment; every test shares this one."""
    return LetterRenderer(today=TODAY)


def make_letter(letter_type: str = "invoice", language: str = "nl", *, seed: int = 1, **overrides) -> dict:
    """A valid outbox row with a realistic payload; keyword arguments replace any column."""
    letter = {
        "letter_id": f"TEST-{letter_type}-{language}-{seed}",
        "department": ALL_LETTER_TYPES[letter_type],
        "letter_type": letter_type,
        "recipient_kind": "citizen",
        "recipient_id": "85073003328",
        "recipient_name": "Łukasz Şahin-Öztürk",
        "street": "Bruul 12 bus 3",
        "postal_code": "2800",
        "city": "Mechelen",
        "country": "BE",
        "language": language,
        "registered": False,
        "payload": sample_payload(letter_type, random.Random(seed), TODAY),
        "created_at": datetime(2026, 2, 28, 17, 5, tzinfo=UTC),
    }
    letter.update(overrides)
    return letter


def with_payload(letter: dict, **changes) -> dict:
    """The letter with payload fields replaced (a value of None removes the field)."""
    payload = {**letter["payload"], **changes}
    return {**letter, "payload": {k: v for k, v in payload.items() if v is not None}}
