"""The letter on paper: bpost's free zones around the envelope window, words never cut, page economy,
the payment block off the folds, and the PDF/UA keys, over every template in every language.

Everything is read back from the PDF (pdfread.py): positions, fonts and sizes of the text runs as
drawn, and the QR code's rectangles."""

import re
from io import BytesIO

import pytest
from pypdf import PdfReader

from include.dijlepost.rendering.fonts import LetterFonts
from include.dijlepost.rendering.layout import (
    BODY_BOTTOM,
    BPOST_FREE_BELOW,
    BPOST_FREE_RIGHT,
    FOLD_CLEARANCE,
    TextOp,
    ink_box,
)
from include.dijlepost.rendering.templates import load_templates
from include.dijlepost.settings import TEMPLATES_DIR
from include.dijlepost.waves import ALL_LETTER_TYPES, LANGUAGES

from .letters import make_letter, renderer
from .pdfread import read_pdf

TEMPLATES = load_templates(TEMPLATES_DIR)
ENVELOPE = TEMPLATES.envelope
FONTS = LetterFonts(TEMPLATES_DIR / "fonts")
LABELS = TEMPLATES.labels
PAYMENT_TYPES = sorted(t for t, template in TEMPLATES.templates.items() if template.payment)

# Recipients with 3, 4 and 5 address lines (a foreign address ends with the country; a long name or
# street wraps), the longest realistic values included.
ADDRESSES = {
    "3 lines": {},
    "3 lines, long": {
        "recipient_name": "Jean-Baptiste Marie Charles de la Fontaine-Dubois d’Harcourt",
        "street": "Frederik de Merodestraat 145 bus 3",
    },
    "4 lines, NL": {"street": "Kerkstraat 12", "postal_code": "4811 ZX", "city": "Breda", "country": "NL"},
    "4 lines, DE": {
        "recipient_name": "Dr. Hans-Jürgen Müller-Lüdenscheidt",
        "street": "Königsallee 92a",
        "postal_code": "40212",
        "city": "Düsseldorf",
        "country": "DE",
    },
    "5 lines, long street abroad": {
        "recipient_kind": "enterprise",
        "recipient_name": "Schrijnwerkerij Van den Broeck & Zonen Mechelen BV",
        "street": "Onze-Lieve-Vrouw-van-Hanswijk-en-Sint-Rombouts-Kathedraalstraat 123 bus 4",
        "postal_code": "L-1130",
        "city": "Luxembourg",
        "country": "LU",
    },
    "5 lines, GB": {
        "recipient_name": "Mrs Ødegård-Čapek",
        "street": "Flat 3, 221B Baker Street",
        "postal_code": "NW1 6XE",
        "city": "London",
        "country": "GB",
    },
}


def _ink(run):
    return ink_box(FONTS, TextOp(run.x, run.y, run.text, "B" if run.font == "F2" else "", run.size))


def _overlaps(a, b) -> bool:
    return a.left < b.right and b.left < a.right and a.top < b.bottom and b.top < a.bottom


def _address_runs(page):
    return [run for run in page.runs if _overlaps(_ink(run), ENVELOPE.ever_visible)]


@pytest.mark.parametrize("address", sorted(ADDRESSES))
@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("letter_type", sorted(ALL_LETTER_TYPES))
def test_bpost_free_zones_around_the_address(letter_type, language, address):
    """Only the address can show through the window, at any position of the folded sheet; whatever
    that position, 30 mm stay free below it and 15 mm right of it on the envelope."""
    letter = make_letter(
        letter_type, language, registered=letter_type == "gas_decision", **ADDRESSES[address]
    )
    page = read_pdf(renderer().render(letter).pdf).pages[0]
    runs = _address_runs(page)
    assert 3 <= len(runs) <= 6
    dx, dy = ENVELOPE.play
    for run in runs:
        ink = _ink(run)
        assert ENVELOPE.always_visible.contains(ink), (run.text, ink)
        # Sheet coordinates + the play = the lowest/rightmost the text can be on the envelope.
        assert ENVELOPE.height - (ink.bottom + dy) >= BPOST_FREE_BELOW
        assert ENVELOPE.width - (ink.right + dx) >= BPOST_FREE_RIGHT
    text = " ".join(run.text for run in runs)
    assert text.startswith(letter["recipient_name"].split()[0])
    assert letter["postal_code"] in text and letter["city"] in text
    # The address reads top to bottom, one line per run, the country last when abroad.
    assert [run.y for run in runs] == sorted(run.y for run in runs)
    if letter.get("country", "BE") != "BE":
        assert runs[-1].text.isupper()


