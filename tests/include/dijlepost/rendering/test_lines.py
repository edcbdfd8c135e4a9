"""Itemised lines on invoices and reminders: a table read back from the PDF, whose total is amount_due."""

import re
from decimal import Decimal

import pytest

from include.dijlepost.rendering import LetterDataError, validate_letter
from include.dijlepost.rendering.fields import InvoiceLine

from .letters import make_letter, renderer, with_payload
from .pdfread import read_pdf

LINES = [
    {
        "description": "Huur Zaal Lamot, zaterdag 14/03/2026",
        "quantity": "1",
        "unit_price": "250.00",
        "vat_rate": "0",
    },
    {"description": "Schoonmaak na gebruik", "quantity": "2", "unit_price": "45.00", "vat_rate": 21},
    {
        "description": "Geluidsinstallatie met draadloze microfoons, opbouw en afbraak door de stedelijke "
        "technische dienst inbegrepen",
        "quantity": "1.5",
        "unit_price": "40.00",
        "vat_rate": "6",
    },
]
# 250.00 + (90.00 + 18.90) + (60.00 + 3.60)
TOTAL = "422.50"


def _invoice(language="nl", lines=LINES, amount=TOTAL, letter_type="invoice"):
    letter = make_letter(letter_type, language)
    changes = {"lines": lines, "amount_due": amount}
    if letter_type == "reminder":
        changes.update(original_amount=str(Decimal(amount) - Decimal("10.00")), reminder_costs="10.00")
    return with_payload(letter, **changes)


def long_invoice(count: int = 40, language: str = "nl") -> dict:
    """An invoice of `count` itemised lines (40 take three pages), whose total is its amount_due."""
    lines = [
        {
            "description": f"Ophaling grofvuil aan huis, adres {n}, {n % 4 + 1} m³ (afspraak via het contactcenter)",
            "quantity": str(n % 3 + 1),
            "unit_price": "12.50",
            "vat_rate": "21" if n % 2 else "0",
        }
        for n in range(count)
    ]
    total = sum(
        InvoiceLine("", Decimal(line["quantity"]), Decimal("12.50"), int(line["vat_rate"])).total
        for line in lines
    )
    return _invoice(language, lines=lines, amount=f"{total:.2f}")


def test_a_line_rounds_each_step_to_the_cent():
    line = InvoiceLine("x", Decimal("1.5"), Decimal("40.00"), 6)
    assert (line.net, line.vat, line.total) == (Decimal("60.00"), Decimal("3.60"), Decimal("63.60"))
    line = InvoiceLine("x", Decimal("3"), Decimal("0.35"), 21)
    assert (line.net, line.vat, line.total) == (Decimal("1.05"), Decimal("0.22"), Decimal("1.27"))


@pytest.mark.parametrize("letter_type", ["invoice", "reminder"])
@pytest.mark.parametrize(
    "language, expected",
    [
        (
            "nl",
            [
                "Omschrijving",
                "Aantal",
                "Eenheidsprijs",
                "Btw",
                "Bedrag",
                "1,5",
                "40,00\u00a0EUR",
                "6\u00a0%",
                "63,60\u00a0EUR",
                "108,90\u00a0EUR",
                "Totaal",
                "422,50\u00a0EUR",
                "waarvan btw",
                "22,50\u00a0EUR",
            ],
        ),
        (
            "fr",
            [
                "Description",
                "Quantité",
                "Prix unitaire",
                "TVA",
                "Montant",
                "Total",
                "422,50\u00a0EUR",
                "dont TVA",
            ],
        ),
        ("de", ["Beschreibung", "Menge", "Einzelpreis", "MwSt.", "Betrag", "Gesamtbetrag", "darin MwSt."]),
    ],
)
def test_itemised_lines_print_as_a_table_whose_total_is_amount_due(letter_type, language, expected):
    doc = renderer().render(_invoice(language, letter_type=letter_type))
    pdf = read_pdf(doc.pdf)
    runs = [run.text for page in pdf.pages for run in page.runs]
    for text in expected:
        assert text in runs, text
    assert "Huur Zaal Lamot, zaterdag 14/03/2026" in runs
    # The long description wraps within its column, at spaces, and the words read back whole.
    assert (
        "Geluidsinstallatie met draadloze microfoons, opbouw en afbraak door de stedelijke technische "
        "dienst inbegrepen" in pdf.text
    )
    # Numbers are right-aligned in their columns: the amounts end at the right margin.
    page = pdf.pages[0]
    amounts = [
        run for run in page.runs if run.text in ("250,00\u00a0EUR", "108,90\u00a0EUR", "63,60\u00a0EUR")
    ]
    assert len(amounts) >= 3
    from .test_renderer import _ink

    rights = {round(_ink(run).right, 1) for run in amounts if run.x > 150}
    assert rights == {190.0}
    # An invoice with three lines still fits one sheet; a reminder (six detail rows) may take two.
    assert doc.pages == 1 if letter_type == "invoice" else doc.pages <= 2


