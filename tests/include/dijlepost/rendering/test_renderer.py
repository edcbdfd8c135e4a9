"""Rendering letter rows to PDF, checked by reading the PDF back (pdfread.py)."""

import hashlib
import re
from decimal import Decimal

import numpy as np
import pytest

from include.dijlepost import clock
from include.dijlepost.rendering import LetterDataError, LetterRenderer, TemplateFieldMissing
from include.dijlepost.rendering.drawing import qr_rectangles
from include.dijlepost.rendering.fields import format_date
from include.dijlepost.rendering.fonts import LetterFonts
from include.dijlepost.rendering.layout import FOOTER_RULE, Box, TextOp, address_box, ink_box
from include.dijlepost.rendering.payment import epc_payload, epc_qr_matrix
from include.dijlepost.rendering.renderer import QR_QUIET_ZONE, QR_SIZE
from include.dijlepost.rendering.templates import load_templates
from include.dijlepost.settings import TEMPLATES_DIR
from include.dijlepost.waves import ALL_LETTER_TYPES, LANGUAGES

from .letters import TODAY, make_letter, renderer, with_payload
from .pdfread import read_pdf

TEMPLATES = load_templates(TEMPLATES_DIR)
WINDOW = TEMPLATES.envelope.always_visible  # the part of the sheet always in the window
REACH = TEMPLATES.envelope.ever_visible  # the part that can come into the window
LABELS = TEMPLATES.labels
FONTS = LetterFonts(TEMPLATES_DIR / "fonts")
PAYMENT_TYPES = {"invoice", "reminder", "tax_assessment", "gas_decision"}


def _ink(run) -> Box:
    """Where a text run's glyphs can reach, from the PDF's own position, font and size (F2 is bold)."""
    return ink_box(FONTS, TextOp(run.x, run.y, run.text, "B" if run.font == "F2" else "", run.size))


def _overlaps(a: Box, b: Box) -> bool:
    return a.left < b.right and b.left < a.right and a.top < b.bottom and b.top < a.bottom


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("letter_type", sorted(ALL_LETTER_TYPES))
def test_every_letter_type_renders_a_complete_pdf_in_every_language(letter_type, language):
    letter = make_letter(letter_type, language)
    doc = renderer().render(letter)
    pdf = read_pdf(doc.pdf)
    texts = TEMPLATES.templates[letter_type].texts[language]

    assert doc.sha256 == hashlib.sha256(doc.pdf).hexdigest()
    assert len(pdf.pages) == doc.pages >= 1
    text = pdf.text
    for expected in (
        "Łukasz Şahin-Öztürk",
        "Bruul 12 bus 3",
        "2800 Mechelen",
        letter["letter_id"],
        format_date(TODAY, language),
        doc.subject,
        LABELS[language]["salutation"],
    ):
        assert expected in text
    for number, page in enumerate(pdf.pages, start=1):
        assert page.runs[-1].text == f"{LABELS[language]['page']} {number}/{doc.pages}"
    assert "{" not in text and "}" not in text  # no placeholder left behind

    assert pdf.info["Title"] == doc.subject
    assert pdf.info["Subject"] == texts.document_name
    assert pdf.info["Author"].startswith(TEMPLATES.sender.names[language])
    assert pdf.catalog["Lang"] == f"{language}-BE"

    # One language: nothing of the other two languages' fixed texts.
    for other in set(LANGUAGES) - {language}:
        other_texts = TEMPLATES.templates[letter_type].texts[other]
        assert other_texts.document_name not in doc.subject
        for words in (LABELS[other]["reference"], LABELS[other]["closing"], other_texts.body[0].text[:40]):
            assert words not in text

    payment = letter_type in PAYMENT_TYPES
    assert (len(pdf.pages[-1].rects) + len(pdf.pages[0].rects) > 100) == payment
    assert ("+++" in text) == payment
    if payment:
        assert letter["payload"]["ogm"] in text


def test_subject_is_the_rendered_subject():
    letter = make_letter("gas_finding", "de")
    assert renderer().subject(letter) == renderer().render(letter).subject
    assert renderer().subject(letter).startswith("Feststellung eines Verstoßes: Möglichkeit zur Verteidigung")


@pytest.mark.parametrize("letter_type", sorted(ALL_LETTER_TYPES))
def test_a_missing_payload_field_is_named(letter_type):
    letter = make_letter(letter_type)
    required = renderer().required_fields(letter_type)
    for field, value in ((required[0], None), (required[-1], None), (required[1], "   ")):
        with pytest.raises(TemplateFieldMissing) as caught:
            renderer().render(with_payload(letter, **{field: value}))
        assert (caught.value.template, caught.value.field) == (letter_type, field)
        assert repr(letter_type) in str(caught.value) and repr(field) in str(caught.value)
        assert isinstance(caught.value, LetterDataError)
    with pytest.raises(TemplateFieldMissing):
        renderer().subject(with_payload(letter, **{required[0]: None}))


