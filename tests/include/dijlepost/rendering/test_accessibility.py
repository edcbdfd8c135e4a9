"""The tagged PDF a screen reader reads: language, structure tree, marked content in reading order,
tables, lists, artifacts; checked by the `pdfua` checker and by the Matterhorn checks of structure.py.

The structure tree is read with pypdf and with pikepdf (structure.py); the marked content of each page
with pdfread (which decodes the text inside each BDC/BMC ... EMC sequence through the fonts' ToUnicode
maps).
"""

import re
from io import BytesIO

import pikepdf
import pytest
from pypdf import PdfReader

from include.dijlepost.waves import ALL_LETTER_TYPES, LANGUAGES

from .letters import make_letter, renderer, with_payload
from .pdfread import read_pdf
from .structure import matterhorn_problems, pdfua_findings, read_structure
from .test_lines import long_invoice


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


# -- the structure tree read back with pikepdf, the PDF/UA checker and the Matterhorn checks ----------

# One letter of each template (Dutch, the demo payload): the tree's element types in reading order.
# Sender block, date/reference/contact block, address block (each a Div), the subject (H1), the
# details as a table of row headers and values, the body, lists where the template has bullets, the
# payment section (H2, its table, the QR figure, the caption), closing and signature.
SHAPES = {
    "gas_decision": (
        "Document[Div[2*P] Div[4*P] Div[P] H1 Table[5*TR[TH TD]] 5*P Sect[H2 Table[5*TR[TH TD]] Figure P] 2*P]"
    ),
    "gas_finding": "Document[Div[2*P] Div[4*P] Div[P] H1 Table[5*TR[TH TD]] 3*P L[4*LI[Lbl LBody]] 3*P]",
    "inspection_notice": "Document[Div[2*P] Div[4*P] Div[P] H1 Table[4*TR[TH TD]] 8*P]",
    "invoice": (
        "Document[Div[2*P] Div[4*P] Div[P] H1 Table[3*TR[TH TD]] 4*P Sect[H2 Table[5*TR[TH TD]] Figure P] 3*P]"
    ),
    "premium_decision": "Document[Div[2*P] Div[4*P] Div[P] H1 Table[6*TR[TH TD]] 8*P]",
    "reminder": (
        "Document[Div[2*P] Div[4*P] Div[P] H1 Table[6*TR[TH TD]] 5*P Sect[H2 Table[5*TR[TH TD]] Figure P] 3*P]"
    ),
    "tax_assessment": (
        "Document[Div[2*P] Div[4*P] Div[P] H1 Table[6*TR[TH TD]] 5*P Sect[H2 Table[5*TR[TH TD]] Figure P] 3*P]"
    ),
}


def test_every_template_has_its_shape_of_tree():
    assert set(SHAPES) == set(ALL_LETTER_TYPES)
    for letter_type, shape in SHAPES.items():
        letter = make_letter(letter_type, "nl")
        tree = read_structure(renderer().render(letter).pdf).root
        assert tree.shape() == shape, letter_type
        sender, meta, address = tree.children[:3]
        assert sender.children[0].text.startswith("Stad Mechelen")
        assert meta.children[0].text == "Datum 1 maart 2026"
        assert address.children[0].text == "Łukasz Şahin-Öztürk Bruul 12 bus 3 2800 Mechelen"
        (title,) = tree.find("H1")
        assert title.text == renderer().subject(letter)
        # Label/value rows: the label is the row's header, the value its cell.
        for row in tree.find("TR"):
            header, value = row.children
            assert str(header.attribute("/Scope")) == "/Row" and header.text and value.text


def test_the_payment_details_are_a_table_of_labels_and_values_in_their_section():
    letter = with_payload(make_letter("invoice", "fr"), amount_due="125.50", ogm="+++010/8068/17183+++")
    tree = read_structure(renderer().render(letter).pdf).root
    (section,) = tree.find("Sect")
    heading, table, figure, caption = section.children
    assert heading.type == "H2" and heading.text == "Données de paiement"
    rows = {row.children[0].text: row.children[1].text for row in table.children}
    assert rows["Montant à payer"] == "125,50\u00a0EUR"
    assert rows["Communication structurée"] == "+++010/8068/17183+++"
    assert rows["Numéro de compte"] == "BE68 5390 0754 7034"
    assert figure.type == "Figure" and "125,50" in str(figure.obj.Alt)
    assert caption.type == "P" and not caption.children


def test_bullets_are_a_list_of_items_with_label_and_body():
    tree = read_structure(renderer().render(make_letter("gas_finding", "fr")).pdf).root
    (items,) = tree.find("L")
    assert [item.type for item in items.children] == ["LI"] * 4
    for item in items.children:
        label, body = item.children
        assert (label.type, label.text, body.type) == ("Lbl", "\u2022", "LBody")
    assert (
        items.children[1].children[1].text == "Vous pouvez vous faire assister ou représenter par un avocat."
    )