def test_the_invoice_states_its_detail_once():
    letter = with_payload(make_letter("invoice", "nl"), service_detail="Zaal Lamot, 14/03/2026")
    text = read_pdf(renderer().render(letter).pdf).text
    assert text.count("Zaal Lamot, 14/03/2026") == 1


def test_lines_that_do_not_add_up_to_amount_due_are_refused():
    letter = _invoice(amount="422.49")
    message = "payload field 'lines' adds up to 422.50 EUR (VAT included), not to amount_due 422.49 EUR"
    for check in (renderer().render, lambda row: validate_letter(row, renderer=renderer())):
        with pytest.raises(LetterDataError, match=re.escape(message)):
            check(letter)


def test_no_lines_no_table():
    for lines in (None, []):
        letter = with_payload(make_letter("invoice", "nl"), lines=lines)
        if lines == []:
            letter["payload"]["lines"] = []
        assert "Eenheidsprijs" not in read_pdf(renderer().render(letter).pdf).text


@pytest.mark.parametrize(
    "lines, words",
    [
        ("one line", "payload field 'lines' must be a list of lines"),
        ([{"description": "x", "quantity": "1", "unit_price": "1.00"}], "'lines[1].vat_rate' is missing"),
        ([{**LINES[0], "discount": "5"}], "'lines[1].discount' is not a line field"),
        ([LINES[0], "x"], "'lines[2]' must be an object"),
        ([{**LINES[0], "quantity": "0"}], "'lines[1].quantity' must be above 0"),
        ([{**LINES[0], "quantity": 1.5}], "'lines[1].quantity' must be a number such as"),
        ([{**LINES[0], "quantity": "-1"}], "'lines[1].quantity' must be a number such as"),
        ([{**LINES[0], "unit_price": "0.00"}], "'lines[1].unit_price' must be above 0.00 EUR"),
        ([{**LINES[0], "unit_price": 12.5}], "'lines[1].unit_price' must be an amount written as a string"),
        (
            [{**LINES[0], "vat_rate": "20"}],
            "'lines[1].vat_rate' must be one of the Belgian VAT rates 0, 6, 12, 21",
        ),
        ([{**LINES[0], "vat_rate": True}], "'lines[1].vat_rate' must be one of the Belgian VAT rates"),
        (
            [{**LINES[0], "description": "Zaal\u202e"}],
            "payload field 'lines[1].description' contains an invisible",
        ),
        (
            [{**LINES[0], "description": "会议室"}],
            "payload field 'lines[1].description' contains a character",
        ),
        ([{**LINES[0], "description": "d" * 201}], "'lines[1].description' is longer than 200 characters"),
        ([LINES[0]] * 51, "payload field 'lines' has more than 50 lines"),
    ],
)
def test_a_wrong_line_is_refused_naming_the_line_and_its_field(lines, words):
    with pytest.raises(LetterDataError, match=re.escape(words)):
        validate_letter(_invoice(lines=lines), renderer=renderer())


def test_many_lines_flow_onto_a_second_page_without_splitting_a_row():
    lines = [
        {
            "description": f"Ophaling grofvuil, adres {n}, {n % 4 + 1} m³",
            "quantity": str(n % 3 + 1),
            "unit_price": "12.50",
            "vat_rate": "0",
        }
        for n in range(45)
    ]
    total = sum(Decimal(line["quantity"]) * Decimal("12.50") for line in lines)
    doc = renderer().render(_invoice(lines=lines, amount=f"{total:.2f}"))
    pdf = read_pdf(doc.pdf)
    assert doc.pages == 2
    for n in range(45):
        assert f"Ophaling grofvuil, adres {n}, {n % 4 + 1} m³" in pdf.text
    closing = [run for run in pdf.pages[-1].runs if run.text.startswith("Met vriendelijke groeten")]
    assert closing and pdf.pages[-1].runs.index(closing[0]) > 3  # not alone on page 2
