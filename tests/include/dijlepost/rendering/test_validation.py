"""validate_letter: the render stage's checks without drawing, for `letters import`; the deadline and
the linear word wrap that keep one absurd field from stalling a chunk."""

import re
import time

import pytest

from include.dijlepost.rendering import (
    LetterDataError,
    RenderTimeout,
    TemplateFieldMissing,
    layout,
    validate_letter,
)
from include.dijlepost.rendering import fonts as fonts_module
from include.dijlepost.rendering.fonts import REGULAR, LetterFonts
from include.dijlepost.settings import TEMPLATES_DIR
from include.dijlepost.waves import ALL_LETTER_TYPES, LANGUAGES

from .letters import make_letter, renderer, with_payload

FONTS = LetterFonts(TEMPLATES_DIR / "fonts")


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("letter_type", sorted(ALL_LETTER_TYPES))
def test_a_letter_that_renders_validates(letter_type, language):
    letter = make_letter(letter_type, language)
    assert validate_letter(letter, renderer=renderer()) is None
    assert validate_letter(letter) is None  # the process's own renderer over the shipped templates


BAD_ROWS = [
    ({"letter_type": "parking_fine"}, "unknown letter type"),
    ({"postal_code": "28000"}, "a Belgian postal_code is four digits"),
    (
        {"recipient_name": "Jan\u202eesneeP"},
        (
            "letter field 'recipient_name' contains an invisible formatting "
            "character, U+202E (RIGHT-TO-LEFT OVERRIDE)"
        ),
    ),
    (
        {"street": "Bruul\u2066 12"},
        "letter field 'street' contains an invisible formatting character, U+2066",
    ),
    ({"city": "Meche\u200blen"}, "letter field 'city' contains an invisible formatting character, U+200B"),
    ({"recipient_name": "Jan Pee\u00adters"}, "U+00AD (SOFT HYPHEN)"),
    ({"recipient_name": "x" * 201}, "letter field 'recipient_name' is longer than 200 characters"),
    ({"street": "y" * 10_000_000}, "letter field 'street' is longer than 200 characters"),
    (
        {"recipient_name": " ".join(["Wolfeschlegelsteinhausenbergerdorff"] * 5)},
        "too long to fit in the envelope window",
    ),
    # A word no break point can split is not cut between characters in an address: refused.
    (
        {"street": "Wolfeschlegelsteinhausenbergerdorffvoralternwarengewissenhaft 1"},
        "letter field 'street' holds a word too long to fit in the envelope window",
    ),
    (
        {"recipient_name": "Wolfeschlegelsteinhausenbergerdorffvoralternwarengewissenhaft"},
        "letter field 'recipient_name' holds a word too long to fit in the envelope window",
    ),
]

# Characters that break an address line or hide in it: each refused in each address field, by name.
HIDDEN = [
    ("\n", "a line break, U+000A"),
    ("\r", "a line break, U+000D"),
    ("\r\n", "a line break, U+000D"),
    ("\x85", "a line break, U+0085"),
    ("\u2028", "a line break, U+2028 (LINE SEPARATOR)"),
    ("\u2029", "a line break, U+2029 (PARAGRAPH SEPARATOR)"),
    ("\x0b", "a line break, U+000B"),
    ("\t", "a control or invisible character, U+0009"),
    ("\x1b", "a control or invisible character, U+001B"),
    ("\x7f", "a control or invisible character, U+007F"),
    ("\u034f", "a control or invisible character, U+034F (COMBINING GRAPHEME JOINER)"),
    ("\u3164", "a control or invisible character, U+3164 (HANGUL FILLER)"),
    ("\ufe0f", "a control or invisible character, U+FE0F (VARIATION SELECTOR-16)"),
    ("\ue000", "a control or invisible character, U+E000"),
    ("\u0378", "a control or invisible character, U+0378"),  # unassigned
    ("\u200b", "an invisible formatting character, U+200B (ZERO WIDTH SPACE)"),
]


@pytest.mark.parametrize("field", ["recipient_name", "street", "postal_code", "city"])
@pytest.mark.parametrize("char, words", HIDDEN, ids=[repr(c) for c, _ in HIDDEN])
def test_an_address_field_refuses_line_breaks_controls_and_invisible_characters_by_name(field, char, words):
    value = {"recipient_name": "Jan Peeters", "street": "Bruul 1", "postal_code": "2800", "city": "Mechelen"}
    letter = {**make_letter("invoice"), field: value[field][:2] + char + value[field][2:]}
    expected = f"letter field {field!r} contains {words}"
    with pytest.raises(LetterDataError, match=re.escape(expected)) as validated:
        validate_letter(letter, renderer=renderer())
    with pytest.raises(LetterDataError) as rendered:
        renderer().render(letter)
    assert str(validated.value) == str(rendered.value) and "which is not allowed in an address" in str(
        rendered.value
    )