def test_a_table_over_three_pages_repeats_its_header_row_and_stays_one_table():
    letter = long_invoice(50)
    rendered = renderer().render(letter)
    assert rendered.pages == 3
    structure = read_structure(rendered.pdf)
    (table,) = [t for t in structure.root.find("Table") if t.find("THead")]
    head, body, foot = table.children
    assert (head.type, body.type, foot.type) == ("THead", "TBody", "TFoot")
    (header,) = head.children
    names = ["Omschrijving", "Aantal", "Eenheidsprijs", "Btw", "Bedrag"]
    assert [cell.text for cell in header.children] == names
    assert {str(cell.attribute("/Scope")) for cell in header.children} == {"/Column"}
    # One row per line, five cells each, the description read whole however it wraps.
    assert len(body.children) == 50
    lines = letter["payload"]["lines"]
    for row, line in zip(body.children, lines, strict=True):
        assert [cell.type for cell in row.children] == ["TD"] * 5
        assert row.children[0].text == line["description"]
    assert {page for row in body.children for cell in row.children for page, _ in cell.content} == {0, 1, 2}
    # The total and the VAT: a row header spanning the four columns before the amount.
    for row in foot.children:
        total, amount = row.children
        assert (total.type, str(total.attribute("/Scope")), int(total.attribute("/ColSpan"))) == (
            "TH",
            "/Row",
            4,
        )
        assert amount.type == "TD"
    assert [row.children[0].text for row in foot.children] == ["Totaal", "waarvan btw"]

    # Pages 2 and 3 start the table again with its header row, drawn as an artifact (pagination):
    # the tree has the header once, a reader hears it once, the eye finds it on every page.
    pdf = read_pdf(rendered.pdf)
    for index in (1, 2):
        page = pdf.pages[index]
        repeated = [m for m in page.marked if m.mcid is None and m.kind == "Pagination/Header"]
        assert any(all(name in m.text for name in names) for m in repeated)
        header_runs = [run for run in page.runs if run.text in names]
        assert sorted(run.text for run in header_runs) == sorted(names)
        first_row = min(run.y for run in page.runs if run.text.startswith("Ophaling grofvuil"))
        assert all(run.y < first_row for run in header_runs)
        tagged_text = " ".join(m.text for m in page.marked if m.mcid is not None)
        assert "Eenheidsprijs" not in tagged_text
    assert not matterhorn_problems(rendered.pdf)
    assert not pdfua_findings(rendered.pdf)


def test_page_furniture_is_marked_by_kind():
    rendered = renderer().render(long_invoice(40))
    pdf = read_pdf(rendered.pdf)
    for number, page in enumerate(pdf.pages, start=1):
        artifacts = [m for m in page.marked if m.mcid is None]
        (footer,) = [m for m in artifacts if m.kind == "Pagination/Footer"]
        assert f"Pagina {number}/3" in footer.text and "www.mechelen.be" in footer.text
        assert {m.kind for m in artifacts} <= {"Layout", "Pagination/Header", "Pagination/Footer"}
        assert all(not m.texts for m in artifacts if m.kind == "Layout")  # rules and frames
        running = [m for m in artifacts if m.kind == "Pagination/Header" and "Stad Mechelen" in m.text]
        assert len(running) == (number > 1)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("letter_type", sorted(ALL_LETTER_TYPES))
def test_every_template_passes_the_pdfua_checker_and_the_matterhorn_checks(letter_type, language):
    data = renderer().render(make_letter(letter_type, language)).pdf
    assert pdfua_findings(data) == []
    assert matterhorn_problems(data) == []


@pytest.mark.parametrize(
    "letter",
    [
        pytest.param(
            with_payload(
                make_letter("invoice", "nl"),
                service_detail=" ".join(
                    f"Zaal Lamot, reservering {n}, afbraak inbegrepen;" for n in range(60)
                ),
            ),
            id="a-cell-over-a-page-break",
        ),
        pytest.param(long_invoice(50, "de"), id="a-table-over-three-pages"),
        pytest.param(
            make_letter("reminder", "fr", country="DE", postal_code="52062", city="Aachen", registered=True),
            id="registered-abroad",
        ),
    ],
)
def test_letters_over_pages_and_abroad_pass_both_checkers(letter):
    data = renderer().render(letter).pdf
    assert pdfua_findings(data) == []
    assert matterhorn_problems(data) == []


def _tamper(data: bytes, change) -> bytes:
    """The letter with `change(pdf)` applied, saved as the tests' reader reads it (no object streams)."""
    with pikepdf.open(BytesIO(data)) as pdf:
        change(pdf)
        out = BytesIO()
        pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.disable)
        return out.getvalue()


def _elements(pdf, type_):
    found = []

    def walk(node):
        for kid in node.K if isinstance(node.get("/K"), pikepdf.Array) else [node.get("/K")]:
            if isinstance(kid, pikepdf.Dictionary) and "/S" in kid:
                if type_ == kid.S:
                    found.append(kid)
                walk(kid)

    walk(pdf.Root.StructTreeRoot)
    return found


def _unmarked_text(pdf):
    page = pdf.pages[0]
    content = page.Contents.read_bytes()
    text = re.search(rb"BT [0-9.]+ [0-9.]+ Td \(.*?\) Tj ET", content, re.S).group(0)
    page.Contents.write(content + b"\n" + text)