def test_an_envelope_that_breaks_bpost_free_zones_is_refused(tmp_path):
    import shutil

    import yaml

    from include.dijlepost.rendering import TemplateError

    for path in TEMPLATES_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    common = yaml.safe_load((tmp_path / "common.yaml").read_text(encoding="utf-8"))
    # The usual DL window envelope: window 100 x 45 mm, 20 mm from the right, 15 mm from the bottom.
    common["envelope"]["window"] = {"left": 100, "top": 50, "width": 100, "height": 45}
    (tmp_path / "common.yaml").write_text(yaml.safe_dump(common, allow_unicode=True), encoding="utf-8")
    with pytest.raises(
        TemplateError, match="bpost needs 30 mm free below the window, this envelope leaves 15 mm"
    ):
        load_templates(tmp_path)
    common["envelope"]["window"] = {"left": 110, "top": 40, "width": 100, "height": 40}
    (tmp_path / "common.yaml").write_text(yaml.safe_dump(common, allow_unicode=True), encoding="utf-8")
    with pytest.raises(TemplateError, match="15 mm free right of the window, this envelope leaves 10 mm"):
        load_templates(tmp_path)
    common["envelope"]["window"] = {"left": 100, "top": 20, "width": 100, "height": 40}
    (tmp_path / "common.yaml").write_text(yaml.safe_dump(common, allow_unicode=True), encoding="utf-8")
    with pytest.raises(TemplateError, match="franking zone"):
        load_templates(tmp_path)


# -- no word cut -----------------------------------------------------------------------------------

BREAK_AFTER = "-/_"
BREAK_BEFORE = "@."


def _broken_only_at_break_points(pieces: list[str], value: str) -> None:
    """The runs that print `value`, in order, are `value` broken at spaces and break points only."""
    joined = ""
    for index, piece in enumerate(pieces):
        if index:
            rest = value[len(joined) :]
            if rest.startswith(" "):
                joined += " "
            else:
                assert joined[-1] in BREAK_AFTER or piece[0] in BREAK_BEFORE, (joined, piece)
        joined += piece
    assert joined == value


def _runs_of(page, value: str) -> list[str]:
    """The consecutive runs of the page that together print `value`."""
    texts = [run.text for run in page.runs]
    compact = value.replace(" ", "")
    for start in range(len(texts)):
        pieces, length = [], 0
        for text in texts[start:]:
            if not compact[length:].startswith(text.replace(" ", "")):
                break
            pieces.append(text)
            length += len(text.replace(" ", ""))
            if length == len(compact):
                return pieces
    raise AssertionError(f"{value!r} is not printed whole")


LONG_VALUES = {
    "street": "Onze-Lieve-Vrouw-van-Hanswijk-en-Sint-Rombouts-Kathedraalstraat 123 bus 4",
    "recipient_name": "Schrijnwerkerij en Interieurbouw Van den Broeck-Vandermeulen & Zonen BV",
}


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("letter_type", sorted(ALL_LETTER_TYPES))
def test_no_word_is_cut_in_the_longest_realistic_values(letter_type, language):
    letter = make_letter(
        letter_type, language, letter_id="DEMO-ECONOMIE-WONEN-2026-000123456789", **LONG_VALUES
    )
    page = read_pdf(renderer().render(letter).pdf).pages[0]
    department = TEMPLATES.departments[TEMPLATES.templates[letter_type].department]
    for value in (*LONG_VALUES.values(), department.email, letter["letter_id"]):
        _broken_only_at_break_points(_runs_of(page, value), value)
    # The contact e-mail of the longest department name fits on one line (it shrinks first).
    assert department.email in [run.text for run in page.runs]


def test_every_department_email_is_printed_on_one_line():
    for letter_type in ("premium_decision", "gas_finding", "invoice"):
        page = read_pdf(renderer().render(make_letter(letter_type, "fr")).pdf).pages[0]
        department = TEMPLATES.departments[TEMPLATES.templates[letter_type].department]
        assert department.email in [run.text for run in page.runs]


# -- page economy and folds ------------------------------------------------------------------------


def _letters_over_every_template():
    for letter_type in sorted(ALL_LETTER_TYPES):
        for language in LANGUAGES:
            for seed in (1, 2, 3):
                for address in ("3 lines", "5 lines, long street abroad"):
                    yield (
                        letter_type,
                        language,
                        make_letter(
                            letter_type,
                            language,
                            seed=seed,
                            registered=letter_type == "gas_decision",
                            **ADDRESSES[address],
                        ),
                    )


def _qr_rows(page) -> tuple[float, float] | None:
    if len(page.rects) < 50:
        return None
    return min(r.y for r in page.rects), max(r.y + r.height for r in page.rects)