@pytest.mark.parametrize(
    "letter_type, field, value, words",
    [
        ("invoice", "amount_due", "12,50", "'amount_due' must be an amount in euro"),
        ("invoice", "amount_due", 12.5, "'amount_due' must be an amount written as a string"),
        ("invoice", "amount_due", "0.00", "'amount_due' must be above 0.00 EUR"),
        ("reminder", "reminder_costs", "abc", "'reminder_costs' must be an amount in euro"),
        ("invoice", "ogm", "+++010/8068/17180+++", "'ogm' is not a valid structured communication"),
        ("gas_decision", "ogm", "123", "'ogm' is not a valid structured communication"),
        ("premium_decision", "iban", "BE68 5390 0754 7035", "'iban' is not a valid IBAN"),
        ("tax_assessment", "due_date", "1/5/2026", "'due_date' must be a date written YYYY-MM-DD"),
        ("tax_assessment", "tax", "dog_tax", "'tax' must be one of"),
        ("inspection_notice", "inspection_time", "25:00", "'inspection_time' must be a time of day"),
    ],
)
def test_malformed_payload_values_are_refused_with_a_clear_message(letter_type, field, value, words):
    with pytest.raises(LetterDataError, match=re.escape(words)):
        renderer().render(with_payload(make_letter(letter_type), **{field: value}))


@pytest.mark.parametrize(
    "change, words",
    [
        ({"letter_type": "parking_fine"}, "unknown letter type 'parking_fine'"),
        ({"language": "en"}, "language must be one of nl, fr, de"),
        ({"letter_id": "bad id with spaces"}, "letter_id must be 1 to 64"),
        ({"letter_id": "x" * 65}, "letter_id must be 1 to 64"),
        ({"department": "gas"}, "belongs to department 'finance', not 'gas'"),
        ({"recipient_kind": "person"}, "recipient_kind must be one of citizen, enterprise"),
        ({"registered": "yes"}, "registered must be true or false"),
        ({"street": " "}, "letter field 'street' is missing or empty"),
        ({"recipient_name": None}, "letter field 'recipient_name' is missing or empty"),
        ({"postal_code": "28000"}, "a Belgian postal_code is four digits"),
        ({"country": "Belgium"}, "country must be a two-letter ISO 3166 code"),
        ({"country": "XX"}, "country 'XX' is not an ISO 3166 country code"),
        ({"country": "eu"}, "country 'EU' is not an ISO 3166 country code"),
        ({"payload": "not a mapping"}, "payload must be a JSON object"),
        (
            {"recipient_name": "王小明"},
            "letter field 'recipient_name' contains a character the letter font cannot print: '王' (U+738B)",
        ),
        ({"street": "Bruul 12 \U0001f3e0"}, "letter field 'street' contains a character"),
    ],
)
def test_a_wrong_letter_row_is_refused(change, words):
    with pytest.raises(LetterDataError, match=re.escape(words)):
        renderer().render({**make_letter("invoice"), **change})


def test_unprintable_payload_text_is_refused_naming_the_field():
    letter = with_payload(make_letter("inspection_notice"), inspector_name="محمد العلمي")
    with pytest.raises(LetterDataError, match="payload field 'inspector_name' contains a character"):
        renderer().render(letter)


def test_the_address_window_and_box():
    envelope = TEMPLATES.envelope
    assert envelope.bpost_problems() == []
    assert REACH.contains(WINDOW) and WINDOW.contains(address_box(envelope))
    # The window is larger than the part of the sheet it always shows, by the sheet's play.
    assert WINDOW.width < envelope.window.width and WINDOW.height < envelope.window.height


@pytest.mark.parametrize(
    "address",
    [
        {},
        {
            "recipient_name": "Małgorzata Nowak-Brzęczyszczykiewicz-Łukaszewicz",
            "street": "Onze-Lieve-Vrouwestraat 123 bus 12",
        },
        {
            "recipient_kind": "enterprise",
            "recipient_name": "Schrijnwerkerij Van den Broeck & Zonen Mechelen BV",
            "street": "Frederik de Merodestraat 145 bus 3",
        },
        {"street": "Kerkstraat 12", "postal_code": "4811 ZX", "city": "Breda", "country": "NL"},
        {
            "recipient_name": "Jean-Baptiste Marie Charles Antoine de la Fontaine-Dubois d’Harcourt-Lévêque",
            "street": "Rue de la Loi 200",
            "postal_code": "1000",
            "city": "Bruxelles",
        },
    ],
)
def test_the_recipient_address_lies_inside_the_envelope_window_and_nothing_else_does(address):
    letter = make_letter("invoice", "fr", **address)
    first_page = read_pdf(renderer().render(letter).pdf).pages[0]
    inside = [run for run in first_page.runs if _overlaps(_ink(run), REACH)]
    assert inside, "no address found"
    for run in inside:
        assert WINDOW.contains(_ink(run)), run
    address_text = " ".join(run.text for run in inside)
    assert address_text.startswith(letter["recipient_name"].split()[0])
    assert letter["city"] in address_text and letter["postal_code"] in address_text