def test_ordinary_addresses_with_accents_and_spaces_still_render():
    letter = {
        **make_letter("invoice"),
        "recipient_name": "Zoë D'Hondt-Ötzürk",
        "street": "Rue de l'Étoile 5\u00a0bte 2",
        "city": "Liège",
    }
    assert validate_letter(letter, renderer=renderer()) is None


@pytest.mark.parametrize("change, words", BAD_ROWS)
def test_validate_refuses_what_render_refuses_with_the_same_reason(change, words):
    letter = {**make_letter("invoice"), **change}
    with pytest.raises(LetterDataError, match=re.escape(words)) as validated:
        validate_letter(letter, renderer=renderer())
    with pytest.raises(LetterDataError) as rendered:
        renderer().render(letter)
    assert str(validated.value) == str(rendered.value)
    assert "Jan" not in str(validated.value) and "Bruul" not in str(validated.value)  # no value echoed


@pytest.mark.parametrize(
    "letter_type, field, value, words",
    [
        ("gas_finding", "max_fine", "0.00", "payload field 'max_fine' must be above 0.00 EUR"),
        ("premium_decision", "premium_amount", "0", "payload field 'premium_amount' must be above 0.00 EUR"),
        ("reminder", "original_amount", "0.00", "payload field 'original_amount' must be above 0.00 EUR"),
        ("invoice", "amount_due", "0.00", "payload field 'amount_due' must be above 0.00 EUR"),
        (
            "inspection_notice",
            "inspector_name",
            "Sofie\u2069 Wouters",
            "payload field 'inspector_name' contains an invisible formatting character, U+2069",
        ),
        (
            "premium_decision",
            "property_address",
            "Bruul 1\ufeff",
            "payload field 'property_address' contains an invisible formatting character, U+FEFF",
        ),
        ("invoice", "service_detail", "z" * 20_000_000, "payload field 'service_detail' is longer than 4000"),
    ],
)
def test_payload_values_that_mean_nothing_are_refused(letter_type, field, value, words):
    letter = with_payload(make_letter(letter_type), **{field: value})
    with pytest.raises(LetterDataError, match=re.escape(words)):
        validate_letter(letter, renderer=renderer())
    with pytest.raises(LetterDataError, match=re.escape(words)):
        renderer().render(letter)


def test_every_bidirectional_control_is_refused():
    for code in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]:
        letter = make_letter("reminder", recipient_name=f"Jan {chr(code)}Peeters")
        with pytest.raises(LetterDataError, match=f"U\\+{code:04X}"):
            validate_letter(letter, renderer=renderer())


def test_a_missing_field_is_the_same_error_class():
    letter = with_payload(make_letter("invoice"), ogm=None)
    with pytest.raises(TemplateFieldMissing):
        validate_letter(letter, renderer=renderer())


def test_a_layout_past_its_deadline_raises_render_timeout_a_letter_data_error():
    letter = make_letter("gas_decision", "fr")
    past = time.monotonic() - 1
    for check in (
        lambda: renderer().render(letter, deadline=past),
        lambda: validate_letter(letter, renderer=renderer(), deadline=past),
    ):
        with pytest.raises(RenderTimeout) as caught:
            check()
        assert isinstance(caught.value, LetterDataError)
        assert "could not be laid out within the render deadline" in str(caught.value)
    later = time.monotonic() + 60
    assert renderer().render(letter, deadline=later).pages >= 1


def test_the_deadline_is_checked_inside_the_wrap_loop(monkeypatch):
    """A clock that passes the deadline after a few looks stops the wrap of one long text part-way."""
    looks = iter(range(10**9))
    monkeypatch.setattr(layout.time, "monotonic", lambda: next(looks))
    text = " ".join(["woord"] * 100_000)
    with pytest.raises(RenderTimeout):
        layout.wrap(FONTS, text, REGULAR, 10, 170, deadline=5)
    assert next(looks) < 20  # it stopped after a handful of looks, not at the end


class _CountingFonts:
    """The letter fonts, counting how many characters the layout measures."""

    def __init__(self):
        self.measured = 0
        self.calls = 0
        self.wrapped = {}

    def width(self, text, style, size_pt):
        self.measured += len(text)
        self.calls += 1
        return FONTS.width(text, style, size_pt)

    def keep_wrapped(self, key, lines):
        self.wrapped[key] = lines


def _work_to_wrap(text: str) -> tuple[int, int]:
    fonts = _CountingFonts()
    lines = layout.wrap(fonts, text, REGULAR, 10, 170)
    assert "".join(lines) == text.replace(" ", "")
    return fonts.measured, fonts.calls