def _rename_the_address_block(pdf, role_map: bool):
    _elements(pdf, "/Div")[2].S = pikepdf.Name("/Address")
    if role_map:
        pdf.Root.StructTreeRoot.RoleMap = pikepdf.Dictionary(Address=pikepdf.Name("/Div"))


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda pdf: _elements(pdf, "/TH")[0].__delitem__("/A"), "15-003 TH [(0, 8)] has no /Scope"),
        (lambda pdf: _rename_the_address_block(pdf, False), "02-001 /Address is neither a standard type"),
        (_unmarked_text, "01-003 page 1: Tj outside marked content"),
        (
            lambda pdf: pdf.pages[0].Resources.Font.F2.__delitem__("/ToUnicode"),
            "31-009 page 1: font /F2 has no ToUnicode map",
        ),
        (
            lambda pdf: pdf.Root.StructTreeRoot.ParentTree.Nums[1].reverse(),
            "page 1 MCID 0: the ParentTree names another element",
        ),
        (lambda pdf: setattr(_elements(pdf, "/H2")[0], "S", pikepdf.Name("/H4")), "14-003 H1 followed by H4"),
        (lambda pdf: setattr(_elements(pdf, "/TR")[0], "S", pikepdf.Name("/P")), "09-004 TH inside P"),
    ],
)
def test_the_matterhorn_checks_find_what_is_wrong(change, problem):
    data = renderer().render(make_letter("invoice", "nl")).pdf
    assert matterhorn_problems(_tamper(data, lambda pdf: None)) == []
    problems = matterhorn_problems(_tamper(data, change))
    assert any(found.startswith(problem) for found in problems), problems


def test_a_role_mapped_type_is_accepted_and_the_pdfua_checker_reports_what_it_covers():
    data = renderer().render(make_letter("invoice", "nl")).pdf
    assert matterhorn_problems(_tamper(data, lambda pdf: _rename_the_address_block(pdf, True))) == []
    unmarked = pdfua_findings(_tamper(data, _unmarked_text))
    assert any(finding.startswith("UA-01-003 ERROR") for finding in unmarked), unmarked
    no_alt = pdfua_findings(_tamper(data, lambda pdf: _elements(pdf, "/Figure")[0].__delitem__("/Alt")))
    assert any(finding.startswith("UA-13-004 ERROR") for finding in no_alt), no_alt


def test_the_outline_command_prints_one_letters_tree(capsys, tmp_path):
    from .structure import main

    assert main(["--outline", "invoice", "nl", "--lines", "50", "--write", str(tmp_path / "l.pdf")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "Document"
    assert "    THead" in printed and "    TFoot" in printed
    assert "        TH Scope=Column [p1] 'Eenheidsprijs'" in printed
    assert "        TH Scope=Row ColSpan=4 [p3] 'Totaal'" in printed
    assert (tmp_path / "l.pdf").read_bytes() == renderer().render(long_invoice(50)).pdf


def test_structure_elements_are_written_as_fpdf2_writes_them(monkeypatch):
    """The renderer writes its structure elements itself (faster); the bytes are fpdf2's."""
    from fpdf.syntax import PDFObject

    from include.dijlepost.rendering import structure as module

    letters = [make_letter("invoice", "fr"), make_letter("gas_finding", "nl"), long_invoice(50, "de")]
    own = [renderer().render(letter).pdf for letter in letters]
    monkeypatch.setattr(module.Element, "serialize", PDFObject.serialize)
    assert [renderer().render(letter).pdf for letter in letters] == own


def test_a_structure_element_is_made_as_fpdf2_makes_one():
    """Element sets fpdf2's StructElem slots itself (faster): every slot holds what StructElem's own
    constructor puts there, with and without alternative text."""
    from fpdf.structure_tree import StructElem
    from fpdf.syntax import PDFObject

    from include.dijlepost.rendering.structure import Element

    def state(element):
        return {
            name: value.serialize()
            if hasattr(value, "serialize") and not isinstance(value, PDFObject)
            else value
            for name in StructElem.__slots__
            for value in [getattr(element, name)]
        }

    parent = StructElem("/Document", parent=None, kids=[])  # type: ignore[arg-type]
    for alt in (None, "EPC QR code"):
        ours = Element("/Figure", parent, 2, alt)
        theirs = StructElem("/Figure", parent=parent, kids=[], page_number=2, alt=alt)
        assert state(ours) == state(theirs)
        assert ours.a is None


def test_the_viewer_preferences_written_once_are_fpdf2s():
    """The letter's viewer preferences are written from one text per process: fpdf2's own."""
    from fpdf.prefs import ViewerPreferences

    from include.dijlepost.rendering.drawing import LetterViewerPreferences

    expected = ViewerPreferences(display_doc_title=True).serialize()
    assert "/DisplayDocTitle true" in expected
    assert LetterViewerPreferences().serialize() == expected
    assert LetterViewerPreferences().serialize(_obj_id=7) == ViewerPreferences(
        display_doc_title=True
    ).serialize(_obj_id=7)