def test_a_foreign_address_ends_with_the_country_in_the_letters_language():
    for language, country in (("nl", "NEDERLAND"), ("fr", "PAYS-BAS"), ("de", "NIEDERLANDE")):
        letter = make_letter(
            "premium_decision",
            language,
            street="Kerkstraat 12",
            postal_code="4811 ZX",
            city="Breda",
            country="nl",
        )
        runs = read_pdf(renderer().render(letter).pdf).pages[0].runs
        lines = [run.text for run in runs if _overlaps(_ink(run), REACH)]
        assert lines[-2:] == ["4811 ZX Breda", country]


def test_an_address_too_long_for_the_window_is_refused():
    letter = make_letter("invoice", recipient_name=" ".join(["Wolfeschlegelsteinhausenbergerdorff"] * 5))
    with pytest.raises(LetterDataError, match="too long to fit in the envelope window"):
        renderer().render(letter)


def test_a_long_body_flows_onto_more_pages_with_page_numbers():
    detail = " ".join(f"Zaal Lamot, reservering {n}, opbouw en afbraak inbegrepen;" for n in range(60))
    letter = with_payload(make_letter("invoice", "nl"), service_detail=detail)
    doc = renderer().render(letter)
    pdf = read_pdf(doc.pdf)
    assert doc.pages >= 2 and len(pdf.pages) == doc.pages
    assert pdf.pages[0].runs[-1].text == f"Pagina 1/{doc.pages}"
    assert pdf.pages[1].runs[-1].text == f"Pagina 2/{doc.pages}"
    assert "reservering 0," in pdf.text and "reservering 59," in pdf.text
    assert "+++" in pdf.pages[-1].text and "Met vriendelijke groeten," in pdf.pages[-1].text
    for page in pdf.pages[1:]:
        # the continuation header
        assert page.runs[-3].text == f"Stad Mechelen · Factuur · {letter['letter_id']}"
    for page in pdf.pages:
        body = page.runs[:-3]
        assert all(_ink(run).bottom < FOOTER_RULE and _ink(run).right <= 190.01 for run in body)


@pytest.mark.parametrize(
    "name",
    [
        "Łukasz Şahin-Öztürk",
        "Françoise Lefèvre",
        "Søren Æbelø",
        "Jürgen Weiß",
        "Nguyễn Thị Ánh",
        "Ștefan Țurcanu",
        "Małgorzata Wiśniewska",
        "Zoë O’Brien-Núñez",
        "Ødegård Čapek Dvořák",
        "Олександр Шевченко",
        "Γιώργος Παπαδόπουλος",
        "Արամ Խաչատրյան",
        "გიორგი ბერიძე",
    ],
)
def test_names_in_any_latin_script_survive(name):
    doc = renderer().render(make_letter("reminder", "de", recipient_name=name))
    runs = read_pdf(doc.pdf).pages[0].runs
    assert name in [run.text for run in runs]


def test_decomposed_accents_are_printed_as_one_letter():
    doc = renderer().render(make_letter("invoice", recipient_name="Mu\u0308ller Jo\u0308rg"))
    assert "Müller Jörg" in read_pdf(doc.pdf).text


@pytest.mark.parametrize(
    "language, expected",
    [
        ("nl", "1.250,50\u00a0EUR"),
        ("fr", "1\u202f250,50\u00a0EUR"),
        ("de", "1.250,50\u00a0EUR"),
    ],
)
def test_amounts_are_printed_in_the_letters_language(language, expected):
    letter = with_payload(make_letter("premium_decision", language), premium_amount="1250.50")
    assert expected in read_pdf(renderer().render(letter).pdf).text
    letter = with_payload(make_letter("invoice", language), amount_due="125.5")
    small = expected.replace("1.250", "125").replace("1\u202f250", "125")
    assert small in read_pdf(renderer().render(letter).pdf).text


