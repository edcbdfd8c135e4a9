"""The tagged PDF a screen reader reads: language, structure tree, marked content in reading order.

The structure tree is read with pypdf; the marked content of each page with pdfread (which decodes the
text inside each BDC/BMC ... EMC sequence through the fonts' ToUnicode maps).
"""

from io import BytesIO

import pytest
from pypdf import PdfReader

from include.dijlepost.waves import ALL_LETTER_TYPES, LANGUAGES

from .letters import make_letter, renderer, with_payload
from .pdfread import read_pdf


def _structure(data: bytes):
    """(reader, catalog, [(tag, page index, mcid, element)] in structure-tree order): every marked-content
    item of the tree with the element holding it, depth first (an element holding several items, e.g.
    a paragraph over a page break, once per item)."""
    reader = PdfReader(BytesIO(data))
    catalog = reader.trailer["/Root"]
    root = catalog["/StructTreeRoot"]
    (document,) = root["/K"]
    document = document.get_object()
    assert document["/S"] == "/Document"
    page_index = {page.indirect_reference.idnum: index for index, page in enumerate(reader.pages)}
    elements = []

    def walk(element, parent, page):
        assert element["/P"].get_object() == parent
        if "/Pg" in element:
            page = page_index[element.raw_get("/Pg").idnum]
        kids = element["/K"]
        for kid in kids if isinstance(kids, list) else [kids]:
            if isinstance(kid, int):
                elements.append((element["/S"][1:], page, int(kid), element))
                continue
            kid = kid.get_object()
            if kid.get("/Type") == "/MCR":
                where = page_index[kid.raw_get("/Pg").idnum]
                elements.append((element["/S"][1:], where, int(kid["/MCID"]), element))
            else:
                walk(kid, element, page)

    for kid in document["/K"]:
        walk(kid.get_object(), document, None)
    return reader, catalog, elements


def _tagged(data: bytes):
    """Per page, the marked-content sequences that carry an MCID, and the artifacts."""
    pages = read_pdf(data).pages
    return pages, [[m for m in page.marked if m.mcid is not None] for page in pages]


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("letter_type", sorted(ALL_LETTER_TYPES))
def test_every_letter_is_a_tagged_pdf_with_its_language(letter_type, language):
    data = renderer().render(make_letter(letter_type, language)).pdf
    reader, catalog, elements = _structure(data)
    assert bool(catalog["/MarkInfo"]["/Marked"]) is True
    assert catalog["/Lang"] == f"{language}-BE"
    pages, tagged = _tagged(data)

    # Every piece of text is either in a structure element or an artifact: nothing is left unmarked.
    assert all(not page.unmarked for page in pages)
    # Each marked sequence has exactly one element, with the same type, on its page; and the tree
    # lists them in the order they are drawn, which is the order the letter reads.
    drawn = [(m.tag, index, m.mcid) for index, marks in enumerate(tagged) for m in marks]
    assert [(tag, page, mcid) for tag, page, mcid, _ in elements] == drawn
    # MCIDs count from 0 on every page, and each page's ParentTree entry lists its elements by MCID.
    nums = catalog["/StructTreeRoot"]["/ParentTree"]["/Nums"]
    parent_tree = {nums[i]: nums[i + 1] for i in range(0, len(nums), 2)}
    for index, page in enumerate(reader.pages):
        mine = [(mcid, element) for _, page_index, mcid, element in elements if page_index == index]
        assert [mcid for mcid, _ in mine] == list(range(len(mine)))
        entries = parent_tree[page["/StructParents"]]
        assert [entry.get_object() for entry in entries] == [element for _, element in mine]

    # Exactly one H1, the subject; the text of the letter lies in P elements.
    subject = renderer().subject(make_letter(letter_type, language))
    headings = [m.text for marks in tagged for m in marks if m.tag == "H1"]
    assert headings == [subject]


def test_the_reading_order_follows_the_letter():
    letter = make_letter("invoice", "nl", registered=True)
    data = renderer().render(letter).pdf
    _, tagged = _tagged(data)
    texts = [m.text for marks in tagged for m in marks]

    def position(start: str) -> int:
        matches = [index for index, text in enumerate(texts) if text.startswith(start)]
        assert matches, f"no element starting {start!r} in {texts}"
        return matches[0]

    order = [
        position("Stad Mechelen Financiële dienst"),  # the sender
        position("Datum"),  # date and reference
        position("Łukasz Şahin-Öztürk Bruul 12 bus 3"),  # the address, one element
        position(renderer().subject(letter)),  # subject (H1)
        position("Factuurnummer"),  # details, one element per row
        position("Geachte"),  # salutation, then the body
        position("Hierbij ontvangt u"),
        position("Betalingsgegevens"),  # the payment block (H2)
        position("Te betalen bedrag"),
        position("Met vriendelijke groeten"),  # closing and signature last
    ]
    assert order == sorted(order)
    # A label and its value read as two words, as do the lines of the address.
    assert "Datum 1 maart 2026" in texts and "Ons kenmerk TEST-invoice-nl-1" in texts
    assert "Łukasz Şahin-Öztürk Bruul 12 bus 3 2800 Mechelen" in texts
    assert tagged[0][order[-3]].tag == "H2"
    assert texts[-1] == "De financieel directeur"


def test_page_furniture_is_an_artifact_and_the_qr_code_a_figure_with_alternative_text():
    letter = with_payload(make_letter("invoice", "fr"), amount_due="125.50", ogm="+++010/8068/17183+++")
    data = renderer().render(letter).pdf
    pages, tagged = _tagged(data)
    artifacts = [m for m in pages[0].marked if m.mcid is None]
    assert {m.tag for m in artifacts} == {"Artifact"}
    artifact_text = " ".join(m.text for m in artifacts)
    assert "Page 1/1" in artifact_text and "www.mechelen.be" in artifact_text
    assert all("Page 1/1" not in m.text for m in tagged[0])
    # The footer rule and the payment frame are artifacts; the QR modules are the figure's content.
    (figure,) = [m for m in tagged[0] if m.tag == "Figure"]
    assert figure.rects == len(pages[0].rects) > 100 and not figure.texts
    _, _, elements = _structure(data)
    (alt,) = [element["/Alt"] for tag, _, _, element in elements if tag == "Figure"]
    assert "125,50" in alt and "+++010/8068/17183+++" in alt and "BE68 5390 0754 7034" in alt


def test_a_letter_over_two_pages_continues_its_structure_on_the_next_page():
    detail = " ".join(f"Zaal Lamot, reservering {n}, opbouw en afbraak inbegrepen;" for n in range(60))
    letter = with_payload(make_letter("invoice", "nl"), service_detail=detail)
    data = renderer().render(letter).pdf
    _, _, elements = _structure(data)
    pages, tagged = _tagged(data)
    assert len(pages) >= 2
    assert all(tagged[index] for index in range(len(pages)))
    assert {page for _, page, _, _ in elements} == set(range(len(pages)))
    # The continuation header of page 2 is an artifact, not read again.
    assert any(m.mcid is None and "Stad Mechelen · Factuur" in m.text for m in pages[1].marked)
    text = " ".join(m.text for marks in tagged for m in marks)
    assert text.index("reservering 0,") < text.index("reservering 59,") < text.index("Met vriendelijke")
    # Words stay apart where lines break: the wrapped phrase reads whole every time.
    assert all(f"reservering {n}, opbouw en afbraak inbegrepen;" in text for n in range(60))
