"""Structured task-log lines (`include.dijlepost.logfmt`): one parseable line per fact."""

from __future__ import annotations

import json
import logging
import re

import pytest

from include.dijlepost import logfmt

TOKEN = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^\s]+)')


def parse(text: str) -> dict[str, str]:
    """A strict logfmt reader: a value is a JSON string if it starts with a quote, else up to whitespace."""
    out, pos = {}, 0
    for m in TOKEN.finditer(text):
        assert text[pos : m.start()].strip() == "", f"unparsed text {text[pos : m.start()]!r} in {text!r}"
        key, raw = m.groups()
        out[key] = json.loads(raw) if raw.startswith('"') else raw
        pos = m.end()
    assert text[pos:].strip() == "", f"unparsed tail {text[pos:]!r} in {text!r}"
    return out


def test_event_comes_first_and_plain_values_are_bare():
    assert (
        logfmt.line("letters_claimed", department="finance", letters=12, chunks=3)
        == "event=letters_claimed department=finance letters=12 chunks=3"
    )


def test_values_with_spaces_are_quoted():
    text = logfmt.line("wave_skipped", reason="rollout phase off")
    assert text == 'event=wave_skipped reason="rollout phase off"'
    assert parse(text)["reason"] == "rollout phase off"


@pytest.mark.parametrize(
    "value",
    [
        "a=b",
        "",
        "two  spaces",
        "tab\there",
        "new\nline",
        "carriage\rreturn",
        'quote"inside',
        '"leading quote',
        '"lead',
        "nul\x00",
        "trailing\\",
        "non\u00a0breaking",
        "ünïcödé",
        "x" * 300,
    ],
)
def test_every_string_round_trips_on_one_line(value):
    text = logfmt.line("x", value=value, after="tail")
    assert "\n" not in text and "\r" not in text
    parsed = parse(text)
    assert parsed == {"event": "x", "value": value, "after": "tail"}


def test_mappings_are_compact_sorted_json():
    text = logfmt.line("run_summary", by_status={"quarantined": 1, "delivered_ebox": 7})
    assert text == 'event=run_summary by_status={"delivered_ebox":7,"quarantined":1}'
    assert json.loads(parse(text)["by_status"]) == {"delivered_ebox": 7, "quarantined": 1}


def test_lists_are_json():
    assert logfmt.line("x", ids=["L-1", "L-2"]) == 'event=x ids=["L-1","L-2"]'


@pytest.mark.parametrize(
    "mapping",
    [
        {"reason": "recipient has no active eBox"},
        {"a b": 1},
        {"k": "line\nbreak"},
        {"nested": {"x": [1, "two words"]}},
    ],
)
def test_mappings_with_spaces_stay_one_parseable_value(mapping):
    text = logfmt.line("x", details=mapping, after="tail")
    assert "\n" not in text
    parsed = parse(text)
    assert parsed["after"] == "tail"
    value = parsed["details"]
    decoded = json.loads(value)
    if isinstance(decoded, str):  # a quoted mapping is JSON text inside a JSON string
        decoded = json.loads(decoded)
    assert decoded == mapping


def test_non_string_scalars_are_rendered_with_str():
    assert logfmt.line("x", n=None, ok=True, f=1.5) == "event=x n=None ok=True f=1.5"


def test_emit_logs_the_line_at_info(caplog):
    with caplog.at_level(logging.INFO, logger="dijlepost"):
        logfmt.emit("ebox_delivered", department="gas", published=3)
    assert [r.getMessage() for r in caplog.records] == ["event=ebox_delivered department=gas published=3"]
    assert caplog.records[0].levelno == logging.INFO


def test_emit_uses_the_given_logger(caplog):
    logger = logging.getLogger("dijlepost.test.other")
    with caplog.at_level(logging.INFO, logger="dijlepost.test.other"):
        logfmt.emit("x", logger=logger, a=1)
    assert caplog.records[0].name == "dijlepost.test.other"