def test_the_qr_code_in_the_pdf_is_the_epc_payload_of_the_letter():
    letter = with_payload(make_letter("invoice", "nl"), amount_due="125.50", ogm="+++010/8068/17183+++")
    page = read_pdf(renderer().render(letter).pdf).pages[0]
    expected = epc_qr_matrix(
        epc_payload(
            name="Stad Mechelen", iban="BE68539007547034", amount=Decimal("125.50"), reference="010806817183"
        )
    )
    module = QR_SIZE / (len(expected) + 2 * QR_QUIET_ZONE)
    left, top = min(r.x for r in page.rects), min(r.y for r in page.rects)
    drawn = [[False] * len(expected) for _ in expected]
    for rect in page.rects:
        col0, row0 = round((rect.x - left) / module), round((rect.y - top) / module)
        for row in range(row0, row0 + round(rect.height / module)):
            for col in range(col0, col0 + round(rect.width / module)):
                assert not drawn[row][col], "modules drawn twice"
                drawn[row][col] = True
    assert tuple(tuple(row) for row in drawn) == expected


def test_registered_letters_say_so():
    registered = read_pdf(renderer().render(make_letter("gas_decision", "fr", registered=True)).pdf).text
    plain = read_pdf(renderer().render(make_letter("gas_decision", "fr", registered=False)).pdf).text
    assert "ENVOI RECOMMANDÉ" in registered and "ENVOI RECOMMANDÉ" not in plain


@pytest.mark.parametrize("letter_id", ["A", "DEMO-FIN-000001", "x" * 64, "Z9." + "-_" * 30 + "a"])
def test_filename_is_short_one_language_and_carries_the_letter_id(letter_id):
    names = set()
    for language in LANGUAGES:
        filename = renderer().render(make_letter("premium_decision", language, letter_id=letter_id)).filename
        assert len(filename) <= 80 and filename.endswith(".pdf") and filename.isascii()
        assert letter_id in filename
        names.add(filename)
    if len(letter_id) < 64:
        assert names == {
            f"Premiebeslissing_{letter_id}.pdf",
            f"Decision_de_prime_{letter_id}.pdf",
            f"Praemienentscheidung_{letter_id}.pdf",
        }


def test_rendering_is_deterministic():
    letter = make_letter("tax_assessment", "nl")
    first, second = renderer().render(letter), renderer().render(dict(letter))
    assert first.pdf == second.pdf and first.sha256 == second.sha256


def test_the_letter_is_dated_today_unless_told_otherwise():

    doc = LetterRenderer().render(make_letter("inspection_notice", "nl"))
    assert format_date(clock.today(), "nl") in read_pdf(doc.pdf).text


def test_the_fonts_are_embedded_and_cover_the_text():
    from io import BytesIO

    from fontTools.ttLib import TTFont

    pdf = read_pdf(renderer().render(make_letter("invoice", "de")).pdf)
    assert sorted(pdf.font_names.values()) == ["MPDFAA+DejaVuSansBold", "MPDFAA+DejaVuSansBook"]
    for program in pdf.font_files:
        font = TTFont(BytesIO(program))
        assert "glyf" in font and len(font.getGlyphOrder()) > 20


def test_template_paragraphs_starting_with_a_dash_are_bullets():
    runs = read_pdf(renderer().render(make_letter("gas_finding", "nl")).pdf).pages[0].runs
    bullets = [index for index, run in enumerate(runs) if run.text == "\u2022"]
    assert len(bullets) == 4
    assert runs[bullets[0] + 1].text.startswith("U kunt uw verweermiddelen schriftelijk")
    assert runs[bullets[0] + 1].x > runs[bullets[0]].x


def _stacked_runs(dark: list[list[bool]]) -> list[tuple[int, int, int, int]]:
    """The QR code's rectangles found one row at a time: each run of dark modules, stacked with the
    same run in the rows below; listed as they end (by the row below them, then left to right)."""
    rectangles, open_runs = [], {}  # (first, end) column -> first row
    for row_index, row in enumerate([*dark, [False] * len(dark)]):
        runs = {(m.start(), m.end()) for m in re.finditer("1+", "".join("1" if v else "0" for v in row))}
        for first, end in sorted(run for run in open_runs if run not in runs):
            top = open_runs.pop((first, end))
            rectangles.append((first, top, end - first, row_index - top))
        for run in runs:
            open_runs.setdefault(run, row_index)
    return rectangles


@pytest.mark.parametrize("size", [1, 2, 7, 21, 45])
def test_qr_rectangles_are_the_runs_of_each_row_stacked_down(size):
    """Random and edge-case grids (all light, all dark, stripes) give the rectangles, in the order,
    that stacking each row's runs one row at a time gives."""
    rng = np.random.default_rng(size)
    grids = [np.zeros((size, size), bool), np.ones((size, size), bool), np.eye(size, dtype=bool)]
    grids += [
        np.tile(np.arange(size) % 2 == 0, (size, 1)),
        *(rng.random((size, size)) < p for p in (0.2, 0.5, 0.8)),
    ]
    for dark in grids:
        found = list(zip(*(part.tolist() for part in qr_rectangles(dark)), strict=True))
        assert found == _stacked_runs(dark.tolist())