def test_pages_per_letter_and_what_each_page_holds(capsys):
    """Every template in every language (3 payloads, a Belgian and a 5-line foreign address): the closing
    and the signature never stand alone on a page, the QR code never lies on a fold of the DL tri-fold;
    the pages per letter are printed as a table (pytest -s)."""
    pages: dict[tuple[str, str], list[int]] = {}
    for letter_type, language, letter in _letters_over_every_template():
        doc = renderer().render(letter)
        pdf = read_pdf(doc.pdf)
        pages.setdefault((letter_type, language), []).append(doc.pages)
        closing = LABELS[language]["closing"]
        last = pdf.pages[-1]
        body = [run.text for run in last.runs[:-2]]  # without the footer line and page number
        if doc.pages > 1:
            body = body[1:]  # nor the running header
        at = next(index for index, text in enumerate(body) if text.startswith(closing[:20]))
        assert at > 0, f"{letter_type} {language}: the closing stands alone on page {doc.pages}"
        for page in pdf.pages:
            qr = _qr_rows(page)
            if qr:
                for fold in ENVELOPE.folds:
                    assert not qr[0] - FOLD_CLEARANCE < fold < qr[1] + FOLD_CLEARANCE, (letter_type, language)
            assert all(_ink(run).bottom <= BODY_BOTTOM + 1 for run in page.runs[:-2])
    with capsys.disabled():
        print("\npages per letter (3 payloads x Belgian / foreign 5-line address):")
        print(f"{'letter type':<20}" + "".join(f"{lang:>16}" for lang in LANGUAGES))
        for letter_type in sorted(ALL_LETTER_TYPES):
            print(
                f"{letter_type:<20}"
                + "".join(f"{' '.join(map(str, pages[letter_type, lang])):>16}" for lang in LANGUAGES)
            )
    # The standard letters all fit on one sheet.
    assert all(count == 1 for counts in pages.values() for count in counts)


def test_a_letter_that_needs_two_pages_carries_text_over_with_the_signature():
    """A long detail pushes the end of the letter to page 2: the closing never arrives there alone."""
    for words in range(10, 140, 6):
        detail = " ".join(["opbouw en afbraak inbegrepen"] * words)
        letter = make_letter("gas_finding", "nl", seed=4)
        letter["payload"]["offence_location"] = detail[:3900]
        doc = renderer().render(letter)
        pdf = read_pdf(doc.pdf)
        last = [run.text for run in pdf.pages[-1].runs[:-2]]
        if doc.pages > 1:
            last = last[1:]
        closing = next(i for i, text in enumerate(last) if text.startswith("Met vriendelijke groeten"))
        assert closing > 0, f"{words}: the closing stands alone on page {doc.pages}"


@pytest.mark.parametrize("letter_type", PAYMENT_TYPES)
def test_the_payment_block_is_never_on_a_fold(letter_type):
    """Whatever the length of the text before it, the payment block (frame and QR code) keeps clear of
    the folds, on page 1 and on later pages."""
    for words in range(0, 120, 5):
        letter = make_letter(letter_type, "fr", seed=7)
        if words:
            key = {
                "invoice": "service_detail",
                "reminder": "invoice_number",
                "tax_assessment": "tax_object",
                "gas_decision": "offence_location",
            }[letter_type]
            letter["payload"][key] = " ".join(["Zaal Lamot, opbouw inbegrepen"] * words)[:3900]
        doc = renderer().render(letter)
        prepared = renderer()._prepare(letter)
        for page in renderer()._layout(prepared):
            for op in page:
                box = getattr(op, "box", None)
                if box is not None:
                    for fold in ENVELOPE.folds:
                        assert not box.top - FOLD_CLEARANCE < fold < box.bottom + FOLD_CLEARANCE, (
                            letter_type,
                            words,
                            fold,
                            box,
                        )
        assert doc.pages >= 1


# -- PDF/UA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("letter_type", sorted(ALL_LETTER_TYPES))
def test_pdf_ua_display_doc_title_pdfuaid_and_tabs_on_every_template(letter_type, language):
    doc = renderer().render(make_letter(letter_type, language))
    reader = PdfReader(BytesIO(doc.pdf))
    catalog = reader.trailer["/Root"]
    assert catalog["/ViewerPreferences"]["/DisplayDocTitle"].value is True
    xmp = catalog["/Metadata"].get_object().get_data().decode("utf-8")
    assert re.search(r'xmlns:pdfuaid="http://www\.aiim\.org/pdfua/ns/id/"', xmp)
    assert 'pdfuaid:part="1"' in xmp
    # The XMP title is the document title (PDF/UA-1 7.1), in the letter's language.
    assert f'<rdf:li xml:lang="{language}-BE">' in xmp
    assert reader.metadata.title == doc.subject
    assert doc.subject.replace("&", "&amp;").replace("’", "’") in xmp
    for page in reader.pages:
        assert page["/Tabs"] == "/S"
    assert len(reader.pages) == doc.pages