@pytest.mark.parametrize("word", ["x", "ab-", "a.b@c"])
def test_wrapping_a_huge_word_is_linear_in_its_length(word):
    """A 256k-character word without spaces: every character is measured at most twice, and twice the
    length is twice the work (the old cutter re-measured the rest of the word after every line)."""
    small, large = (word * (n // len(word)) for n in (128 * 1024, 256 * 1024))
    small_work, small_calls = _work_to_wrap(small)
    large_work, large_calls = _work_to_wrap(large)
    assert large_work <= 2 * len(large) + 10
    assert large_work / small_work == pytest.approx(2, rel=0.01)
    assert large_calls / small_calls == pytest.approx(2, rel=0.01)


def test_a_text_wrapped_again_is_not_measured_again(monkeypatch):
    """The same text at the same size and width (a template's text in every letter) is measured once;
    another width is wrapped anew; the kept texts are bounded."""
    fonts = _CountingFonts()
    text = "Wij danken u voor uw betaling binnen dertig dagen na de datum van deze brief. " * 3
    first = layout.wrap(fonts, text, REGULAR, 10, 170)
    measured = fonts.measured
    again = layout.wrap(fonts, text, REGULAR, 10, 170)
    assert again == first and again is not first and fonts.measured == measured
    narrower = layout.wrap(fonts, text, REGULAR, 10, 90)
    assert len(narrower) > len(first) and fonts.measured > measured
    monkeypatch.setattr(fonts_module, "WRAPPED_CACHE_SIZE", 3)
    own = LetterFonts(TEMPLATES_DIR / "fonts")
    for width in range(100, 110):
        layout.wrap(own, text, REGULAR, 10, width)
    assert 0 < len(own.wrapped) <= 3


def test_a_huge_field_is_refused_before_any_layout():
    fonts = renderer()._fonts
    calls = []
    original = fonts.width
    fonts.width = lambda *args: calls.append(1) or original(*args)
    try:
        with pytest.raises(LetterDataError, match="longer than 200 characters"):
            renderer().render(make_letter("invoice", recipient_name="n" * 10_000_000))
    finally:
        del fonts.width
    assert not calls


@pytest.mark.parametrize(
    "letter, words",
    [
        (None, "a letter is a mapping of its columns, not NoneType"),
        (["invoice"], "a letter is a mapping of its columns, not list"),
        (
            {**make_letter("invoice"), "letter_type": ["Jan Peeters"]},
            "unknown letter type a value of type list",
        ),
        ({**make_letter("invoice"), "language": "Jan Peeters"}, "got a value of type str"),
        ({**make_letter("invoice"), "department": {"name": "Jan"}}, "not a value of type dict"),
        (
            {**make_letter("invoice"), "postal_code": 2800.0},
            "letter field 'postal_code' must be text, got float",
        ),
        ({**make_letter("invoice"), "street": ["Bruul 12"]}, "letter field 'street' must be text, got list"),
    ],
)
def test_rows_of_the_wrong_shape_are_refused_without_echoing_them(letter, words):
    with pytest.raises(LetterDataError, match=re.escape(words)) as caught:
        validate_letter(letter, renderer=renderer())
    assert "Jan" not in str(caught.value) and "Bruul" not in str(caught.value)


def test_a_reminder_whose_total_is_not_the_sum_of_its_parts_is_refused():
    letter = with_payload(
        make_letter("reminder", "nl"), original_amount="100.00", reminder_costs="10.00", amount_due="110.00"
    )
    assert validate_letter(letter, renderer=renderer()) is None
    with pytest.raises(
        LetterDataError,
        match=re.escape("payload field 'amount_due' must be the sum of original_amount + reminder_costs"),
    ):
        validate_letter(with_payload(letter, amount_due="100.00"), renderer=renderer())


def test_validation_checks_the_qr_code_without_building_it(monkeypatch):
    """A payment letter's QR code is checked by its version alone; its modules are built only when the
    letter is drawn."""
    from include.dijlepost.rendering import payment

    letter = make_letter("invoice", "nl")
    built = []
    encode = payment._message_bits  # the data and error correction codewords of the code drawn
    monkeypatch.setattr(payment, "_message_bits", lambda *a, **k: built.append(1) or encode(*a, **k))
    validate_letter(letter, renderer=renderer())
    assert built == []
    renderer().render(letter)
    assert built == [1]


def test_a_qr_code_above_the_maximum_version_is_refused_by_validation(monkeypatch):
    from include.dijlepost.rendering import blocks, payment

    monkeypatch.setattr(blocks, "check_epc_qr_fits", lambda p: payment.check_epc_qr_fits(p, version=14))
    with pytest.raises(LetterDataError, match="the EPC QR code needs version 14, above the maximum 13"):
        validate_letter(make_letter("invoice", "nl"), renderer=renderer())
